"""Originality at scale: do 1,000 generated images stay farther from every training image than
training images are from each other?

    .venv/bin/python bench/originality.py [--model dbx-base-v1] [--data data/full-v1]
                                          [--evaluator dbx-eval-v1] [--n 1000] [--json]

The prompts are the variant-0 captions ("label, style") of n distinct TRAINING images (memorising
is likeliest for captions the model was trained on), drawn in a fixed seed-0 order, image i with
seed i, at the model's native size and defaults, 25 per batch. For each generated image: its
nearest training image by pixel RMSE (at 32x32, in [0, 1]) and by cosine of evaluator features.
The peer, measured in the same run: the closest pair of DISTINCT training images, searched from a
fixed sample of 1,000 training images against all of them (as `designerbox eval` does). The
printed ratio is (closest generated-to-training RMSE) / (closest training pair RMSE): above 1 means
no generated image is nearer a training image than two training images are to each other.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default=None, help="model id (default: the default model)")
    p.add_argument("--data", default="data/full-v1")
    p.add_argument("--evaluator", default="dbx-eval-v1")
    p.add_argument("--n", type=int, default=1000)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)

    from designerbox.jobs.schema import GenerationRequest
    from designerbox.studio import Studio
    from designerbox.training import data as dataset
    from designerbox.training.evaluate import encode, load_evaluator, originality, pixels

    t0 = time.time()
    studio = Studio()
    manifest = studio.registry.get(args.model)
    images, meta = dataset.load(Path(args.data))
    train = [i for i, m in enumerate(meta) if m["split"] == "train"]
    seen, prompts = set(), []
    for j in np.random.default_rng(0).permutation(len(train)):
        caption = meta[train[j]]["captions"][0]
        if caption not in seen:
            seen.add(caption)
            prompts.append(caption)
        if len(prompts) == args.n:
            break

    width, height = manifest.native_size
    generated = []
    for i, prompt in enumerate(prompts):  # one request per prompt: seed i, the model's defaults
        out = studio.generate(GenerationRequest(prompt=prompt, model=manifest.id, seed=i, width=width,
                                                height=height), save=False)[0]
        generated.append(np.asarray(out.image.convert("RGB")))
    generated = np.stack(generated)
    t_gen = time.time() - t0

    _, net = load_evaluator(studio, args.evaluator)
    train_f, train_px = encode(net, images[train], studio.device), pixels(images[train])
    train_captions = [meta[i]["captions"][0] for i in train]
    gen = originality(encode(net, generated, studio.device), pixels(generated), train_f, train_px, prompts,
                      train_captions)
    sample = torch.from_numpy(np.random.default_rng(0).permutation(len(train))[:1000])
    ref = originality(train_f[sample], train_px[sample], train_f, train_px,
                      [train_captions[int(i)] for i in sample], train_captions, exclude=sample)
    for pair in (ref["closest_by_cosine"], ref["closest_by_pixels"]):
        pair["query_index"] = int(sample[pair["query_index"]])  # both indices count training images
    report = {"model": manifest.id, "hash": manifest.short_hash, "n": len(prompts), "data": args.data,
              "evaluator": args.evaluator, "generated": gen, "train_pairs": {"sample": 1000, **ref},
              "ratio_min_rmse_generated_vs_train_pairs": gen["min_pixel_rmse"] / max(ref["min_pixel_rmse"], 1e-9),
              "seconds": {"generate": round(t_gen, 1), "total": round(time.time() - t0, 1)}}
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        g, r = gen, ref
        print(f"{manifest.id}: {len(prompts)} images from training captions; evaluator {args.evaluator}")
        print(f"  closest generated-to-training pixel RMSE {g['min_pixel_rmse']:.4f} "
              f"('{g['closest_by_pixels']['query']}' vs '{g['closest_by_pixels']['train']}')")
        print(f"  closest distinct training pair RMSE     {r['min_pixel_rmse']:.4f} "
              f"('{r['closest_by_pixels']['query']}' vs '{r['closest_by_pixels']['train']}')")
        print(f"  ratio {report['ratio_min_rmse_generated_vs_train_pairs']:.2f} "
              f"({'no generated image is closer' if report['ratio_min_rmse_generated_vs_train_pairs'] > 1 else 'SOME generated image is closer'})")
        print(f"  highest feature cosine: generated {g['max_cosine']:.4f}, training pairs {r['max_cosine']:.4f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
