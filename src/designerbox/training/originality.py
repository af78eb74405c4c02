"""Is this image new, or a copy? Each image against a reference set: a dataset folder (`designerbox data
build`) or a plain folder of images (a user's photos, a LoRA training set).

For each image, its k nearest reference images by pixel RMSE at 32x32 and by cosine of evaluator
features (evaluate.py's measures). The yardstick is measured on the same reference set: the closest
pair of DISTINCT reference images (searched from a fixed random sample of `reference_sample` of them
against all, as `designerbox eval` does). With ratio = (the image's nearest RMSE) / (that pair's RMSE):

    copy   ratio <= 1   a reference image is as near as, or nearer than, any two reference images are
    close  ratio <= 2
    new    otherwise

Images are read as the dataset builder reads them: fitted into a square on white (data.to_square,
data.on_white), at the dataset's side or FOLDER_SIDE; identical reference images count once.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from designerbox.training import data as dataset
from designerbox.training.evaluate import DEFAULT_EVALUATOR, encode, load_evaluator, nearest, originality, pixels

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")
FOLDER_SIDE = 64  # the side images of a plain folder (and the images checked against it) are read at
RULE = ("ratio = nearest reference pixel RMSE (32x32) / RMSE of the closest pair of distinct reference images; "
        "copy: ratio <= 1, close: ratio <= 2, new: above 2")


def read_image(path: Path, side: int) -> np.ndarray:
    """An image file -> (side, side, 3) uint8, fitted into a square on white."""
    with Image.open(path) as im:
        return dataset.on_white(dataset.to_square(im, side))


def load_reference(ref: Path) -> tuple[np.ndarray, list[str], int]:
    """(images (N, S, S, 3) uint8, a name per image, unreadable files skipped). A dataset folder's names
    are its captions; a plain folder's are the files' paths inside it."""
    ref = Path(ref)
    if not ref.exists():
        raise ValueError(f"no reference set at {ref}: give a dataset folder (`designerbox data build`) or a "
                         f"folder of images ({', '.join(IMAGE_SUFFIXES)})")
    if not ref.is_dir():
        raise ValueError(f"{ref} is a file: give a dataset folder or a folder of images as the reference set")
    if (ref / "meta.jsonl").is_file():
        images, meta = dataset.load(ref)
        return images, [f"#{i} {m['captions'][0]}" for i, m in enumerate(meta)], 0
    files = sorted(f for f in ref.rglob("*") if f.suffix.lower() in IMAGE_SUFFIXES and f.is_file())
    images, names, skipped = [], [], 0
    for f in files:
        try:
            images.append(read_image(f, FOLDER_SIDE))
        except (OSError, ValueError, Image.DecompressionBombError):
            skipped += 1
            continue
        names.append(str(f.relative_to(ref)))
    if not images:
        raise ValueError(f"no readable images in {ref} (searched recursively for {', '.join(IMAGE_SUFFIXES)}; "
                         f"{skipped} unreadable)")
    return np.stack(images), names, skipped


def verdict(ratio: float) -> str:
    return "copy" if ratio <= 1 else "close" if ratio <= 2 else "new"


def check(studio, images: list[Path], against: Path, *, top: int = 3, evaluator_id: str = DEFAULT_EVALUATOR,
          reference_sample: int = 1000) -> dict:
    """Each image against the reference set `against`; a JSON-ready report (see the module docstring)."""
    # 1. the reference set, identical images counted once; at least two to measure a pair
    if top < 1:
        raise ValueError(f"top must be at least 1, not {top}")
    images = [Path(p) for p in images]
    missing = [str(p) for p in images if not p.is_file()]
    if missing:
        raise ValueError(f"no such image: {', '.join(missing)}")
    ref, names, skipped = load_reference(Path(against))
    first = {}
    for i, im in enumerate(ref):
        first.setdefault(hashlib.sha256(im.tobytes()).digest(), i)
    keep = sorted(first.values())
    duplicates, ref, names = len(ref) - len(keep), ref[keep], [names[i] for i in keep]
    if len(ref) < 2:
        raise ValueError(f"{against} holds {len(ref)} distinct readable image: the check needs at least 2 "
                         "reference images (it measures the closest pair of distinct ones)")
    queries = np.stack([read_image(p, ref.shape[1]) for p in images])

    # 2. evaluator features and 32x32 pixels of both
    manifest, net = load_evaluator(studio, evaluator_id)
    ref_f, ref_px = encode(net, ref, studio.device), pixels(ref)
    q_f, q_px = encode(net, queries, studio.device), pixels(queries)

    # 3. the yardstick: the closest pair of distinct reference images (a fixed sample against all)
    sample = torch.from_numpy(np.random.default_rng(0).permutation(len(ref))[:min(reference_sample, len(ref))])
    pair = originality(ref_f[sample], ref_px[sample], ref_f, ref_px, [names[int(i)] for i in sample], names,
                       exclude=sample)
    peer = pair["min_pixel_rmse"]

    # 4. each image's k nearest by pixels and by features, its ratio and verdict
    k = min(top, len(ref))
    rmse, px_j = nearest(q_px, ref_px, "rmse", k=k)
    cos, cos_j = nearest(q_f, ref_f, "cosine", k=k)
    rmse, px_j, cos, cos_j = (t.reshape(len(queries), k) for t in (rmse, px_j, cos, cos_j))
    results = []
    for n, path in enumerate(images):
        ratio = float(rmse[n, 0]) / max(peer, 1e-9)
        results.append({
            "image": str(path), "verdict": verdict(ratio), "ratio": round(ratio, 3),
            "nearest_pixel_rmse": round(float(rmse[n, 0]), 4),
            "by_pixels": [{"reference": names[int(j)], "rmse": round(float(d), 4)} for d, j in zip(rmse[n], px_j[n])],
            "by_features": [{"reference": names[int(j)], "cosine": round(float(c), 4)} for c, j in zip(cos[n], cos_j[n])],
        })
    return {
        "against": str(against), "references": len(ref), "unreadable_skipped": skipped,
        "duplicates_merged": duplicates, "evaluator": {"id": manifest.id, "hash": manifest.short_hash},
        "closest_reference_pair": {"pixel_rmse": peer, "a": pair["closest_by_pixels"]["query"],
                                   "b": pair["closest_by_pixels"]["train"], "max_cosine": pair["max_cosine"],
                                   "sample": len(sample)},
        "rule": RULE, "images": results, "copies": sum(r["verdict"] == "copy" for r in results),
    }


def describe(report: dict) -> str:
    """The report as a few plain lines."""
    p = report["closest_reference_pair"]
    lines = [f"against {report['against']}: {report['references']} reference images"
             + (f" ({report['unreadable_skipped']} unreadable files skipped)" if report["unreadable_skipped"] else "")
             + (f" ({report['duplicates_merged']} identical copies counted once)" if report["duplicates_merged"] else ""),
             f"closest pair of distinct reference images: RMSE {p['pixel_rmse']:.4f} ({p['a']!r} ~ {p['b']!r}; "
             f"{p['sample']} sampled against all)",
             f"rule: {report['rule']}"]
    for r in report["images"]:
        lines += ["", f"{r['image']}: {r['verdict'].upper()} (ratio {r['ratio']:.2f})"]
        lines += [f"  pixels   RMSE {m['rmse']:.4f}  {m['reference']}" for m in r["by_pixels"]]
        lines += [f"  features cos  {m['cosine']:.4f}  {m['reference']}" for m in r["by_features"]]
    return "\n".join(lines)
