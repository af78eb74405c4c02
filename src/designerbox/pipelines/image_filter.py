"""Image-to-image filters: a PIL image in, the same size out (the CycleGAN "vintage photo" filter).

The network (`models.cyclegan.ResnetGenerator`) is fully convolutional but halves the image twice,
so the image is padded on the bottom and right to a multiple of `model.size_multiple` (and to at
least MIN_PADDED_SIDE, the smallest side its reflection pads accept), by reflection like the
network's own borders, and the result is cropped back. Its InstanceNorms normalise over the whole
image, so the image is filtered in one pass, not in tiles: memory grows with the pixel count, and
MAX_PIXELS bounds it (a 2048x2048 image holds about 1 GiB per full-size feature map in float32).

Value range, as vintagify trains and runs it: RGB uint8 -> x / 255, then (x - 0.5) / 0.5, so -1..1
in; tanh -1..1 out -> (y + 1) / 2 * 255 + 0.5, clipped to 0..255 and truncated to uint8 (the rounding
of torchvision's save_image). The same float operations in the same order, so that the port gives
the package's own pixels.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

MIN_PADDED_SIDE = 8              # 8 -> 4 -> 2 after the two stride-2 convs: reflection pad 1 needs 2
MAX_PIXELS = 2048 * 2048


class FilterError(ValueError):
    """The input cannot be filtered (not an image, empty, too large)."""


def apply_filter(model: torch.nn.Module, image: Image.Image) -> Image.Image:
    """Run an image-to-image `model` (RGB -1..1 (B, 3, H, W) -> (B, 3, H, W), with a `size_multiple`
    attribute) over `image`; returns an RGB image of the same size (RGBA, with the input's alpha
    untouched, when the input has transparency; grayscale comes back in colour). Device and dtype
    are the model's.
    """
    # 1. check at the boundary, before any work
    check_input(image)
    alpha = image.convert("RGBA").getchannel("A") if has_alpha(image) else None
    rgb = np.asarray(image.convert("RGB"), dtype=np.uint8)  # (H, W, 3)
    # 2. to -1..1, padded to a size the network keeps
    h, w, _ = rgb.shape
    x = torch.from_numpy(rgb.copy()).permute(2, 0, 1)[None].float().div(255)  # (1, 3, H, W) in 0..1
    x = (x - 0.5) / 0.5
    m = int(getattr(model, "size_multiple", 1))
    x = pad_to(x, max(MIN_PADDED_SIDE, -(-h // m) * m), max(MIN_PADDED_SIDE, -(-w // m) * m))
    # 3. the network, cropped back, to uint8 as save_image rounds
    p = next(model.parameters())
    with torch.inference_mode():
        y = model(x.to(device=p.device, dtype=p.dtype))[:, :, :h, :w].float().cpu()  # (1, 3, H, W) in -1..1
    y = (y + 1.0) / 2.0
    out = y.mul(255).add_(0.5).clamp_(0, 255).to(torch.uint8)[0].permute(1, 2, 0).numpy()  # (H, W, 3)
    result = Image.fromarray(np.ascontiguousarray(out), "RGB")
    if alpha is not None:
        result.putalpha(alpha)
    return result


def pad_to(x: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Pad (B, C, H, W) on the bottom and right to (B, C, height, width): by reflection where the
    image is large enough for it, else by repeating the edge (images a few pixels wide)."""
    _, _, h, w = x.shape
    ph, pw = height - h, width - w
    if ph == 0 and pw == 0:
        return x
    mode = "reflect" if ph < h and pw < w else "replicate"
    return F.pad(x, (0, pw, 0, ph), mode=mode)


def has_alpha(image: Image.Image) -> bool:
    return "A" in image.getbands() or (image.mode == "P" and "transparency" in image.info)


def check_input(image) -> None:
    if not isinstance(image, Image.Image):
        raise FilterError(f"a filter needs a PIL image, not {type(image).__name__}; open files with PIL.Image.open")
    w, h = image.size
    if w < 1 or h < 1:
        raise FilterError(f"the image is empty ({w}x{h})")
    if w * h > MAX_PIXELS:
        side = int(MAX_PIXELS**0.5)
        raise FilterError(f"a {w}x{h} image ({w * h / 1e6:.1f} MP) is larger than a filter runs on in one pass "
                          f"({MAX_PIXELS / 1e6:.1f} MP, about {side}x{side}): downscale or crop it first")
