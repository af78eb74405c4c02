"""Replay and diff: draw a recorded image again from its PNG's record and compare it with the file.

The record (store/png_metadata) holds the request, the seed, the model's sha256 and the versions and
device that drew it. `verify` rebuilds the request (as `generate --from` does), draws the image again
with the model installed under the recorded id, and reports

  - whether the pixels are identical, else how far apart (largest difference in 0-255 levels, how many
    values differ);
  - what differs between the recorded recipe and this machine's: the model's or upscaler's weights,
    package versions, device and dtype. On the CPU our samplers are deterministic, so a replay on the
    same versions gives identical pixels; on a GPU some kernels are not, and small differences there
    are expected rather than a sign of another recipe.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from designerbox.jobs.generate import request_from_record
from designerbox.store.png_metadata import read_record


def recipe_changes(record: dict, replay: dict) -> list[str]:
    """What the replay's record says that the original's did not: weights, upscaler, versions, device."""
    changes = []
    if record["model"].get("sha256") != replay["model"].get("sha256"):
        changes.append(f"model {record['model']['id']}: weights sha256 {str(record['model'].get('sha256'))[:12]} "
                       f"recorded, {str(replay['model'].get('sha256'))[:12]} installed")
    old_up, new_up = record.get("upscaler") or {}, replay.get("upscaler") or {}
    if old_up.get("sha256") != new_up.get("sha256"):
        changes.append(f"upscaler: {old_up.get('id', 'none')} ({str(old_up.get('sha256'))[:12]}) recorded, "
                       f"{new_up.get('id', 'none')} ({str(new_up.get('sha256'))[:12]}) now")
    old_v, new_v = record.get("versions", {}), replay.get("versions", {})
    for name in sorted(set(old_v) | set(new_v)):
        if old_v.get(name) != new_v.get(name):
            changes.append(f"{name} {old_v.get(name, 'not recorded')} recorded, {new_v.get(name, 'absent')} now")
    for key in ("device", "dtype"):
        if record.get(key) != replay.get(key):
            changes.append(f"{key} {record.get(key)} recorded, {replay.get(key)} now")
    return changes


def verify(studio, path: Path, progress=None) -> dict:
    """Draw the image at `path` again from its record; a JSON-ready report (see the module docstring).
    Errors as `generate --from`: no record (MetadataError), an input image needed (RequestError), the
    model not installed (UnknownModelError, naming the installed ones). progress: Studio.generate's
    per-step callback (the server's worker: events, cancel)."""
    path = Path(path)
    record = read_record(path)
    request, index = request_from_record(record)
    replay = studio.generate(request, progress=progress, save=False)[index]
    with Image.open(path) as im:
        original = np.asarray(im.convert("RGB"), dtype=np.int16)
    again = np.asarray(replay.image.convert("RGB"), dtype=np.int16)
    changes = recipe_changes(record, replay.record)
    report = {"image": str(path), "model": record["model"]["id"], "seed": record["seed"],
              "size": [int(original.shape[1]), int(original.shape[0])], "recipe_changes": changes,
              "device": replay.record.get("device")}
    if original.shape != again.shape:
        return report | {"identical": False, "replay_size": [int(again.shape[1]), int(again.shape[0])],
                         "max_abs_diff": None, "values_differing": None}
    diff = np.abs(original - again)
    return report | {"identical": bool(not diff.any()), "max_abs_diff": int(diff.max()),
                     "values_differing": int((diff > 0).sum()), "values": int(diff.size)}


def describe(report: dict) -> str:
    """The report as a few lines for people."""
    head = f"{report['image']}: {report['model']}, seed {report['seed']}, {report['size'][0]}x{report['size'][1]}"
    if report["identical"]:
        lines = [head, "identical: the replay gives the same pixels"]
    elif report["max_abs_diff"] is None:
        lines = [head, f"differs: the replay is {report['replay_size'][0]}x{report['replay_size'][1]}, "
                       f"the file {report['size'][0]}x{report['size'][1]}"]
    else:
        lines = [head, f"differs: {report['values_differing']} of {report['values']} values, by at most "
                       f"{report['max_abs_diff']} of 255"]
    if report["recipe_changes"]:
        lines += ["since it was drawn:"] + [f"  {c}" for c in report["recipe_changes"]]
    elif not report["identical"]:
        lines.append("the recorded recipe matches this machine's: the file was edited after it was drawn, or "
                     + ("the GPU's kernels are not deterministic" if str(report.get("device", "")).startswith("cuda")
                        else "the drawing is not deterministic here"))
    return "\n".join(lines)
