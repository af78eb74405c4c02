"""`designerbox info | verify | originality | history | show`: what made an image, whether it replays, whether
it is a copy of a reference image, and the gallery of every image drawn."""

from __future__ import annotations

import json
from pathlib import Path

from designerbox.cli.common import image_path


def add_parsers(sub) -> None:
    i = sub.add_parser("info", help="what made an image (reads its PNG metadata)")
    i.add_argument("image", type=image_path)
    i.add_argument("--json", action="store_true")
    i.set_defaults(func=cmd_info)

    v = sub.add_parser("verify", help="draw an image again from its record and compare (exit 0: identical, "
                       "1: differs)")
    v.add_argument("image", type=image_path)
    v.add_argument("--json", action="store_true")
    v.set_defaults(func=cmd_verify)

    o = sub.add_parser("originality", help="is an image new, or a copy? its nearest images in a reference set "
                       "(exit 0: new or close, 1: a copy)")
    o.add_argument("images", nargs="+", type=image_path, metavar="IMAGE")
    o.add_argument("--against", required=True, type=image_path, metavar="REF",
                   help="a dataset folder (designerbox data build) or a folder of images (png, jpg, webp)")
    o.add_argument("--top", type=int, default=3, help="nearest reference images shown per image (default 3)")
    o.add_argument("--json", action="store_true")
    o.set_defaults(func=cmd_originality)

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


def cmd_info(args) -> int:
    from designerbox.registry.licences import flag
    from designerbox.store.content_credentials import describe, read_credentials
    from designerbox.store.png_metadata import read_parameters, read_record

    record = read_record(Path(args.image))
    credentials = read_credentials(Path(args.image).read_bytes())
    if args.json:  # the record, and what a C2PA reader makes of the file
        print(json.dumps(dict(record, content_credentials=credentials), indent=2))
    else:
        print(read_parameters(Path(args.image)))
        print(f"Model sha256: {record['model']['sha256']}")
        if record["model"].get("licence"):  # images from before the licence flag lack commercial_use
            print(f"Model licence: {record['model']['licence']} (commercial use: "
                  f"{record['model'].get('commercial_use') or flag(record['model']['licence'])['commercial_use']})")
        if record.get("native_size"):
            print(f"Size: {record['resized']}" if record.get("resized")  # "drawn at 32x32, resized to ..."
                  else f"Drawn at {'x'.join(map(str, record['native_size']))}")
        if record.get("task") == "filter":
            print(f"Filtered {record['input'].get('file', 'an image')} (sha256 {record['input'].get('sha256', '?')})")
        print("Versions: " + ", ".join(f"{k} {v}" for k, v in record["versions"].items()))
        print(describe(credentials))
    return 0


def cmd_verify(args) -> int:
    from designerbox.jobs.verify import describe, verify
    from designerbox.studio import Studio

    report = verify(Studio(), Path(args.image))
    print(json.dumps(report, indent=2) if args.json else describe(report))
    return 0 if report["identical"] else 1


def cmd_originality(args) -> int:
    from designerbox.studio import Studio
    from designerbox.training.originality import check, describe

    report = check(Studio(), [Path(p) for p in args.images], Path(args.against), top=args.top)
    print(json.dumps(report, indent=2) if args.json else describe(report))
    return 1 if report["copies"] else 0


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
