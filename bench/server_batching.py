"""Batching of concurrent jobs in the server's worker: N queued generations drawn one by one against
the same N drawn as one batched network call (jobs/batch.py), on the built-in model.

    python bench/server_batching.py [--jobs 8] [--steps 20] [--size 32] [--repeats 2] [--json out.json]

1. a fresh DESIGNERBOX_HOME and SQLite queue; one Worker (the server's worker loop, in this process, no
   HTTP) on the CPU; the model is loaded and one job run first (warm-up, not timed)
2. N jobs with different prompts and seeds and the model's own sampler, schedule and cfg are queued,
   then the worker runs until the queue is empty: once with DESIGNERBOX_BATCH_IMAGES=1 (one by one),
   once with 16 (batched); each timed from the first claim to the last job stored, best of --repeats
3. every job's images are compared between the two runs (max pixel difference)

Reports seconds for each, jobs/s, the speed-up (one by one / batched) and the network calls made.
Tests never assert timings; this script is where they are measured.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import tempfile
import time
from pathlib import Path

PROMPTS = ["a red apple", "a blue car", "a smiling sun", "a green cactus", "a yellow star", "a purple umbrella",
           "a brown dog", "an orange fish", "a pink heart", "a grey cloud", "a black cat", "a white rocket"]


def run(studio, home: Path, requests: list[dict], tag: str) -> tuple[float, list, list[list[str]]]:
    import numpy as np
    from PIL import Image

    from designerbox.jobs.schema import GenerationRequest
    from designerbox.server.events import EventLog
    from designerbox.server.queue import JobQueue
    from designerbox.server.worker import Worker

    queue = JobQueue(home / f"queue-{tag}.sqlite")
    worker = Worker(studio, queue, EventLog())
    ids = [queue.submit(GenerationRequest(**r)).id for r in requests]
    calls = []
    t0 = time.perf_counter()
    while worker.run_next():
        calls.append(worker.last_batch or [["one job"]])
        worker.last_batch = []
    seconds = time.perf_counter() - t0
    pixels = []
    for job_id in ids:
        row = queue.get(job_id)
        if row.state != "succeeded":
            raise SystemExit(f"job {job_id} {row.state}: {row.error}")
        pixels.append([np.asarray(Image.open(studio.gallery.root / i["path"])).astype(int) for i in row.images])
    return seconds, pixels, calls


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--jobs", type=int, default=8)
    ap.add_argument("--steps", type=int, default=None, help="default: the model's own (20)")
    ap.add_argument("--size", type=int, default=32, help="output side; the model draws 32x32 (256: upscaled x4 + x2)")
    ap.add_argument("--model", default="dbx-base-v1")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own)")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()

    import numpy as np
    import torch

    from designerbox.jobs.schema import GenerationRequest
    from designerbox.settings import Settings
    from designerbox.studio import Studio

    if args.threads:
        torch.set_num_threads(args.threads)
    home = Path(tempfile.mkdtemp(prefix="dbx-batching-"))
    base = Settings(home=home, device="cpu", cache_mb=2048)
    extra = {"steps": args.steps} if args.steps else {}
    requests = [dict(prompt=PROMPTS[i % len(PROMPTS)], seed=1000 + i, model=args.model, width=args.size,
                     height=args.size, **extra) for i in range(args.jobs)]
    alone = Studio(dataclasses.replace(base, batch_images=1))
    batched = Studio(dataclasses.replace(base, batch_images=16))
    batched.cache = alone.cache  # one loaded model for both
    alone.generate(GenerationRequest(**requests[0]), save=False)  # warm-up: load the model, first call
    best = {"one_by_one": None, "batched": None}
    for rep in range(args.repeats):
        for name, studio in (("one_by_one", alone), ("batched", batched)):
            seconds, pixels, calls = run(studio, home, requests, f"{name}-{rep}")
            if best[name] is None or seconds < best[name][0]:
                best[name] = (seconds, pixels, calls)
    (t1, p1, _), (tb, pb, calls) = best["one_by_one"], best["batched"]
    diff = max(int(np.abs(a - b).max()) for x, y in zip(p1, pb) for a, b in zip(x, y))
    result = {"jobs": args.jobs, "model": args.model, "size": args.size, "steps": args.steps or "model default",
              "torch_threads": torch.get_num_threads(), "cpu": os.cpu_count(),
              "one_by_one_s": round(t1, 3), "batched_s": round(tb, 3),
              "one_by_one_jobs_per_s": round(args.jobs / t1, 3), "batched_jobs_per_s": round(args.jobs / tb, 3),
              "speedup": round(t1 / tb, 2), "network_calls_batched": [len(g) for c in calls for g in c],
              "max_pixel_difference": diff}
    print(f"{args.jobs} jobs, {args.model}, {args.size}x{args.size}, steps {result['steps']}, "
          f"{result['torch_threads']} torch threads")
    print(f"  one by one: {t1:7.2f} s  ({result['one_by_one_jobs_per_s']} jobs/s)")
    print(f"  batched:    {tb:7.2f} s  ({result['batched_jobs_per_s']} jobs/s; jobs per network call: "
          f"{result['network_calls_batched']})")
    print(f"  speed-up (one by one / batched): {result['speedup']}x; max pixel difference {diff}/255")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
