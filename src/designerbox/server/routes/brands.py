"""Brand kits over REST: the caller's own kits for the marketing tool (store/brands.py, the same store as
`designerbox brand`), and the fonts a kit may use.

    GET    /api/v1/brands              the caller's kits (no logo bytes; logo_url when there is one)
    POST   /api/v1/brands              {name, colours, fonts, logo: data URL, replace}: 201, the kit
    GET    /api/v1/brands/{name}       one kit
    GET    /api/v1/brands/{name}/logo.png
    DELETE /api/v1/brands/{name}       the kit deleted
    GET    /api/v1/fonts               the fonts (id, name, licence, installed here)

Kits belong to the user whose key made them; an admin too sees only their own (a kit is a personal
setting, not a shared record). Another user's kit is answered exactly as a missing one (404). The
marketing tool over REST takes `"brand": "NAME"` (one of the caller's kits) as well as a kit inline:
`brand_option` puts the saved kit, its logo as a data URL, into the job's options at submit.
"""

from __future__ import annotations

import base64
import io
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field, field_validator

from designerbox.server.deps import CurrentUser, StudioDep
from designerbox.server.submit import ImageTooLarge, InvalidRequest
from designerbox.server.tool_jobs import decode_data_url
from designerbox.store.brands import MAX_LOGO_BYTES, NAME_PATTERN, BrandStore, UnknownBrandError
from designerbox.store.users import User
from designerbox.tools.image_input import ImageInputError, load_image
from designerbox.tools.marketing import BrandColours, BrandFonts, BrandKit
from designerbox.tools.typeset import UnknownFontError, font_info, font_table, installed_fonts

router = APIRouter(tags=["brands"])
LOGO_SIDE = 1024  # logos are kept at most this many pixels on the long side, as PNG


def get_brands(request: Request) -> BrandStore:
    return request.app.state.brands


BrandsDep = Annotated[BrandStore, Depends(get_brands)]


class BrandCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=NAME_PATTERN.pattern, description="1-64 letters, digits, spaces, '_', '.', '-'")
    colours: BrandColours = Field(BrandColours(), description="#RRGGBB: primary, secondary, background, text")
    fonts: BrandFonts = Field(BrandFonts(), description="font ids of GET /api/v1/fonts: headline, body")
    logo: str | None = Field(None, max_length=(MAX_LOGO_BYTES * 4) // 3 + 64,
                             description="a logo image as a data URL (PNG with transparency is best)")
    replace: bool = Field(False, description="overwrite a kit of that name")

    @field_validator("fonts")
    @classmethod
    def _installed(cls, v: BrandFonts) -> BrandFonts:
        for font in (v.headline, v.body):
            try:
                font_info(font)  # known and installed on this server, or the message names the package
            except UnknownFontError as err:
                raise ValueError(str(err)) from None
        return v


class BrandPublic(BaseModel):
    name: str
    colours: BrandColours
    fonts: BrandFonts
    logo_url: str | None = None
    logo_sha256: str | None = None
    updated_at: str | None = None


class BrandList(BaseModel):
    brands: list[BrandPublic]


def _public(kit: dict, request: Request) -> BrandPublic:
    sha = kit.get("logo_sha256")
    url = str(request.url_for("get_brand_logo", name=kit["name"])) if sha else None
    return BrandPublic(name=kit["name"], colours=kit["colours"], fonts=kit["fonts"], logo_url=url,
                       logo_sha256=sha, updated_at=kit.get("updated_at"))


def _one(brands: BrandStore, user: User, name: str) -> dict:
    """The caller's kit as listed (with logo_sha256, updated_at); UnknownBrandError (404) naming their kits."""
    kits = {k["name"]: k for k in brands.list(user.name)}
    if name not in kits:
        brands.get(user.name, name)  # raises, naming the caller's kits
    return kits[name]


