"""`designerbox brand add|list|show|delete|fonts`: brand kits for the marketing tool, kept per user
(store/brands.py), and the fonts a kit may use. `designerbox tool marketing --brand NAME` uses one."""

from __future__ import annotations

import io
import json


def add_parsers(sub) -> None:
    b = sub.add_parser("brand", help="brand kits for the marketing tool (add, list, show, delete, fonts)")
    bsub = b.add_subparsers(dest="action", required=True)
    ba = bsub.add_parser("add", help="save a brand kit: colours (#RRGGBB), fonts (`designerbox brand fonts`), a logo")
    ba.add_argument("name")
    for role, default in (("primary", "#2347B8"), ("secondary", "#FFC914"), ("background", "#FFFFFF"),
                          ("text", "#17213A")):
        ba.add_argument(f"--{role}", default=default, help=f"{role} colour (default {default})")
    ba.add_argument("--headline-font", default="dejavu-sans-bold")
    ba.add_argument("--body-font", default="dejavu-sans")
    ba.add_argument("--logo", help="a logo image (PNG with transparency is best)")
    ba.add_argument("--replace", action="store_true", help="overwrite a kit of that name")
    bl = bsub.add_parser("list", help="your brand kits")
    bs = bsub.add_parser("show", help="one brand kit")
    bs.add_argument("name")
    bd = bsub.add_parser("delete", help="delete a brand kit")
    bd.add_argument("name")
    bf = bsub.add_parser("fonts", help="the fonts a kit may use: installed or not, their Debian package and licence")
    for p in (ba, bl, bs, bd, bf):
        p.add_argument("--user", default=None, help="whose kits (default: the local user)")
        p.add_argument("--json", action="store_true")
    b.set_defaults(func=cmd_brand)


def brand_store():
    from designerbox.settings import Settings
    from designerbox.store.brands import BrandStore

    settings = Settings.from_env()
    return BrandStore(settings.store("brands.sqlite"), settings.home / "brands")


def owner(user: str | None) -> str:
    from designerbox.store.gallery import LOCAL_USER

    return user or LOCAL_USER


def load_brand(name: str, user: str | None = None) -> dict:
    """A saved kit, validated, as the marketing tool's `brand` option."""
    from designerbox.tools.marketing import BrandKit

    return BrandKit(**brand_store().get(owner(user), name)).model_dump()


def _logo_png(path: str) -> bytes:
    from PIL import Image

    from designerbox.tools.image_input import load_image

    logo = load_image(path, max_pixels=4_000_000).image
    logo.thumbnail((1024, 1024), Image.LANCZOS)
    buf = io.BytesIO()
    logo.save(buf, format="PNG", optimize=True)
    return buf.getvalue()


def cmd_brand(args) -> int:
    if args.action == "fonts":
        return _fonts(args.json)
    store, who = brand_store(), owner(args.user)
    if args.action == "add":
        from designerbox.tools.marketing import BrandKit

        kit = BrandKit(name=args.name, colours={"primary": args.primary, "secondary": args.secondary,
                                                "background": args.background, "text": args.text},
                       fonts={"headline": args.headline_font, "body": args.body_font})
        saved = store.put(who, args.name, kit.model_dump(), _logo_png(args.logo) if args.logo else None,
                          replace=args.replace)
        print(json.dumps(saved, indent=2) if args.json else f"saved brand kit {args.name!r} for {who!r}")
        return 0
    if args.action == "delete":
        store.delete(who, args.name)
        print(f"deleted brand kit {args.name!r}")
        return 0
    if args.action == "show":
        kit = store.get(who, args.name)
        if args.json:
            print(json.dumps(kit, indent=2))
            return 0
        c, f = kit["colours"], kit["fonts"]
        print(f"{kit['name']}: primary {c['primary']}, secondary {c['secondary']}, background {c['background']}, "
              f"text {c['text']}; fonts {f['headline']} / {f['body']}; logo {kit['logo'] or 'none'}")
        return 0
    kits = store.list(who)
    if args.json:
        print(json.dumps(kits, indent=2))
    elif not kits:
        print("no brand kits (designerbox brand add NAME --primary '#RRGGBB' ...)")
    for k in [] if args.json else kits:
        print(f"{k['name']:<24} {k['colours']['primary']} {k['colours']['secondary']}  "
              f"{k['fonts']['headline']}/{k['fonts']['body']}" + ("  (logo)" if k["logo_sha256"] else ""))
    return 0


def _fonts(as_json: bool) -> int:
    from designerbox.tools.typeset import font_table, installed_fonts

    have = set(installed_fonts())
    rows = [dict(f, installed=f["id"] in have) for f in font_table().values()]
    if as_json:
        print(json.dumps(rows, indent=2))
        return 0
    for r in rows:
        state = "installed" if r["installed"] else f"apt-get install {r['package']}"
        print(f"{r['id']:<28} {state:<34} {r['licence']}")
    return 0
