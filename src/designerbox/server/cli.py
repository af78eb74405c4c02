"""`designerbox serve`: the studio server (REST API, compatible APIs, web page); `designerbox worker`: a
cluster's GPU worker (Celery over Redis, see server/cluster.py); `designerbox users` and `designerbox keys`:
the server's users and API keys (home/users.sqlite, or the --database / DESIGNERBOX_DATABASE URL);
`designerbox jobs prune`: delete old finished jobs and the uploads no job names (retention.py)."""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import sys


class ServeError(ValueError):
    pass


def add_parser(sub) -> None:
    """The `serve`, `users` and `keys` commands."""
    s = sub.add_parser("serve", help="the studio server: REST API under /api/v1, web page at /, docs at /docs")
    s.add_argument("--host", default="127.0.0.1", help="address to listen on (loopback only until API keys exist)")
    s.add_argument("--port", type=int, default=7860)
    s.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"])
    _store_options(s)
    s.add_argument("--broker", help="a Redis URL (redis://HOST:6379/0): run no job here, send each to the "
                   "`designerbox worker` processes reading this broker")
    s.add_argument("--api-only", action="store_true", help="answer requests but run no job here: more API "
                   "processes on the database of one `serve` that runs the jobs (--database, DESIGNERBOX_DATABASE)")
    s.set_defaults(func=cmd_serve)

    w = sub.add_parser("worker", help="a cluster worker: runs the jobs an API server (serve --broker) sends over "
                       "Redis, on one device")
    w.add_argument("--broker", required=True, help="the Redis URL the API server sends jobs to (redis://HOST:6379/0)")
    w.add_argument("--device", help="cpu, cuda, cuda:N... (default: DESIGNERBOX_DEVICE, else cuda when present)")
    w.add_argument("--concurrency", type=int, default=1, help="jobs at once on the device (each slot loads its "
                   "own models; default 1)")
    w.add_argument("--lease", type=float, default=30.0, help="seconds a running job stays this worker's without "
                   "a heartbeat (renewed every third of it); after that another worker may take it over")
    w.add_argument("--visibility-timeout", type=float, default=300.0, help="seconds before Redis hands the "
                   "message of a job whose worker died to another worker")
    w.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"])
    _store_options(w)
    w.set_defaults(func=cmd_worker)

    u = sub.add_parser("users", help="the server's users (add, list)")
    usub = u.add_subparsers(dest="action", required=True)
    ua = usub.add_parser("add", help="add a user (role user; --admin: sees and manages everything)")
    ua.add_argument("name")
    ua.add_argument("--admin", action="store_true")
    ua.add_argument("--max-concurrent", type=int, help="queued + running jobs at once (default: the server's)")
    ua.add_argument("--jobs-per-minute", type=int, help="jobs submitted a minute (default: the server's)")
    ul = usub.add_parser("list", help="users, their roles, quotas and live keys")
    ul.add_argument("--json", action="store_true")
    u.set_defaults(func=cmd_users)

    j = sub.add_parser("jobs", help="the server's job records (prune: delete old finished jobs and their uploads)")
    jsub = j.add_subparsers(dest="action", required=True)
    jp = jsub.add_parser("prune", help="delete jobs finished more than DAYS ago (never queued or running ones), "
                         "then the uploaded input images no remaining job names; gallery images are kept")
    jp.add_argument("--older-than", required=True, metavar="DAYS", type=_days,
                    help="days since the job finished (0 or more; 0.5 is twelve hours)")
    jp.add_argument("--dry-run", action="store_true", help="delete nothing; report what would be deleted")
    jp.add_argument("--json", action="store_true")
    _store_options(jp)
    j.set_defaults(func=cmd_jobs)

    k = sub.add_parser("keys", help="API keys (create: printed once; revoke; list)")
    ksub = k.add_subparsers(dest="action", required=True)
    kc = ksub.add_parser("create", help="a new key for a user, printed once (only its hash is kept)")
    kc.add_argument("user")
    kr = ksub.add_parser("revoke", help="revoke a key by its id (the 12 hex after 'dbx_')")
    kr.add_argument("id")
    kl = ksub.add_parser("list", help="keys: ids, owners, when created and revoked")
    kl.add_argument("--user")
    k.set_defaults(func=cmd_keys)


def _store_options(p) -> None:
    p.add_argument("--database", help="SQLAlchemy URL for jobs, images and users, shared by a cluster "
                   "(postgresql+psycopg://USER:PASS@HOST/DB; default: SQLite files in DESIGNERBOX_HOME)")
    p.add_argument("--images", help="the gallery folder, shared by a cluster (default: DESIGNERBOX_HOME/gallery)")


def _settings(args):
    """Settings from the environment, then --database and --images."""
    from pathlib import Path

    from designerbox.settings import Settings

    settings = Settings.from_env()
    if args.database:
        if "://" not in args.database:
            raise ServeError(f"--database must be a SQLAlchemy URL (sqlite:////PATH/db.sqlite, "
                             f"postgresql+psycopg://USER:PASS@HOST/DB), not {args.database!r}")
        settings = dataclasses.replace(settings, database=args.database)
    if args.images:
        settings = dataclasses.replace(settings, images=Path(args.images).expanduser())
    return settings


