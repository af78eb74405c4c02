"""One filter job, as every front door runs it: pick the filter model, read the image, filter, record.

    model id --filter_model--> manifest;  path --open_input--> image;  run_filter --> image + record + PNG bytes

The record (the `designerbox` PNG chunk) names the model and the sha256 of its weights, the input
file's name and sha256, the sizes, the device and the versions, so an output says what made it.
"""

from __future__ import annotations

import hashlib
import io
import platform
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from PIL import Image, ImageOps

from designerbox.pipelines.image_filter import apply_filter
from designerbox.registry.discovery import Registry
from designerbox.registry.manifest import ModelManifest
from designerbox.store.png_metadata import encode_png

INSTALL_HINT = "install one with `designerbox assets install vintage-photo`"


class FilterRequestError(ValueError):
    """The model is not an installed filter, or the input is not a readable image."""


@dataclass
class FilteredImage:
    image: Image.Image
    record: dict
    png: bytes


def filter_model(registry: Registry, model_id: str) -> ModelManifest:
    """The manifest of an installed filter model; the error names the installed ones."""
    filters = ", ".join(m.id for m in registry.list(kind="filter")) or f"none ({INSTALL_HINT})"
    if model_id not in registry.models:
        raise FilterRequestError(f"unknown filter model {model_id!r}; installed filter models: {filters}")
    m = registry.models[model_id]
    if m.kind != "filter":
        raise FilterRequestError(f"model {model_id!r} is a {m.kind} model, not a filter; "
                                 f"installed filter models: {filters}")
    return m


def open_input(path: Path) -> tuple[Image.Image, dict]:
    """The image at path, decoded and turned upright by its EXIF orientation, and what the record
    says about it (file name, sha256, size, mode)."""
    path = Path(path)
    if not path.is_file():
        raise FilterRequestError(f"input image not found: {path}" + (" (it is a folder)" if path.is_dir() else ""))
    data = path.read_bytes()
    try:
        with Image.open(io.BytesIO(data)) as im:
            im.load()
            image = ImageOps.exif_transpose(im)
    except Image.UnidentifiedImageError:
        raise FilterRequestError(f"{path} is not a readable image: not a format Pillow can decode") from None
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
        raise FilterRequestError(f"{path} is not a readable image: {err}") from None
    source = {"file": path.name, "sha256": hashlib.sha256(data).hexdigest(), "size": list(image.size),
              "mode": image.mode}
    return image, source


def run_filter(manifest: ModelManifest, model, image: Image.Image, source: dict | None = None) -> FilteredImage:
    """Filter one image with an already loaded model; returns it with its record and PNG bytes."""
    t0 = time.time()
    out = apply_filter(model, image)
    p = next(model.parameters())
    record = {
        "task": "filter",
        "model": {"id": manifest.id, "name": manifest.name, "family": manifest.family, "kind": manifest.kind,
                  "sha256": manifest.weights_sha256, "hash": manifest.short_hash, "licence": manifest.licence},
        "input": source or {"size": list(image.size), "mode": image.mode},
        "output_size": list(out.size), "device": str(p.device), "dtype": str(p.dtype).removeprefix("torch."),
        "seconds": round(time.time() - t0, 3), "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "versions": versions(),
    }
    return FilteredImage(image=out, record=record, png=png_bytes(out, record))


def versions() -> dict[str, str]:
    import torch

    from designerbox import __version__

    return {"designerbox": __version__, "torch": torch.__version__, "python": platform.python_version()}


def png_bytes(image: Image.Image, record: dict) -> bytes:
    """PNG with the record, and an A1111-style `parameters` line that PNG-info readers show."""
    m = record["model"]
    return encode_png(image, f"Filter: {m['id']}, Model hash: {m['hash']}, Model: {m['id']}, "
                             f"Size: {'x'.join(map(str, record['output_size']))}, "
                             f"Version: designerbox {record['versions']['designerbox']}", record)
