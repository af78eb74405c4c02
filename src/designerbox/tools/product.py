"""product: a product photo in, an e-commerce image out (cut out, centred on marketplace white, a
studio gradient, a scene or transparency, with a soft contact shadow and an optional reflection),
sized for a marketplace preset.

    photo --cut_out--> alpha --compose--> W x H image, product filling `fill` of the frame

cut_out (the default, permissive method; no network weights):
  1. a working copy with its longer side at `work_size`;
  2. the background model: the median CIELAB colour of the border strip, and the border's own spread
     (how textured the background is);
  3. GrabCut (Rother et al., SIGGRAPH 2004) seeded from a mask: the border is background, pixels far
     from the border colour (beyond its spread) and salient (spectral residual) are probable product,
     the rest probable background; on a busy background (a table) it starts from a box around the
     salient subject instead, and what inside the box looks like the surface outside it (colour and
     texture, its shadow included: `background_like`) is background, sure where joined to the outside;
  4. clean-up: specks removed, parts under 5% of the largest part dropped, pinholes filled, and holes
     that do not look like the background (a shiny part GrabCut took for the table it mirrors);
  5. back at full size: the mask is upsampled and refined by a guided filter with the photo as guide
     (He et al., "Guided Image Filtering", ECCV 2010, alg. 1), so the alpha follows the real edge,
     then feathered by a Gaussian of `feather` pixels.
The ISNet matting model (imgly, AGPL-3.0) is not used: it may only come as an opt-in backend.

compose: edge colours are decontaminated (the background colour taken out of the half-transparent
rim: F = (I - (1 - a) B) / a), the product is scaled so its box fills `fill` of the frame along the
binding side, centred, and a contact shadow (the product's silhouette squashed flat under it,
blurred) is laid on the background before the product. The frame's border stays exactly the
background colour (#FFFFFF on white): the shadow is kept inside the margin.

scene: the background is a photo: a wallpaper or photo file (`scene`), or drawn from `scene_prompt`
by the studio's generation path (ctx.txt2img: the default model, or `model` when a diffusion model is
installed); it is cropped to cover the frame (centred), softened by `scene_blur` (a shallow depth of
field), and the product stands on its floor line (`floor`, a share of the height) instead of the centre.
reflection: a copy of the product flipped about its foot, below it on the floor, faded from
`reflection` opacity to nothing over `reflection_length` of the product's height (a glossy table);
on white and gradient the product and its reflection are centred together, so both fit the frame.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Literal

import cv2
import numpy as np
from PIL import Image, ImageFilter
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from designerbox.tools.registry import Tool, ToolImage
from designerbox.tools.saliency import border_lab, spectral_residual, thumbnail

if TYPE_CHECKING:
    from designerbox.tools.registry import ToolContext

HEX = re.compile(r"^#[0-9a-fA-F]{6}$")


class NoProductError(ValueError):
    """No product stands out from the background."""


class ProductOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    width: int = Field(2000, ge=64, le=8000, description="output width in pixels")
    height: int = Field(2000, ge=64, le=8000, description="output height in pixels")
    background: Literal["white", "gradient", "transparent", "scene"] = Field(
        "white", description="white: pure #FFFFFF (marketplaces); gradient: a studio sweep; transparent: RGBA PNG; "
                             "scene: a photo (scene) or a drawn scene (scene_prompt)")
    gradient: tuple[str, str] = Field(("#FBFBFC", "#D4D7DD"), description="top and bottom colours of the gradient")
    fill: float = Field(0.85, ge=0.3, le=1.0, description="share of the frame the product's box fills (binding side)")
    shadow: float = Field(0.35, ge=0.0, le=1.0, description="contact shadow opacity (0: none)")
    feather: float = Field(1.0, ge=0.0, le=20.0, description="edge softness in source pixels")
    method: Literal["grabcut"] = Field("grabcut", description="cut-out method")
    work_size: int = Field(640, ge=128, le=2048, description="longer side GrabCut works at")
    reflection: float = Field(0.0, ge=0.0, le=0.8, description="opacity of the reflection under the product (0: none)")
    reflection_length: float = Field(0.3, ge=0.05, le=1.0, description="reflection's fade length, share of the "
                                     "product's height")
    scene: str | None = Field(None, description="background=scene: a wallpaper or photo (a file path, or a data "
                              "URL over the API)")
    scene_prompt: str | None = Field(None, max_length=4000, description="background=scene: draw the scene from this "
                                     "prompt (the default model, or `model`)")
    scene_blur: float = Field(0.004, ge=0.0, le=0.05, description="blur of the scene, share of the frame's width")
    floor: float = Field(0.86, ge=0.4, le=1.0, description="background=scene: where the product stands, share of "
                         "the height")
    model: str | None = Field(None, description="the model that draws scene_prompt (default model when omitted)")
    seed: int | None = Field(None, ge=0, le=2**32 - 1, description="the seed of the drawn scene")

    @field_validator("gradient")
    @classmethod
    def _hex(cls, v: tuple[str, str]) -> tuple[str, str]:
        for c in v:
            if not HEX.match(c):
                raise ValueError(f"gradient colours must look like #RRGGBB, not {c!r}")
        return v

    @model_validator(mode="after")
    def _scene(self) -> "ProductOptions":
        given = [k for k in ("scene", "scene_prompt") if getattr(self, k)]
        if self.background == "scene" and len(given) != 1:
            raise ValueError("background=scene needs one of scene (a photo file) or scene_prompt (a prompt to draw)"
                             + (", not both" if given else ""))
        if self.background != "scene" and given:
            raise ValueError(f"{given[0]} is for background=scene (background is {self.background!r})")
        return self


# --- cut-out ------------------------------------------------------------------------------------

def cut_out(rgb: np.ndarray, work_size: int = 640, feather: float = 1.0) -> tuple[np.ndarray, dict]:
    """rgb (H, W, 3) uint8 -> (alpha (H, W) float32 in 0..1, details incl. the background colour)."""
    H, W = rgb.shape[:2]
    # 1. working copy
    small = thumbnail(rgb, work_size)
    h, w = small.shape[:2]
    # 2. the background model from the border strip
    lab, bg = border_lab(small)
    d = np.linalg.norm(lab - bg, axis=2)                                  # (h, w) distance from the border colour
    b = max(2, round(0.03 * min(h, w)))
    border = np.zeros((h, w), bool)
    border[:b], border[-b:], border[:, :b], border[:, -b:] = True, True, True, True
    spread = float(np.percentile(d[border], 90))
    # 3. GrabCut seeded by colour distance and saliency
    sal = cv2.resize(spectral_residual(small), (w, h), interpolation=cv2.INTER_LINEAR)
    far = d > max(12.0, 2.0 * spread)
    mask = np.full((h, w), cv2.GC_PR_BGD, np.uint8)
    mask[far | ((d > max(8.0, 1.5 * spread)) & (sal > 0.5))] = cv2.GC_PR_FGD
    mask[border & ~(d > max(25.0, 3 * spread))] = cv2.GC_BGD
    core = cv2.erode(far.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool) & (d > max(25.0, 4 * spread))
    mask[core & ~border] = cv2.GC_FGD
    like, sure = background_like(small, mask == cv2.GC_BGD)  # the surface's texture and the product's shadow
    mask[like & (mask == cv2.GC_PR_FGD)] = cv2.GC_PR_BGD
    mask[sure] = cv2.GC_BGD
    seed = "border colour"
    if (mask >= cv2.GC_PR_FGD).mean() < 0.01:  # a busy background (a photo on a table): start from a box
        if sal.std() < 0.02 and d.std() < 2.0:
            raise NoProductError("no product found: nothing in the photo stands out from its background "
                                 "(a plain or empty photo?)")
        x0, y0, x1, y1 = _seed_box(small, sal)
        outside = np.ones((h, w), bool)
        outside[y0:y1, x0:x1] = False
        like, sure = background_like(small, outside)  # the table inside the box, its shadow included
        mask[:] = cv2.GC_PR_FGD  # what only looks like the table (crema, the table mirrored in a spoon) is left to GrabCut
        mask[sure | outside] = cv2.GC_BGD
        if (mask == cv2.GC_PR_FGD).mean() < 0.002:
            raise NoProductError("no product found: everything in the photo looks like its background "
                                 "(a plain or empty photo?)")
        seed = "salient box"
    cv2.setRNGSeed(0)  # GrabCut's GMM initialisation draws from OpenCV's RNG: fixed for repeatable cut-outs
    bgd, fgd = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
    cv2.grabCut(np.ascontiguousarray(small), mask, None, bgd, fgd, 5, cv2.GC_INIT_WITH_MASK)
    m = ((mask == cv2.GC_FGD) | (mask == cv2.GC_PR_FGD)).astype(np.uint8)
    # 4. clean-up
    m = cv2.morphologyEx(m, cv2.MORPH_OPEN, np.ones((3, 3), np.uint8))
    n, labels, stats, _ = cv2.connectedComponentsWithStats(m, connectivity=8)
    if n <= 1:
        raise NoProductError("no product found: the cut-out came back empty (is the product the same colour "
                             "as the background?)")
    areas = stats[1:, cv2.CC_STAT_AREA]
    keep = 1 + np.flatnonzero(areas >= 0.05 * areas.max())
    m = np.isin(labels, keep).astype(np.uint8)
    holes = cv2.connectedComponentsWithStats(1 - m, connectivity=4)
    for i in range(1, holes[0]):
        x, y, ww, hh, area = holes[2][i]
        if x == 0 or y == 0 or x + ww == w or y + hh == h:
            continue
        hole = holes[1] == i
        if area < 0.002 * m.sum() or not (sure[hole].any() or like[hole].mean() > 0.5):  # pinholes, and holes
            m[hole] = 1  # that do not show the table (a spoon mirroring it is not its colour and grain)
    share = m.mean()
    if share < 0.002 or share > 0.97:
        raise NoProductError(f"no product found: the cut-out covers {share:.1%} of the photo "
                             "(it needs a product that stands out from its background)")
    # 5. full size, guided by the photo's own edges, feathered
    alpha = cv2.resize(m.astype(np.float32), (W, H), interpolation=cv2.INTER_LINEAR)
    r = max(2, round(2 * W / w))
    grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY).astype(np.float32) / 255.0
    alpha = np.clip(guided_filter(grey, alpha, r, 1e-3), 0, 1)
    alpha = np.clip((alpha - 0.5) * 1.5 + 0.5, 0, 1)  # the filter's ramp is wider than a real edge: steepen
    if feather > 0:
        alpha = cv2.GaussianBlur(alpha, (0, 0), sigmaX=feather)
    bg_rgb = cv2.cvtColor(np.uint8([[bg.clip(0, 255)]]), cv2.COLOR_LAB2RGB)[0, 0]
    return alpha.astype(np.float32), {"seed": seed, "background_rgb": [int(c) for c in bg_rgb], "border_spread": round(spread, 2),
                                      "mask_share": round(float(share), 4), "work_size": [w, h]}


def background_like(small: np.ndarray, sample: np.ndarray, k: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """(pixels that look like the background, those of them joined to the sample region), both (h, w) bool.

    The background model is learnt from the `sample` pixels (what lies outside GrabCut's box): k-means
    clusters, each with its own spread, over four features per pixel: log luminance, two log
    chromaticities (log R/G, log B/G) and texture (the log of the local gradient energy of log luminance,
    which a shadow leaves unchanged, as it leaves the chromaticities). A pixel is like the background
    when its distance to the nearest cluster is within the 90th percentile of the sample's own
    distances, in all four features, or, for a shadow, in the three that ignore brightness while it is
    darker than the background. The shadow test needs a textured surface (wood, cloth): on a plain
    sweep chromaticity and texture alone cannot tell a grey product from a shadow. Those joined to the
    sample region through such pixels (4-connected, after an opening that cuts bridges and strips under
    about 1% of the image wide, such as a spoon's handle mirroring the table) are sure background: the
    table around the product and the shadow it casts, however much of the box they fill."""
    f = small.astype(np.float32) + 8.0                                       # (h, w, 3); +8 tames dark noise
    lum = np.log(f.mean(axis=2))
    gx, gy = cv2.Sobel(lum, cv2.CV_32F, 1, 0, ksize=3), cv2.Sobel(lum, cv2.CV_32F, 0, 1, ksize=3)
    texture = np.log(cv2.blur(gx * gx + gy * gy, (7, 7)) + 1e-3)
    smooth = lambda x: cv2.GaussianBlur(x, (0, 0), 1.5)  # noqa: E731
    feats = np.dstack([smooth(lum), smooth(np.log(f[..., 0] / f[..., 1])), smooth(np.log(f[..., 2] / f[..., 1])),
                       texture])                                             # (h, w, 4)
    like = np.zeros(sample.shape, bool)
    darker = feats[..., 0] < np.median(feats[..., 0][sample])
    textured = np.median(cv2.blur(gx * gx + gy * gy, (7, 7))[sample]) > 0.01  # grain, weave: not a plain sweep
    floor = np.array([0.05, 0.03, 0.03, 0.25], np.float32)  # spreads below these are not told apart
    for cols, where, least in (([0, 1, 2, 3], True, 0.0), ([1, 2, 3], darker, 1.5))[: 2 if textured else 1]:
        d = _cluster_distance(feats[..., cols], sample, k, floor[cols])
        like |= (d <= max(least, np.percentile(d[sample], 90))) & where
    like &= ~sample
    o = 2 * max(1, round(0.005 * max(sample.shape))) + 1  # 7 px at 600: a thin part mirroring the table stays
    opened = cv2.morphologyEx(like.astype(np.uint8), cv2.MORPH_OPEN, np.ones((o, o), np.uint8)).astype(bool)
    _, labels = cv2.connectedComponents((opened | sample).astype(np.uint8), connectivity=4)
    joined = np.unique(labels[sample])
    return like, opened & np.isin(labels, joined[joined > 0])


def _cluster_distance(feats: np.ndarray, sample: np.ndarray, k: int, floor: np.ndarray) -> np.ndarray:
    """(h, w) float32: each pixel's distance to the nearest of k clusters of the sample's features, in
    units of that cluster's own spread per feature, at least `floor` (features first scaled by the
    sample's spread for the clustering)."""
    rng = np.random.default_rng(0)
    x = feats[sample]
    if len(x) > 20000:
        x = x[rng.choice(len(x), 20000, replace=False)]
    scale = np.maximum(x.std(axis=0), floor)
    x = (x / scale).astype(np.float32)
    cv2.setRNGSeed(0)
    criteria = (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_MAX_ITER, 20, 1e-3)
    _, label, centres = cv2.kmeans(x, min(k, len(x)), None, criteria, 2, cv2.KMEANS_PP_CENTERS)
    y = feats / scale
    d = np.full(feats.shape[:2], np.inf, np.float32)
    for j, c in enumerate(centres):
        members = x[label.ravel() == j]
        if len(members) >= 10:
            spread = np.maximum(members.std(axis=0), floor / scale)
            d = np.minimum(d, np.sqrt((((y - c) / spread) ** 2).mean(axis=-1)))
    return d


def _seed_box(small: np.ndarray, sal: np.ndarray) -> tuple[int, int, int, int]:
    """The salient subject's box grown by 8% and kept 2% inside the frame: GrabCut's starting rectangle."""
    from designerbox.tools.saliency import subject_box

    h, w = small.shape[:2]
    (x0, y0, x1, y1), _ = subject_box(small)
    gx, gy, mx, my = 0.08 * (x1 - x0), 0.08 * (y1 - y0), max(2, round(0.02 * w)), max(2, round(0.02 * h))
    return (max(mx, int(x0 - gx)), max(my, int(y0 - gy)), min(w - mx, int(x1 + gx)), min(h - my, int(y1 + gy)))


def guided_filter(guide: np.ndarray, src: np.ndarray, r: int, eps: float) -> np.ndarray:
    """He et al. 2010, algorithm 1 (grey guide): q = mean(a) * I + mean(b), box windows of radius r."""
    k = (2 * r + 1, 2 * r + 1)
    mean = lambda x: cv2.boxFilter(x, cv2.CV_32F, k)  # noqa: E731
    mi, mp = mean(guide), mean(src)
    var_i = mean(guide * guide) - mi * mi
    cov_ip = mean(guide * src) - mi * mp
    a = cov_ip / (var_i + eps)
    b = mp - a * mi
    return mean(a) * guide + mean(b)


# --- composition --------------------------------------------------------------------------------

def _hex_rgb(c: str) -> np.ndarray:
    return np.array([int(c[i:i + 2], 16) for i in (1, 3, 5)], np.float32)


def background(opts: ProductOptions, scene: Image.Image | None = None) -> np.ndarray:
    """(H, W, 3) float32 0..255: white, a vertical sweep with a soft light behind the product, or the
    scene cropped to cover the frame and softened."""
    W, H = opts.width, opts.height
    if opts.background == "scene":
        sw, sh = scene.size
        s = max(W / sw, H / sh)
        cw, ch = W / s, H / s  # the centred window of the frame's aspect
        box = ((sw - cw) / 2, (sh - ch) / 2, (sw + cw) / 2, (sh + ch) / 2)
        out = scene.convert("RGB").resize((W, H), Image.LANCZOS, box=box, reducing_gap=3.0)
        if opts.scene_blur > 0:
            out = out.filter(ImageFilter.GaussianBlur(opts.scene_blur * W))
        return np.asarray(out, np.float32)
    if opts.background != "gradient":
        return np.full((H, W, 3), 255.0, np.float32)
    top, bottom = _hex_rgb(opts.gradient[0]), _hex_rgb(opts.gradient[1])
    t = np.linspace(0, 1, H, dtype=np.float32)[:, None, None] ** 1.5
    sweep = top * (1 - t) + bottom * t
    yy, xx = np.ogrid[:H, :W]
    glow = np.exp(-(((xx - W / 2) / (0.45 * W)) ** 2 + ((yy - 0.45 * H) / (0.45 * H)) ** 2)).astype(np.float32)
    return np.broadcast_to(sweep, (H, W, 3)) * (1 - 0.5 * glow[..., None]) + top * 0.5 * glow[..., None]


def compose(rgb: np.ndarray, alpha: np.ndarray, opts: ProductOptions, bg_rgb=(255, 255, 255),
            scene: Image.Image | None = None) -> tuple[Image.Image, dict]:
    W, H = opts.width, opts.height
    # 1. the product's box, and its rim cleaned of the old background's colour
    ys, xs = np.nonzero(alpha > 0.02)
    x0, x1, y0, y1 = xs.min(), xs.max() + 1, ys.min(), ys.max() + 1
    a = alpha[y0:y1, x0:x1, None]
    img = rgb[y0:y1, x0:x1].astype(np.float32)
    rim = (a > 0.02) & (a < 0.98)
    fg = np.where(rim, (img - (1 - a) * np.float32(bg_rgb)) / np.maximum(a, 0.02), img)
    fg = np.clip(fg, 0, 255)
    # 2. scale to fill the frame along the binding side (the reflection counted in the height), and place:
    #    centred, or standing on the scene's floor line
    bw, bh = x1 - x0, y1 - y0
    tail = opts.reflection_length if opts.reflection > 0 else 0.0  # the reflection's length, share of nh
    s = opts.fill * min(W / bw, H / (bh * (1 + tail)))
    if opts.background == "scene":  # the product stands on the floor line, under the frame's top margin
        s = min(s, (opts.floor - (1 - opts.fill) / 2) * H / bh)
    nw, nh = max(1, min(W, round(bw * s))), max(1, min(H, round(bh * s)))
    interp = cv2.INTER_AREA if s < 1 else cv2.INTER_CUBIC
    fg = np.clip(cv2.resize(fg, (nw, nh), interpolation=interp), 0, 255)
    a = np.clip(cv2.resize(a[..., 0], (nw, nh), interpolation=interp), 0, 1)[..., None]
    rl = min(round(tail * nh), nh)
    px = (W - nw) // 2
    py = round(opts.floor * H) - nh if opts.background == "scene" else (H - nh - rl) // 2
    # 3. the contact shadow: the silhouette squashed flat at the product's foot, blurred, inside the margin
    shadow = np.zeros((H, W), np.float32)
    below = H - (py + nh)
    if opts.shadow > 0 and below > 6:
        sh = max(2, min(round(0.05 * nh), round((below - 2) / 1.8)))
        flat = cv2.resize(a[..., 0], (nw, sh), interpolation=cv2.INTER_AREA)
        top = py + nh - sh // 2
        shadow[top:top + sh, px:px + nw] = flat[: H - top]
        sigma = 0.35 * sh
        shadow = cv2.GaussianBlur(shadow, (2 * int(np.ceil(2.5 * sigma)) + 1,) * 2, sigma) * opts.shadow
        shadow[max(0, H - 1):] = 0  # never on the last row
    # 4. the reflection: the product flipped about its foot, fading out over rl rows below it
    refl_a = np.zeros((H, W, 1), np.float32)
    refl = np.zeros((H, W, 3), np.float32)
    rows = min(rl, H - (py + nh))
    if opts.reflection > 0 and rows > 0:
        fade = (opts.reflection * (1 - np.arange(rows, dtype=np.float32) / rl) ** 2)[:, None, None]
        refl_a[py + nh:py + nh + rows, px:px + nw] = a[::-1][:rows] * fade
        refl[py + nh:py + nh + rows, px:px + nw] = fg[::-1][:rows]
    # 5. layers: background, shadow, reflection, product
    canvas_a = np.zeros((H, W, 1), np.float32)
    canvas_a[py:py + nh, px:px + nw] = a
    product = np.zeros((H, W, 3), np.float32)
    product[py:py + nh, px:px + nw] = fg
    if opts.background == "transparent":
        under_a = shadow[..., None] + refl_a * (1 - shadow[..., None])  # the shadow is black
        under = refl * refl_a / np.maximum(under_a, 1e-6)
        out_a = canvas_a + under_a * (1 - canvas_a)
        colour = (product * canvas_a + under * under_a * (1 - canvas_a)) / np.maximum(out_a, 1e-6)
        arr = np.dstack([colour, out_a * 255])
        image = Image.fromarray(np.clip(np.rint(arr), 0, 255).astype(np.uint8), "RGBA")
    else:
        base = background(opts, scene) * (1 - shadow[..., None])
        base = refl * refl_a + base * (1 - refl_a)
        arr = product * canvas_a + base * (1 - canvas_a)
        image = Image.fromarray(np.clip(np.rint(arr), 0, 255).astype(np.uint8), "RGB")
    details = {"product_box": [int(px), int(py), int(px + nw), int(py + nh)],
               "fill": round(max(nw / W, nh / H), 4), "source_box": [int(x0), int(y0), int(x1), int(y1)]}
    if opts.reflection > 0:
        details["reflection_box"] = [int(px), int(py + nh), int(px + nw), int(py + nh + max(rows, 0))]
    return image, details


# --- the tool -----------------------------------------------------------------------------------

def run(image: Image.Image, opts: ProductOptions, ctx: ToolContext | None = None) -> list[ToolImage]:
    rgb = np.asarray(image.convert("RGB"))
    if image.mode == "RGBA" and np.asarray(image)[..., 3].min() < 250:  # already cut out: use its alpha
        alpha = np.asarray(image)[..., 3].astype(np.float32) / 255
        if (alpha > 0.02).mean() < 0.002:
            raise NoProductError("no product found: the image is (almost) fully transparent")
        found = {"method": "the input's own alpha", "background_rgb": [255, 255, 255]}
    else:
        alpha, found = cut_out(rgb, opts.work_size, opts.feather)
        found["method"] = opts.method
    scene, scene_source = None, None
    if opts.background == "scene":
        scene, scene_source = _scene(opts, ctx)
    out, placed = compose(rgb, alpha, opts, found["background_rgb"], scene)
    if scene_source is not None:
        placed["scene"] = scene_source
    return [ToolImage(name=f"{opts.width}x{opts.height}-{opts.background}", image=out, details=found | placed)]


def _scene(opts: ProductOptions, ctx: ToolContext | None) -> tuple[Image.Image, dict]:
    """The scene: a file through the safe loader, or drawn by the studio (the job's generation path)."""
    if opts.scene is not None:
        from designerbox.tools.image_input import load_option_image

        loaded = load_option_image(opts.scene, name="scene")
        return loaded.image.convert("RGB"), loaded.source
    if ctx is None:
        raise ValueError("scene_prompt needs the studio to draw it: run the product tool through run_tool "
                         "(designerbox tool product ...), or give a scene file")
    k = min(1024, max(opts.width, opts.height)) / max(opts.width, opts.height)  # the frame's aspect, <= 1024 px
    w, h = max(64, round(opts.width * k) // 8 * 8), max(64, round(opts.height * k) // 8 * 8)
    image, record = ctx.txt2img(opts.scene_prompt, model=opts.model, width=w, height=h, seed=opts.seed)
    return image.convert("RGB"), {"prompt": opts.scene_prompt, "model": record["model"]["id"],
                                  "seed": record["seed"], "size": list(image.size)}


TOOL = Tool(name="product", version="1.0", options=ProductOptions, run=run,
            uses_models=lambda opts: bool(opts.scene_prompt),  # the studio only to draw a scene
            summary="product photo -> cut-out on marketplace white, a studio gradient, a scene (photo or drawn) or "
                    "transparency, with a contact shadow and an optional reflection, at marketplace sizes")
