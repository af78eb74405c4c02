"""What made an image, written into the PNG itself.

Two text chunks:
  parameters   A1111's infotext, so existing readers (A1111's PNG Info, ComfyUI, Civitai, exiftool)
               show prompt, seed, steps, sampler and model hash;
  designerbox  the full JSON record (request as resolved, model id and sha256, sizes, versions);
and a C2PA manifest (`caBX` chunk) signing the file: store/content_credentials.py.
"""

from __future__ import annotations

import io
import json
import os
import tempfile
from pathlib import Path

from PIL import Image, PngImagePlugin

RECORD_KEY = "designerbox"

# our sampler/schedule ids -> the names A1111 writes
A1111_SAMPLERS = {"euler": "Euler", "euler_a": "Euler a", "heun": "Heun", "dpmpp_2m": "DPM++ 2M",
                  "dpmpp_2m_sde": "DPM++ 2M SDE", "ddim": "DDIM"}
A1111_SCHEDULES = {"karras": "Karras", "exponential": "Exponential", "simple": "Simple"}


class MetadataError(ValueError):
    pass


def infotext(record: dict) -> str:
    """A1111's `parameters` text for one image."""
    r = record["request"]
    lines = [r["prompt"]]
    if r.get("negative_prompt"):
        lines.append(f"Negative prompt: {r['negative_prompt']}")
    fields = {
        "Steps": r.get("steps"), "Sampler": A1111_SAMPLERS.get(r.get("sampler"), r.get("sampler")),
        "Schedule type": A1111_SCHEDULES.get(r.get("schedule"), r.get("schedule")), "CFG scale": r.get("cfg_scale"),
        "Truncation psi": r.get("truncation"),
        "Seed": record.get("seed"), "Size": "{}x{}".format(*record["output_size"]),
        "Model hash": record["model"].get("hash"), "Model": record["model"]["id"],
        "Style": r.get("style"), "Version": f"designerbox {record['versions']['designerbox']}",
    }
    lines.append(", ".join(f"{k}: {v}" for k, v in fields.items() if v not in (None, "")))
    return "\n".join(lines)


def png_bytes(image: Image.Image, record: dict) -> bytes:
    return encode_png(image, infotext(record), record)


def encode_png(image: Image.Image, parameters: str, record: dict) -> bytes:
    """The one way an output PNG is made (generations, tools, filters): the two text chunks, then a signed
    C2PA manifest over the whole file (store/content_credentials.py; none with DESIGNERBOX_C2PA=off)."""
    from designerbox.store.content_credentials import sign_png

    info = PngImagePlugin.PngInfo()
    info.add_text("parameters", parameters)
    info.add_itxt(RECORD_KEY, json.dumps(record, sort_keys=True))
    buf = io.BytesIO()
    image.save(buf, format="PNG", pnginfo=info)
    return sign_png(buf.getvalue(), record)


def write_atomic(path: Path, data: bytes) -> None:
    """Write to a temporary file in the same folder, then rename: never a half-written file."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o644)  # mkstemp makes 0600; an image or record is for others to read too
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_record(path: Path) -> dict:
    """The JSON record of a DesignerBox PNG; MetadataError if there is none."""
    try:
        with Image.open(path) as im:
            im.load()
            text = im.text if hasattr(im, "text") else {}
    except (OSError, SyntaxError) as err:
        raise MetadataError(f"{path} is not a readable image: {err}") from None
    if RECORD_KEY not in text:
        hint = " (it has A1111 parameters, but no DesignerBox record)" if "parameters" in text else ""
        raise MetadataError(f"{path} carries no DesignerBox record{hint}")
    try:
        return json.loads(text[RECORD_KEY])
    except json.JSONDecodeError as err:
        raise MetadataError(f"{path} has a damaged DesignerBox record: {err}") from None


def read_parameters(path: Path) -> str | None:
    with Image.open(path) as im:
        im.load()
        return getattr(im, "text", {}).get("parameters")
