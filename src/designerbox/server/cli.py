"""`designerbox serve`: the studio server (REST API, compatible APIs, web page) on one machine."""

from __future__ import annotations

import ipaddress


class ServeError(ValueError):
    pass


def add_parser(sub) -> None:
    s = sub.add_parser("serve", help="the studio server: REST API under /api/v1, web page at /, docs at /docs")
    s.add_argument("--host", default="127.0.0.1", help="address to listen on (loopback only until API keys exist)")
    s.add_argument("--port", type=int, default=7860)
    s.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"])
    s.set_defaults(func=cmd_serve)


def check_host(host: str) -> None:
    """Without users and keys anyone who reaches the port can use and delete everything: loopback only."""
    if host == "localhost":
        return
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        raise ServeError(f"--host must be an IP address or 'localhost', not {host!r}") from None
    if not loopback:
        raise ServeError(f"refusing to listen on {host}: this server has no users or API keys yet, so anyone who "
                         "can reach it could generate, read and delete images; use 127.0.0.1 (or ::1) and put an "
                         "authenticating reverse proxy in front of it for other machines")


def cmd_serve(args) -> int:
    check_host(args.host)
    if not 0 < args.port < 65536:
        raise ServeError(f"--port must be between 1 and 65535, not {args.port}")
    try:
        import uvicorn

        from designerbox.server.app import create_app
    except ImportError as err:
        raise ServeError(f"the server needs the 'server' extra ({err.name} is missing): "
                         "pip install 'designerbox[server]'") from None
    from designerbox.settings import Settings

    uvicorn.run(create_app(Settings.from_env()), host=args.host, port=args.port, log_level=args.log_level)
    return 0