def logo_png(data: bytes, field: str = "logo") -> bytes:
    """An uploaded logo as PNG, at most LOGO_SIDE on its long side; 422 naming the problem."""
    from PIL import Image

    try:
        logo = load_image(data, name=field, max_pixels=4_000_000).image
    except ImageInputError as err:
        raise InvalidRequest(str(err), field) from None
    logo.thumbnail((LOGO_SIDE, LOGO_SIDE), Image.LANCZOS)
    buf = io.BytesIO()
    logo.save(buf, format="PNG", optimize=True)
    return buf.getvalue()


@router.get("/brands", response_model=BrandList, summary="Your brand kits (for the marketing tool)")
def list_brands(request: Request, brands: BrandsDep, user: CurrentUser) -> BrandList:
    return BrandList(brands=[_public(k, request) for k in brands.list(user.name)])


@router.post("/brands", status_code=201, response_model=BrandPublic,
             summary="Save a brand kit: colours, fonts (GET /api/v1/fonts), a logo as a data URL")
def create_brand(body: BrandCreate, request: Request, brands: BrandsDep, studio: StudioDep,
                 user: CurrentUser) -> BrandPublic:
    png = None
    if body.logo is not None:
        limit = min(studio.settings.max_image_bytes or MAX_LOGO_BYTES, MAX_LOGO_BYTES)
        try:
            png = logo_png(decode_data_url(body.logo, "logo", limit))
        except ImageTooLarge as err:
            raise InvalidRequest(str(err), "logo") from None
    if not body.replace and any(k["name"] == body.name for k in brands.list(user.name)):
        raise HTTPException(409, f"brand kit {body.name!r} already exists; send \"replace\": true to overwrite it")
    kit = BrandKit(name=body.name, colours=body.colours, fonts=body.fonts)
    brands.put(user.name, body.name, kit.model_dump(), png, replace=body.replace)
    return _public(_one(brands, user, body.name), request)


@router.get("/brands/{name}", response_model=BrandPublic, summary="One of your brand kits")
def get_brand(name: str, request: Request, brands: BrandsDep, user: CurrentUser) -> BrandPublic:
    return _public(_one(brands, user, name), request)


@router.get("/brands/{name}/logo.png", summary="A brand kit's logo (PNG)", responses={200: {"content": {"image/png": {}}}})
def get_brand_logo(name: str, brands: BrandsDep, user: CurrentUser) -> Response:
    kit = brands.get(user.name, name)
    if not kit["logo"]:
        raise UnknownBrandError(f"brand kit {name!r} has no logo")
    with open(kit["logo"], "rb") as f:
        return Response(f.read(), media_type="image/png")


@router.delete("/brands/{name}", response_model=BrandPublic, summary="Delete one of your brand kits")
def delete_brand(name: str, request: Request, brands: BrandsDep, user: CurrentUser) -> BrandPublic:
    kit = _public(_one(brands, user, name), request)
    brands.delete(user.name, name)
    return kit.model_copy(update={"logo_url": None})


@router.get("/fonts", summary="The fonts a brand kit may use: id, name, licence, installed on this server")
def list_fonts() -> list[dict]:
    have = set(installed_fonts())
    return [{"id": f["id"], "name": f["name"], "bold": f["bold"], "licence": f["licence"],
             "package": f["package"], "installed": f["id"] in have} for f in font_table().values()]


def brand_option(brands: BrandStore, user: User, options: dict) -> dict:
    """A tool's options with `"brand": "NAME"` replaced by the caller's saved kit (its logo as a data URL, which
    submit_tool keeps as an input file, so the queued job holds the kit as it was: a retry draws the same);
    422 naming the caller's kits."""
    name = options.get("brand") if isinstance(options, dict) else None
    if not isinstance(name, str):
        return options
    try:
        kit = brands.get(user.name, name)
    except UnknownBrandError as err:
        raise InvalidRequest(f"options.brand: {err}", "options") from None
    if kit["logo"]:
        with open(kit["logo"], "rb") as f:
            kit["logo"] = "data:image/png;base64," + base64.b64encode(f.read()).decode()
    return dict(options, brand=BrandKit(**kit).model_dump())
