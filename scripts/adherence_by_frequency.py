"""Prompt adherence against how often a prompt's concept appears in training: reads `designerbox eval
--json` outputs and the dataset the model was trained on, and prints top-1/top-5 of the generated and
the real held-out images per bucket of how often the label's rarest word appears in training labels.
(Held-out captions are of concepts held out whole, so no training image has the same label: what the
model can draw of them comes from the words it has seen elsewhere.)

    .venv/bin/python scripts/adherence_by_frequency.py EVAL.json [EVAL.json ...] --train data/full-v2

Several eval files (e.g. seeds 0 and 1000) are pooled. The question it answers: is a model failing
on rare concepts (data or compute) or on common ones too (conditioning, sampling)?
"""

from __future__ import annotations

import argparse
import collections
import json
import re
from pathlib import Path

BUCKETS = ((0, 1, "0"), (1, 10, "1-9"), (10, 100, "10-99"), (100, 1000, "100-999"), (1000, 10**9, "1000+"))


def words(label: str) -> set[str]:
    return set(re.findall(r"[a-z]+", label.casefold()))


def rarest_word_counts(train: Path) -> dict[str, int]:
    """Each variant-0 caption's label -> the fewest training images whose label holds one of its words."""
    counts, label_of = collections.Counter(), {}
    for line in (train / "meta.jsonl").read_text().splitlines():
        m = json.loads(line)
        if m["split"] == "train":
            counts.update(words(m["label"]))
        label_of[m["captions"][0]] = m["label"]
    return {c: min((counts[w] for w in words(label)), default=0) for c, label in label_of.items()}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("evals", nargs="+", type=Path, help="`designerbox eval --json` outputs (with per_caption)")
    p.add_argument("--train", type=Path, default=Path("data/full-v2"), help="the training dataset folder")
    args = p.parse_args(argv)
    rarest = rarest_word_counts(args.train)
    rows = []
    for f in args.evals:
        per = json.loads(f.read_text())["prompt_adherence"].get("per_caption")
        if per is None:
            raise SystemExit(f"{f} has no per_caption ranks: evaluate again with this version of `designerbox eval`")
        rows += [dict(r, train_images=rarest.get(r["caption"], 0)) for r in per]
    print(f"{len(rows)} captions from {len(args.evals)} eval file(s); labels counted in {args.train}")
    print(f"{'rarest word in':18}{'captions':>9}{'gen top-1':>11}{'gen top-5':>11}{'real top-1':>12}{'real top-5':>12}")
    for lo, hi, name in BUCKETS:
        b = [r for r in rows if lo <= r["train_images"] < hi]
        if b:
            share = lambda key, k: sum(r[key] < k for r in b) / len(b)  # noqa: E731
            print(f"{name + ' labels':18}{len(b):>9}{share('rank', 1):>11.3f}{share('rank', 5):>11.3f}"
                  f"{share('real_rank', 1):>12.3f}{share('real_rank', 5):>12.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
