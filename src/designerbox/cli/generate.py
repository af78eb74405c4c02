"""`designerbox generate` and `designerbox sheet`: text to image (and image to image), one image or a
contact sheet, through the same Studio the Python API uses."""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path

from designerbox.cli.common import CLIError, check_writable, parse_extend, parse_lora, request_options, sampling_options


def add_parsers(sub) -> None:
    g = sub.add_parser("generate", help="text to image")
    g.add_argument("prompt", nargs="?")
    sampling_options(g)
    g.add_argument("-n", type=int, help="images in the batch")
    g.add_argument("-o", "--output", default="outputs", help="a folder, or a .png file for one image")
    g.add_argument("--from", dest="source", metavar="IMAGE", help="reproduce the image this PNG records")
    g.add_argument("--init-image", metavar="IMAGE", help="image to image: start from this picture")
    g.add_argument("--strength", type=float, help="image to image: 0-1, how far from the picture (default 0.75)")
    g.add_argument("--mask", metavar="IMAGE", help="inpainting: white = repaint, black = keep (with --init-image)")
    g.add_argument("--extend", type=parse_extend, metavar="L,T,R,B",
                   help="outpainting: pixels to add left, top, right, bottom of --init-image, e.g. 0,0,128,0")
    g.add_argument("--outpaint-to", metavar="PRESET",
                   help="outpainting: extend --init-image to the aspect of a platform size (e.g. x-header), then resize")
    g.add_argument("--refiner", metavar="MODEL", help="redraw each image with this model (e.g. an SDXL refiner) "
                   "as image to image")
    g.add_argument("--refiner-strength", type=float, help="the refiner's share of the schedule (default 0.25)")
    g.add_argument("--lora", type=parse_lora, action="append", metavar="NAME[:WEIGHT]",
                   help="apply loras/NAME.safetensors (repeatable), as <lora:NAME:WEIGHT> in the prompt would")
    g.add_argument("--json", action="store_true")
    g.add_argument("--quiet", action="store_true", help="no progress bar")
    g.add_argument("--no-gallery", action="store_true", help="do not record the images in the gallery")
    g.set_defaults(func=cmd_generate)

    sh = sub.add_parser("sheet", help="a contact sheet: one row per prompt in a file")
    sh.add_argument("prompts", help="a text file, one prompt per line")
    sampling_options(sh)
    sh.add_argument("--columns", type=int, default=4, help="images (seeds) per prompt (per model with --models)")
    sh.add_argument("--models", help="comma-separated model ids drawn side by side with the same seeds, "
                                     "e.g. dbx-base-v2,dbx-base-v1,dbx-gan-v0")
    sh.add_argument("-o", "--output", default="outputs/sheet.png")
    sh.set_defaults(func=cmd_sheet, n=None)


def progress_bar(total_images: int):
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
    from designerbox.registry.licences import notice as licence_notice
    from designerbox.store.png_metadata import read_record
    from designerbox.studio import Studio

    if args.source:
        if args.prompt:
            raise CLIError("give a prompt or --from IMAGE, not both")
        request, index = request_from_record(read_record(Path(args.source)))
    else:
        if not args.prompt:
            raise CLIError("a prompt is needed (or --from IMAGE to reproduce an image)")
        request, index = GenerationRequest(prompt=args.prompt, **request_options(args)), None
    out = Path(args.output)
    check_writable(out)
    studio = Studio()
    quiet = args.json or args.quiet
    images = studio.generate(request, progress=None if quiet else progress_bar(request.batch_size),
                             save=not args.no_gallery)
    if index is not None:
        images = [images[index]]
    paths = studio.export(images, out)
    model = images[0].record["model"]
    if (notice := licence_notice(model["id"], model["licence"])):
        print(notice, file=sys.stderr)  # commercial use "no" or "unknown": said once, not an error
    if args.json:
        print(json.dumps([{"path": str(p), "id": img.id, "record": img.record} for p, img in zip(paths, images)], indent=2))
    else:
        for p, img in zip(paths, images):
            note = f"  ({img.record['resized']})" if img.record["resized"] else ""
            print(f"{p}{note}")
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
    check_writable(out)
    studio = Studio()
    opts = request_options(args) | {"batch_size": args.columns}
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
    buf = io.BytesIO()
    contact_sheet(rows, title=title, headers=headers).save(buf, format="PNG")
    out.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(out, buf.getvalue())
    print(out)
    return 0
