"""`designerbox tool NAME INPUT... [-o PATH] [--preset ID] [--set KEY=VALUE]... [--json]` and
`designerbox tool list`: the creation tools from the command line. Parses, then calls
jobs.tool.run_tool and jobs.tool.export, the same functions the REST API will call.

(In cli/ rather than in tools/: it imports jobs and the Studio, which sit above tools.)
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def add_parsers(sub) -> None:
    t = sub.add_parser("tool", help="creation tools: product photos, social sizes ... (`designerbox tool list`)",
                       add_help=False)
    t.add_argument("name", nargs="?", default="list", help="a tool (product, social, marketing ...), or `list`")
    t.add_argument("argv", nargs=argparse.REMAINDER)  # parsed by tool_parser: options may come before inputs
    t.set_defaults(func=cmd_tool)


def tool_parser(name: str) -> argparse.ArgumentParser:
    t = argparse.ArgumentParser(prog=f"designerbox tool {name}",
                                description="Run a creation tool on images. `designerbox tool list` shows the "
                                            "tools, their options and presets.")
    t.add_argument("inputs", nargs="*", metavar="INPUT", help="input images (each is processed on its own)")
    t.add_argument("-o", "--output", default="outputs",
                   help="a folder (default outputs/), a .png file for one output, or a .zip file")
    t.add_argument("--preset", help="a preset of the tool, e.g. amazon (product) or instagram (social)")
    t.add_argument("--set", dest="options", action="append", default=[], metavar="KEY=VALUE",
                   help="a tool option, e.g. --set background=gradient --set fill=0.8; "
                        "lists comma-separated (--set sizes=x-post,tiktok); JSON values are read as JSON")
    t.add_argument("--prompt", help="tools that take one: draw the input image from this prompt first")
    t.add_argument("--brand", help="marketing: a brand kit saved with `designerbox brand add` (--user: whose)")
    t.add_argument("--user", help="whose brand kit (default: the local user)")
    t.add_argument("--zip", action="store_true", help="write every output into one zip file")
    t.add_argument("--max-megapixels", type=float, default=25.0,
                   help="inputs larger than this are downscaled while loading (default 25)")
    t.add_argument("--no-gallery", action="store_true", help="do not record the outputs in the gallery")
    t.add_argument("--json", action="store_true")
    return t


def parse_options(pairs: list[str]) -> dict:
    """["fill=0.8", "sizes=x-post,tiktok", "gradient=[\"#FFFFFF\",\"#DDDDDD\"]"] -> a dict of values."""
    options = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--set takes KEY=VALUE, not {pair!r}")
        try:
            options[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            options[key.strip()] = value
    return options


def cmd_tool(ns) -> int:
    from designerbox.tools.registry import get_tool

    if ns.name in ("-h", "--help"):
        tool_parser("NAME").print_help()
        return 0
    args = tool_parser(ns.name).parse_intermixed_args(ns.argv)
    if ns.name == "list":
        return _list(args.json)
    tool = get_tool(ns.name)
    options = parse_options(args.options)
    if args.prompt is not None:
        if not tool.prompt_field:
            raise ValueError(f"the {tool.name} tool does not take a prompt; give it input images")
        options[tool.prompt_field] = args.prompt
    if args.brand is not None:
        if "brand" not in tool.options.model_fields:
            raise ValueError(f"the {tool.name} tool takes no brand kit (--brand is for the marketing tool)")
        from designerbox.cli.brand import load_brand

        options["brand"] = load_brand(args.brand, args.user)
    from designerbox.jobs.tool import export, run_tool

    out = Path(args.output)
    outputs = run_tool(tool.name, args.inputs, options, args.preset, save=not args.no_gallery,
                       max_pixels=int(args.max_megapixels * 1e6))
    paths = export(outputs, out, as_zip=args.zip)
    if args.json:
        print(json.dumps({"paths": [str(p) for p in paths],
                          "outputs": [{"name": o.name, "id": o.id, "record": o.record} for o in outputs]}, indent=2))
        return 0
    for o in outputs:
        notes = "; ".join(o.record["input"].get("notes", []))
        cut = o.record["details"].get("cut") or o.record["details"].get("note")  # what was cut, or a fallback taken
        print(f"{o.name:<20} {'x'.join(map(str, o.record['output_size'])):<10} "
              f"{o.record['timings']['tool_s']:.2f} s" + (f"  ({cut})" if cut else "") + (f"  [{notes}]" if notes else ""),
              file=sys.stderr)
    for p in paths:
        print(p)
    return 0


def _list(as_json: bool) -> int:
    from designerbox.tools.registry import tools

    table = [{"name": t.name, "version": t.version, "summary": t.summary,
              "options": {k: {"default": _plain(f.default), "description": f.description}
                          for k, f in t.options.model_fields.items()},
              "presets": {pid: p["name"] for pid, p in t.presets().items()}} for t in tools()]
    if as_json:
        print(json.dumps(table, indent=2))
        return 0
    for t in table:
        print(f"{t['name']} {t['version']}: {t['summary']}")
        print("  presets: " + ", ".join(t["presets"]))
        for k, o in t["options"].items():
            print(f"    --set {k}=...  {o['description'] or ''} (default {o['default']})")
    return 0


def _plain(v):
    from pydantic import BaseModel

    if isinstance(v, BaseModel):  # a nested default (the marketing tool's brand kit)
        return v.model_dump(mode="json")
    return list(v) if isinstance(v, tuple) else v

