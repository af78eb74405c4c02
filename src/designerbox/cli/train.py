"""`designerbox data | train | eval`: the training room's commands (datasets and shards, the diffusion
training recipe, the evaluator's scores). Wired into the parser by cli.build_parser."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from designerbox.cli.common import CLIError


def cmd_data(args) -> int:
    from designerbox.settings import Settings
    from designerbox.training import data

    if args.action == "shard":
        from designerbox.training.shard import write_shard

        if not (Path(args.data) / "meta.jsonl").is_file():
            raise CLIError(f"no dataset at {args.data}: build one with `designerbox data build --out {args.data}`, "
                           "or name another with --data")

        print(json.dumps(write_shard(Path(args.data), Path(args.out), resolution=args.resolution,
                                     max_images=args.max_images, tokens=args.tokens), indent=2))
        return 0

    sources = tuple(args.sources.split(",")) if args.sources else data.DEFAULT_SOURCES
    stats = data.build(Path(args.out), Settings.from_env().home / "cache", sources=sources, size=args.size,
                       limit=args.limit, iconify_per_set=args.iconify_per_set, iconify_total=args.iconify_total,
                       n_avatars=args.avatars, seed=args.seed, silhouette_total=args.silhouettes,
                       silhouette_per_label=args.silhouettes_per_label)
    print(data.summary(stats))
    print(f"all counts: {Path(args.out) / 'stats.json'}")
    return 0


def cmd_train(args) -> int:
    from designerbox.training.train_diffusion import TrainConfig, train

    cfg = TrainConfig(data=args.data, model_dir=args.model_dir, run_dir=args.run_dir, minutes=args.minutes,
                      max_steps=args.max_steps, batch_size=args.batch_size, lr=args.lr, device=args.device,
                      threads=args.threads, checkpoint_minutes=args.checkpoint_minutes, compile=args.compile)
    train(cfg)
    return 0


def cmd_grow(args) -> int:
    from designerbox.training.grow import grow

    grow(Path(args.src), Path(args.dst), levels=tuple(int(v) for v in args.levels.split(",")))
    return 0


def cmd_eval(args) -> int:
    from designerbox.studio import Studio
    from designerbox.training.evaluate import evaluate, format_table

    quiet = args.json
    sampling = {k: v for k, v in (("steps", args.steps), ("sampler", args.sampler), ("schedule", args.schedule),
                                  ("cfg_scale", args.cfg)) if v is not None}
    result = evaluate(Studio(), args.model, evaluator_id=args.evaluator, data=Path(args.data), n=args.n,
                      seed=args.seed, sampling=sampling, log=(lambda _: None) if quiet else (lambda m: print(m, file=sys.stderr)))
    print(json.dumps(result, indent=2) if args.json else format_table(result))
    return 0


def add_parsers(sub) -> None:
    d = sub.add_parser("data", help="training data")
    dsub = d.add_subparsers(dest="action", required=True)
    db = dsub.add_parser("build", help="fetch the labelled image sets and write the captioned dataset")
    db.add_argument("--out", default="data/full-v2")  # full-v1: the same sources without silhouettes
    db.add_argument("--sources", help="comma-separated subset of: fluent3d, noto, twemoji, fluent-flat, openclipart, "
                                      "fluent-color, iconify, avatars, silhouettes (default: all)")
    db.add_argument("--size", type=int, default=64)
    db.add_argument("--limit", type=int, help="at most this many images per source (quick trials)")
    db.add_argument("--iconify-per-set", type=int, default=1500, help="at most this many icons per iconify set")
    db.add_argument("--iconify-total", type=int, default=20000, help="at most this many iconify icons in all")
    db.add_argument("--silhouettes", type=int, default=8000, help="at most this many tinted monochrome icons")
    db.add_argument("--silhouettes-per-label", type=int, default=16,
                    help="at most this many tinted monochrome icons of one label")
    db.add_argument("--avatars", type=int, default=3000, help="how many avatars to draw")
    db.add_argument("--seed", type=int, default=0, help="seed of the avatar attributes")
    ds = dsub.add_parser("shard", help="a compact training shard (images + caption embeddings) for a GPU machine")
    ds.add_argument("--data", default="data/full-v1")
    ds.add_argument("--out", default="shard/full-v1-32")
    ds.add_argument("--resolution", type=int, default=32)
    ds.add_argument("--max-images", type=int, default=0, help="a seeded random subset of the training split "
                    "(0: all); 12000 makes a 64px shard of 43 MiB")
    ds.add_argument("--tokens", action="store_true", help="token ids and a cut-down text encoder (14 MB) instead of "
                    "pooled embeddings: for networks with cross-attention (designerbox grow)")
    d.set_defaults(func=cmd_data)

    t = sub.add_parser("train", help="train the built-in diffusion model (resumable)")
    t.add_argument("--data", default="data/full-v1")
    t.add_argument("--model-dir", required=True, help="model folder with unet/config.json and scheduler/")
    t.add_argument("--run-dir", required=True, help="checkpoints of this run; resumed when present")
    t.add_argument("--minutes", type=float, default=60)
    t.add_argument("--max-steps", type=int, default=0)
    t.add_argument("--batch-size", type=int, default=64)
    t.add_argument("--lr", type=float, default=5e-4)
    t.add_argument("--device", default="auto")
    t.add_argument("--threads", type=int, default=0)
    t.add_argument("--checkpoint-minutes", type=float, default=10)
    t.add_argument("--compile", default="", choices=["", "default", "reduce-overhead", "max-autotune"],
                   help="torch.compile the network for training (GPU: 'reduce-overhead' adds CUDA graphs); "
                        "falls back to eager if compiling fails")
    t.set_defaults(func=cmd_train)

    g = sub.add_parser("grow", help="a copy of a trained pixel UNet with cross-attention added, drawing the same "
                                    "images until trained further (training/grow.py)")
    g.add_argument("src", help="model folder to grow, e.g. src/designerbox/weights/dbx-base-v1")
    g.add_argument("dst", help="new model folder (its name becomes the model id)")
    g.add_argument("--levels", default="1,2", help="resolution levels that get cross-attention (0: full size)")
    g.set_defaults(func=cmd_grow)

    e = sub.add_parser("eval", help="score a text-to-image model: prompt adherence, FD-dbx, originality")
    e.add_argument("model", help="a text-to-image model id, e.g. dbx-base-v2")
    e.add_argument("--n", type=int, default=100, help="held-out captions, one image each (default 100)")
    e.add_argument("--seed", type=int, default=0, help="image i is drawn with seed S + i")
    e.add_argument("--evaluator", default="dbx-eval-v1", help="the evaluator model id")
    e.add_argument("--data", default="data/full-v1", help="the dataset folder (held-out and training images)")
    e.add_argument("--steps", type=int, help="sampling steps (default: the model's)")
    e.add_argument("--sampler", help="euler, euler_a, heun, dpmpp_2m, dpmpp_2m_sde, ddim (default: the model's)")
    e.add_argument("--schedule", help="karras, exponential, simple (default: the model's)")
    e.add_argument("--cfg", type=float, help="classifier-free guidance scale (default: the model's)")
    e.add_argument("--json", action="store_true")
    e.set_defaults(func=cmd_eval)
