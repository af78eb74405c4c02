"""The `designerbox` command: parses arguments, then calls the same functions as the Python API.

One module per room, each adding its subcommands to the parser and holding their functions:
  generate.py   generate, sheet               gallery.py  info, verify, originality, history, show
  models.py     models, assets, filter        train.py    data, train, grow, eval
  gan.py        gan train | interpolate | variations
  tool.py       tool (the creation tools)     brand.py    brand (brand kits)
  common.py     CLIError, argument types, the sampling options, the output check
The server's `serve` keeps its options in designerbox/server/cli.py.
"""

from __future__ import annotations

import argparse
import sys

from pydantic import ValidationError

from designerbox.cli.common import CLIError

__all__ = ["CLIError", "build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    from designerbox.cli import brand, gallery, gan, generate, models, tool, train
    from designerbox.server.cli import add_parser as add_serve_parser

    p = argparse.ArgumentParser(prog="designerbox", description="DesignerBox: a self-hosted AI image studio")
    sub = p.add_subparsers(dest="command", required=True)
    for room in (generate, models, gallery, train, gan):
        room.add_parsers(sub)
    add_serve_parser(sub)  # the server keeps its own options
    for room in (tool, brand):
        room.add_parsers(sub)
    return p


def _friendly(err: ValidationError) -> str:
    parts = []
    for e in err.errors():
        where = ".".join(str(x) for x in e["loc"]) or "request"
        parts.append(f"{where}: {e['msg'].removeprefix('Value error, ')}")
    return "invalid request: " + "; ".join(parts)


def main(argv: list[str] | None = None) -> int:
    from designerbox.jobs.generate import RequestError
    from designerbox.presets import UnknownPresetError
    from designerbox.registry.discovery import UnknownModelError
    from designerbox.registry.files import ModelFileError
    from designerbox.store.gallery import UnknownImageError
    from designerbox.store.png_metadata import MetadataError

    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except ValidationError as err:
        print(f"error: {_friendly(err)}", file=sys.stderr)
    except (CLIError, RequestError, UnknownPresetError, UnknownModelError, ModelFileError, MetadataError,
            UnknownImageError, MemoryError, ValueError) as err:
        print(f"error: {err.args[0] if isinstance(err, KeyError) else err}", file=sys.stderr)
    except OSError as err:
        print(f"error: {err.strerror or err}: {err.filename or ''}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
