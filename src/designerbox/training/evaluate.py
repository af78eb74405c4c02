"""Evaluate a text-to-image model with the DesignerBox evaluator (models/evaluator.py).

`evaluate()` draws one image per held-out caption and measures, in the evaluator's 384-d space:

  (a) prompt adherence: each image retrieves its own caption among the n captions (top-1, top-5);
      the held-out REAL images of those captions give the ceiling;
  (b) FD-dbx: the Frechet distance (Dowson & Landau 1982; the formula FID uses, Heusel et al. 2017,
      but in the evaluator's feature space, so never call it FID) between the generated images and
      the n held-out real images; the floor is the distance between those n real images and n
      OTHER held-out real images (disjoint, next in the same fixed order);
  (c) originality: each image's nearest TRAINING image, by cosine of evaluator features and by pixel
      RMSE at 32x32; the reference is the closest pair of distinct training images, searched from a
      fixed random sample of `reference_sample` training images against all of them (the full
      N^2 pixel search is too slow on a CPU).

Held-out captions are variant 0 ("label, style") of held-out images (concepts never trained on),
de-duplicated and taken in a fixed order (a seed-0 permutation), so every model meets the same
captions; image i is drawn with seed `seed + i` at the model's native size and its defaults.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

DEFAULT_EVALUATOR = "dbx-eval-v1"
PIXEL_SIZE = 32  # the side at which pixel distances are measured


# ---------------------------------------------------------------------------------------------
# measures


@torch.no_grad()
def encode(net: torch.nn.Module, images: np.ndarray, device: str | torch.device = "cpu",
           batch_size: int = 256) -> torch.Tensor:
    """uint8 images (N, H, W, 3) -> evaluator features (N, D) float32 unit vectors on the CPU."""
    out = []
    for i in range(0, len(images), batch_size):
        x = torch.from_numpy(np.ascontiguousarray(images[i:i + batch_size])).permute(0, 3, 1, 2)  # (b, 3, H, W)
        out.append(net(x.to(device).float() / 255).float().cpu())
    return torch.cat(out)


def caption_ranks(image_features: torch.Tensor, text_features: torch.Tensor) -> torch.Tensor:
    """For each image i, how many of all captions score above its own caption i (0: its own is first)."""
    sims = image_features.double() @ text_features.double().T                   # (N, N) cosines
    return (sims > sims.diagonal()[:, None]).sum(1)


def retrieval(image_features: torch.Tensor, text_features: torch.Tensor, ks: tuple[int, ...] = (1, 5)) -> dict:
    """Fraction of images i whose own caption i is among the k most similar of all captions."""
    rank = caption_ranks(image_features, text_features)
    return {f"top{k}": round(float((rank < k).double().mean()), 4) for k in ks}


def adherence_by_source(gen_rank: torch.Tensor, real_rank: torch.Tensor, sources: list[str]) -> dict:
    """Top-1 and top-5 of generated and real held-out images per data source: where a model follows
    prompts and where it does not (the sources' shares of the captions are in "captions")."""
    out = {}
    for src in sorted(set(sources)):
        idx = torch.tensor([i for i, s in enumerate(sources) if s == src])
        out[src] = {"captions": len(idx)} | {
            f"{who}_top{k}": round(float((rank[idx] < k).double().mean()), 4)
            for who, rank in (("generated", gen_rank), ("real", real_rank)) for k in (1, 5)}
    return out


def sqrtm_psd(m: torch.Tensor) -> torch.Tensor:
    """Square root of a symmetric positive semi-definite matrix by eigen-decomposition (float64)."""
    w, v = torch.linalg.eigh(m.double())
    return (v * w.clamp(min=0).sqrt()) @ v.T


def frechet_distance(mu1: torch.Tensor, cov1: torch.Tensor, mu2: torch.Tensor, cov2: torch.Tensor) -> float:
    """d^2 = |mu1 - mu2|^2 + tr(C1 + C2 - 2 (C1^1/2 C2 C1^1/2)^1/2), between N(mu1, C1) and N(mu2, C2).

    The symmetric form of tr((C1 C2)^1/2) keeps every matrix symmetric PSD, so eigh is stable where a
    general sqrtm of C1 C2 can turn complex on rank-deficient covariances (n <= D here).
    """
    mu1, mu2, cov1, cov2 = mu1.double(), mu2.double(), cov1.double(), cov2.double()
    s1 = sqrtm_psd(cov1)
    cross = torch.linalg.eigvalsh(s1 @ cov2 @ s1).clamp(min=0).sqrt().sum()
    return float((mu1 - mu2).pow(2).sum() + cov1.trace() + cov2.trace() - 2 * cross)


def feature_stats(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean (D,) and unbiased covariance (D, D) of features (N, D), in float64."""
    x = x.double()
    return x.mean(0), torch.cov(x.T)


def fd(a: torch.Tensor, b: torch.Tensor) -> float:
    return frechet_distance(*feature_stats(a), *feature_stats(b))


def pixels(images: np.ndarray, size: int = PIXEL_SIZE) -> torch.Tensor:
    """uint8 images (N, H, W, 3) -> (N, 3*size*size) float32 in [0, 1], resized as the evaluator resizes."""
    x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float() / 255  # (N, 3, H, W)
    if x.shape[-2:] != (size, size):
        x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return x.flatten(1)


def nearest(queries: torch.Tensor, keys: torch.Tensor, metric: str, exclude: torch.Tensor | None = None,
            chunk: int = 256, k: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """For each query its nearest key: ("cosine", highest dot product of unit vectors) or ("rmse",
    lowest root-mean-square pixel difference); `exclude[i]` is a key index query i may not match.
    k > 1: the k nearest keys of each query, (N, k) nearest first."""
    best, where = [], []
    for i in range(0, len(queries), chunk):
        q = queries[i:i + chunk]
        if metric == "cosine":
            score = q @ keys.T                                                  # (b, N) higher is nearer
        else:
            score = -torch.cdist(q, keys).clamp(min=0) / keys.shape[1] ** 0.5   # (b, N) minus RMSE
        if exclude is not None:
            score[torch.arange(len(q)), exclude[i:i + chunk]] = -float("inf")
        s, j = score.topk(k, 1) if k > 1 else score.max(1)
        best.append(s if metric == "cosine" else -s)
        where.append(j)
    return torch.cat(best), torch.cat(where)


def originality(feats: torch.Tensor, px: torch.Tensor, train_feats: torch.Tensor, train_px: torch.Tensor,
                captions: list[str], train_captions: list[str], exclude: torch.Tensor | None = None) -> dict:
    """Nearest training image of each query (features and pixels); the closest pair of each kind."""
    cos, cos_j = nearest(feats, train_feats, "cosine", exclude)
    rmse, px_j = nearest(px, train_px, "rmse", exclude)
    i, k = int(cos.argmax()), int(rmse.argmin())
    return {
        "max_cosine": round(float(cos[i]), 4),
        "mean_nearest_cosine": round(float(cos.mean()), 4),
        "min_pixel_rmse": round(float(rmse[k]), 4),
        "mean_nearest_pixel_rmse": round(float(rmse.mean()), 4),
        "closest_by_cosine": {"query_index": i, "query": captions[i], "train_index": int(cos_j[i]),
                              "train": train_captions[int(cos_j[i])]},
        "closest_by_pixels": {"query_index": k, "query": captions[k], "train_index": int(px_j[k]),
                              "train": train_captions[int(px_j[k])]},
    }


# ---------------------------------------------------------------------------------------------
# the benchmark


def heldout_items(meta: list[dict], n: int) -> tuple[list[int], list[int]]:
    """Indices of n held-out images with distinct variant-0 captions in a fixed order, and the next n
    (the real-vs-real floor set)."""
    heldout = [i for i, m in enumerate(meta) if m["split"] == "heldout"]
    seen, order = set(), []
    for j in np.random.default_rng(0).permutation(len(heldout)):
        caption = meta[heldout[j]]["captions"][0]
        if caption not in seen:
            seen.add(caption)
            order.append(heldout[j])
    if n < 2 or 2 * n > len(order):
        raise ValueError(f"n={n}: the benchmark needs 2*n held-out images with distinct captions (n for the "
                         f"captions, n more for the real-vs-real floor); this dataset has {len(order)}, so n "
                         f"must be between 2 and {len(order) // 2}")
    return order[:n], order[n:2 * n]


def generate_images(studio, model_id: str, captions: list[str], seed: int,
                    log: Callable[[str], None] = print, sampling: dict | None = None) -> tuple[np.ndarray, dict]:
    """One image per caption at the model's native size and defaults (or `sampling`: steps, sampler,
    schedule, cfg_scale), seed + i; uint8 (n, H, W, 3)."""
    from designerbox.jobs.schema import GenerationRequest

    manifest = studio.registry.get(model_id)
    if manifest.kind not in ("diffusion", "gan"):
        text_to_image = [m.id for k in ("diffusion", "gan") for m in studio.registry.list(kind=k)]
        raise ValueError(f"model {model_id!r} is a {manifest.kind} model; eval needs a text-to-image model "
                         f"(diffusion or gan): {', '.join(text_to_image) or 'none installed'}")
    width, height = manifest.native_size
    images, record = [], {}
    for i, caption in enumerate(captions):
        request = GenerationRequest(prompt=caption, model=model_id, seed=seed + i, width=width, height=height,
                                    **(sampling or {}))
        out = studio.generate(request, save=False)[0]
        images.append(np.asarray(out.image.convert("RGB")))
        record = out.record
        if (i + 1) % 20 == 0:
            log(f"drew {i + 1}/{len(captions)}")
    r = record["request"]
    sampling = {"sampler": r["sampler"], "schedule": r["schedule"], "steps": r["steps"], "cfg_scale": r["cfg_scale"],
                "size": [width, height]}
    return np.stack(images), {"id": manifest.id, "hash": manifest.short_hash, **sampling}


def load_evaluator(studio, evaluator_id: str):
    manifest = studio.registry.get(evaluator_id)
    if manifest.kind != "evaluator":
        evaluators = [m.id for m in studio.registry.list(kind="evaluator")]
        raise ValueError(f"model {evaluator_id!r} is a {manifest.kind} model, not an evaluator; installed "
                         f"evaluators: {', '.join(evaluators) or 'none'}")
    return studio.model(evaluator_id)


def evaluate(studio, model_id: str, *, evaluator_id: str = DEFAULT_EVALUATOR, data: Path = Path("data/full-v1"),
             n: int = 100, seed: int = 0, reference_sample: int = 1000, sampling: dict | None = None,
             log: Callable[[str], None] = print) -> dict:
    """The whole benchmark for one text-to-image model; returns a JSON-ready dict."""
    from designerbox.registry.text_encoders import shared_minilm
    from designerbox.training import data as dataset

    t0 = time.time()
    # 1. the dataset, the n held-out captions and the floor set; the evaluator
    if not (Path(data) / "meta.jsonl").is_file():
        raise ValueError(f"no dataset at {data}: build one with `designerbox data build --out {data}`, "
                         "or name another with --data")
    images, meta = dataset.load(Path(data))
    chosen, floor = heldout_items(meta, n)
    captions = [meta[i]["captions"][0] for i in chosen]
    train = [i for i, m in enumerate(meta) if m["split"] == "train"]
    eval_manifest, net = load_evaluator(studio, evaluator_id)
    device = studio.device

    # 2. draw one image per caption with the model under test
    generated, model_info = generate_images(studio, model_id, captions, seed, log, sampling)
    t_generate = time.time() - t0

    # 3. features: captions (MiniLM), generated, held-out real, floor real, all training images
    _, text = shared_minilm("cpu")(captions)                                    # (n, 384)
    gen_f, real_f, floor_f = encode(net, generated, device), encode(net, images[chosen], device), \
        encode(net, images[floor], device)
    train_f = encode(net, images[train], device)                                # (N_train, 384)
    train_px = pixels(images[train])                                            # (N_train, 3*32*32)
    train_captions = [meta[i]["captions"][0] for i in train]

    # 4. prompt adherence, FD-dbx, originality
    gen_rank, real_rank = caption_ranks(gen_f, text), caption_ranks(real_f, text)
    adherence = {"captions": n, "generated": retrieval(gen_f, text), "real_heldout": retrieval(real_f, text),
                 "by_source": adherence_by_source(gen_rank, real_rank, [meta[i]["source"] for i in chosen]),
                 "per_caption": [{"caption": c, "source": meta[i]["source"], "rank": int(g), "real_rank": int(r)}
                                 for c, i, g, r in zip(captions, chosen, gen_rank, real_rank)]}
    fd_dbx = {"generated_vs_heldout": round(fd(gen_f, real_f), 4), "heldout_vs_heldout_floor": round(fd(floor_f, real_f), 4)}
    sample = torch.from_numpy(np.random.default_rng(0).permutation(len(train))[:min(reference_sample, len(train))])
    reference = originality(train_f[sample], train_px[sample], train_f, train_px,
                            [train_captions[int(i)] for i in sample], train_captions, exclude=sample)
    for pair in (reference["closest_by_cosine"], reference["closest_by_pixels"]):
        pair["query_index"] = int(sample[pair["query_index"]])  # both indices count training images
    orig = {
        "generated": originality(gen_f, pixels(generated), train_f, train_px, captions, train_captions),
        "real_heldout": originality(real_f, pixels(images[chosen]), train_f, train_px, captions, train_captions),
        "train_pairs": {"sample": len(sample), **reference},
    }
    return {
        "model": model_info, "evaluator": {"id": eval_manifest.id, "hash": eval_manifest.short_hash},
        "data": str(data), "n": n, "seed": seed,
        "prompt_adherence": adherence, "fd_dbx": fd_dbx, "originality": orig,
        "seconds": {"generate": round(t_generate, 1), "total": round(time.time() - t0, 1)},
    }


def format_table(r: dict) -> str:
    """The result as a short plain-text table."""
    m, pa, fdd, o = r["model"], r["prompt_adherence"], r["fd_dbx"], r["originality"]
    rows = [
        f"model {m['id']} ({m['hash'] or 'no hash'}), {m['sampler']}/{m['schedule']} {m['steps']} steps cfg "
        f"{m['cfg_scale']} at {m['size'][0]}x{m['size'][1]}; evaluator {r['evaluator']['id']}; "
        f"{r['n']} held-out captions, seeds {r['seed']}..{r['seed'] + r['n'] - 1}",
        "",
        f"{'':34}{'generated':>12}{'real (ceiling / floor / reference)':>38}",
        f"{'caption retrieval top-1':34}{pa['generated']['top1']:>12.3f}{pa['real_heldout']['top1']:>38.3f}",
        f"{'caption retrieval top-5':34}{pa['generated']['top5']:>12.3f}{pa['real_heldout']['top5']:>38.3f}",
        f"{'FD-dbx to held-out real':34}{fdd['generated_vs_heldout']:>12.4f}{fdd['heldout_vs_heldout_floor']:>38.4f}",
        f"{'nearest train: max cosine':34}{o['generated']['max_cosine']:>12.4f}{o['train_pairs']['max_cosine']:>38.4f}",
        f"{'nearest train: mean cosine':34}{o['generated']['mean_nearest_cosine']:>12.4f}"
        f"{o['real_heldout']['mean_nearest_cosine']:>38.4f}",
        f"{'nearest train: min pixel RMSE':34}{o['generated']['min_pixel_rmse']:>12.4f}"
        f"{o['train_pairs']['min_pixel_rmse']:>38.4f}",
        "",
        "real: retrieval and mean cosine of the held-out real images; FD floor: held-out vs other held-out "
        f"real images; max cosine / min RMSE: closest distinct training pair ({o['train_pairs']['sample']} sampled)",
        f"closest generated/train pair by cosine: {o['generated']['closest_by_cosine']['query']!r} ~ "
        f"{o['generated']['closest_by_cosine']['train']!r}",
        f"closest generated/train pair by pixels: {o['generated']['closest_by_pixels']['query']!r} ~ "
        f"{o['generated']['closest_by_pixels']['train']!r}",
        f"{r['seconds']['total']:.0f} s ({r['seconds']['generate']:.0f} s drawing)",
    ]
    if pa.get("by_source"):
        rows += ["", f"{'top-1 by source (captions)':34}{'generated':>12}{'real':>38}"]
        for src, v in pa["by_source"].items():
            label = f"  {src} ({v['captions']})"
            rows.append(f"{label:34}{v['generated_top1']:>12.3f}{v['real_top1']:>38.3f}")
    return "\n".join(rows)