def _days(text: str) -> float:
    import argparse

    from designerbox.server.retention import check_days

    try:
        return check_days(text, "DAYS")
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def cmd_jobs(args) -> int:
    from designerbox.server.queue import JobQueue
    from designerbox.server.retention import prune
    from designerbox.studio import Studio

    settings = _settings(args)
    out = prune(Studio(settings), JobQueue(settings.store("queue.sqlite")), args.older_than, dry_run=args.dry_run)
    if args.json:
        print(json.dumps(out, indent=2))
    else:
        verb = "would delete" if args.dry_run else "deleted"
        print(f"{verb} {out['jobs']} job(s) finished over {args.older_than:g} days ago and {out['inputs']} "
              f"uploaded input file(s) no job names ({out['bytes_freed']} bytes)")
    return 0


def _check_broker(url: str) -> None:
    if not url.startswith(("redis://", "rediss://")):
        raise ServeError(f"--broker must be a Redis URL (redis://HOST:6379/0, or rediss:// for TLS), not {url!r}")
    try:
        import celery  # noqa: F401
        import redis  # noqa: F401
    except ImportError as err:
        raise ServeError(f"a cluster needs the 'server' extra ({err.name} is missing): "
                         "pip install 'designerbox[server]'") from None


def cmd_worker(args) -> int:
    import logging

    import torch

    from designerbox.server.cluster import run_worker

    _check_broker(args.broker)
    settings = _settings(args)
    device = args.device or settings.resolve_device()
    try:
        kind = torch.device(device).type
    except RuntimeError:
        raise ServeError(f"--device {device!r} is not a device; use cpu, cuda, cuda:N or mps") from None
    if kind == "cuda" and not torch.cuda.is_available():
        raise ServeError(f"--device {device}: CUDA is not available on this host; use --device cpu")
    if args.concurrency < 1:
        raise ServeError(f"--concurrency must be 1 or more, not {args.concurrency}")
    if args.lease <= 0 or args.visibility_timeout <= 0:
        raise ServeError("--lease and --visibility-timeout must be positive numbers of seconds")
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    run_worker(settings, args.broker, device, args.concurrency, args.lease, args.visibility_timeout, args.log_level)
    return 0


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        raise ServeError(f"--host must be an IP address or 'localhost', not {host!r}") from None


def check_host(host: str, has_keys: bool = False) -> None:
    """Without API keys anyone who reaches the port can use and delete everything: loopback only."""
    if not is_loopback(host) and not has_keys:
        raise ServeError(f"refusing to listen on {host}: this server has no API keys yet, so anyone who can reach it "
                         "could generate, read and delete images; create a user and a key first "
                         "(designerbox users add NAME --admin; designerbox keys create NAME), or use 127.0.0.1")


def _users(settings):
    from designerbox.store.users import UserStore

    return UserStore(settings.store("users.sqlite"))


def cmd_users(args) -> int:
    from designerbox.settings import Settings

    store = _users(Settings.from_env())
    if args.action == "add":
        user = store.add_user(args.name, "admin" if args.admin else "user", args.max_concurrent, args.jobs_per_minute)
        print(f"added {user.role} {user.name!r}; create a key with: designerbox keys create {user.name}")
        return 0
    keys = store.keys()
    rows = [dict(u.public(), keys=[k["id"] for k in keys if k["user"] == u.name and not k["revoked_at"]])
            for u in store.users()]
    if args.json:
        print(json.dumps(rows, indent=2))
    elif not rows:
        print("no users: the server runs in single-user mode on loopback (designerbox users add NAME --admin)")
    for r in [] if args.json else rows:
        quota = lambda v: "default" if v is None else "no limit" if v == 0 else str(v)  # noqa: E731
        print(f"{r['name']:<20} {r['role']:<6} concurrent {quota(r['max_concurrent'])}, per minute "
              f"{quota(r['jobs_per_minute'])}, live keys: {', '.join(r['keys']) or 'none'}")
    return 0


def cmd_keys(args) -> int:
    from designerbox.settings import Settings

    store = _users(Settings.from_env())
    if args.action == "create":
        key, row = store.create_key(args.user)
        print(key)
        print(f"key {row['id']} for {row['user']!r}: shown this once, keep it (only its hash is stored); "
              "send it as 'Authorization: Bearer <key>'", file=sys.stderr)
    elif args.action == "revoke":
        row = store.revoke_key(args.id)
        print(f"key {row['id']} of {row['user']!r} revoked at {row['revoked_at']}")
    else:
        for row in store.keys(args.user):
            print(f"{row['id']}  {row['user']:<20} created {row['created_at']}"
                  + (f"  revoked {row['revoked_at']}" if row["revoked_at"] else ""))
    return 0


def cmd_serve(args) -> int:
    settings = _settings(args)
    if args.broker:
        _check_broker(args.broker)
    loopback = is_loopback(args.host)
    if not loopback:
        check_host(args.host, _users(settings).has_keys())
        settings = dataclasses.replace(settings, require_keys=True)  # even if every key is revoked later
    if not 0 < args.port < 65536:
        raise ServeError(f"--port must be between 1 and 65535, not {args.port}")
    try:
        import uvicorn

        from designerbox.server.app import create_app
    except ImportError as err:
        raise ServeError(f"the server needs the 'server' extra ({err.name} is missing): "
                         "pip install 'designerbox[server]'") from None
    app = create_app(settings, broker=args.broker, workers=not getattr(args, "api_only", False))
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level)
    return 0
