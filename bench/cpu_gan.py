"""CPU benchmark: the GAN's time per 64x64 image and per batch of 64, against the diffusion model.

    .venv/bin/python bench/cpu_gan.py [--gan dbx-gan-v0] [--diffusion dbx-base-v1] [--repeats 5] [--threads 2] [--json]

What is measured, fp32 on the CPU, after the models are loaded, medians over --repeats runs after
one untimed warm-up of each, GAN and diffusion runs interleaved (a, b, a, b, ...):
  gan_1        one image, the generator only (pipelines.gan_generate.draw: mapping, synthesis, to [0, 1];
               the caption embedded beforehand) - issue 4's target: under 50 ms;
  gan_64       a batch of 64 images, the same - target: under 1 s;
  gan_request  one image as a user gets it: Studio.generate (text encoding, drawing, PNG record), no gallery;
  diffusion    one image from the diffusion model as a user gets it: Studio.generate at its manifest's
               sampling defaults (dbx-base-v1: DPM++ 2M, exponential, 20 steps, cfg 4), at its native
               size (32x32 for dbx-base-v1: it draws nothing larger; the GAN draws 64x64), upscaler none;
  diffusion_16 per image in a batch of 16 (the request schema's largest batch), the same.
Ratios diffusion / GAN > 1: the GAN is that many times faster (per request; per image in a batch).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

TARGET_1_S, TARGET_64_S = 0.050, 1.0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--gan", default="dbx-gan-v0")
    p.add_argument("--diffusion", default="dbx-base-v1")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)

    from designerbox.jobs.schema import GenerationRequest
    from designerbox.pipelines.gan_generate import draw, encode, latents
    from designerbox.studio import Studio

    studio = Studio()
    gan_manifest, gan = studio.model(args.gan)
    diff_manifest, _ = studio.model(args.diffusion)
    prompt = "a red apple"
    text = encode(gan, [prompt])

    def timed(fn) -> float:
        start = time.perf_counter()
        fn()
        return time.perf_counter() - start

    z_dim = gan.generator.z_dim
    w, h = diff_manifest.native_size
    runs = {
        "gan_1": lambda i: draw(gan, latents([i], z_dim), text),
        "gan_64": lambda i: draw(gan, latents(list(range(i, i + 64)), z_dim), text.expand(64, -1)),
        "gan_request": lambda i: studio.generate(GenerationRequest(prompt=prompt, model=gan_manifest.id, seed=i,
                                                                   upscaler="none"), save=False),
        "diffusion": lambda i: studio.generate(GenerationRequest(prompt=prompt, model=diff_manifest.id, seed=i,
                                                                 width=w, height=h, upscaler="none"), save=False),
        "diffusion_16": lambda i: studio.generate(GenerationRequest(prompt=prompt, model=diff_manifest.id, seed=i,
                                                                    width=w, height=h, batch_size=16,
                                                                    upscaler="none"), save=False),
    }
    for fn in runs.values():
        fn(0)  # warm-up: first-call allocations
    times = {k: [] for k in runs}
    for r in range(args.repeats):
        for k, fn in runs.items():
            times[k].append(timed(lambda: fn(r + 1)))
    m = {k: statistics.median(v) for k, v in times.items()}
    per_image_batch_gan, per_image_batch_diff = m["gan_64"] / 64, m["diffusion_16"] / 16
    d = diff_manifest.defaults
    report = {
        "gan": {"id": gan_manifest.id, "hash": gan_manifest.short_hash, "size": list(gan_manifest.native_size),
                "parameters": sum(p.numel() for p in gan.generator.parameters())},
        "diffusion": {"id": diff_manifest.id, "hash": diff_manifest.short_hash, "size": [w, h],
                      "sampling": f"{d.sampler}/{d.schedule} {d.steps} steps cfg {d.cfg_scale}"},
        "threads": args.threads, "repeats": args.repeats, "median_s": m,
        "targets": {"gan_1_s": TARGET_1_S, "gan_1_met": m["gan_1"] < TARGET_1_S,
                    "gan_64_s": TARGET_64_S, "gan_64_met": m["gan_64"] < TARGET_64_S},
        "ratio_diffusion_vs_gan_per_request": m["diffusion"] / m["gan_request"],
        "ratio_diffusion_vs_gan_per_image_in_batches": per_image_batch_diff / per_image_batch_gan,
        "runs": times,
    }
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    g, df = report["gan"], report["diffusion"]
    print(f"{g['id']} ({g['parameters'] / 1e6:.2f}M, {g['size'][0]}x{g['size'][1]}) vs {df['id']} "
          f"({df['size'][0]}x{df['size'][1]} native, {df['sampling']}); {args.threads} thread(s), "
          f"median of {args.repeats} interleaved runs")
    print(f"  GAN, one image (generator):     {m['gan_1'] * 1000:7.1f} ms   target {TARGET_1_S * 1000:.0f} ms: "
          f"{'met' if m['gan_1'] < TARGET_1_S else 'NOT met'}")
    print(f"  GAN, batch of 64 (generator):   {m['gan_64'] * 1000:7.1f} ms   target {TARGET_64_S * 1000:.0f} ms: "
          f"{'met' if m['gan_64'] < TARGET_64_S else 'NOT met'}")
    print(f"  GAN, one image (request):       {m['gan_request'] * 1000:7.1f} ms")
    print(f"  diffusion, one image (request): {m['diffusion'] * 1000:7.1f} ms   diffusion/GAN = "
          f"{report['ratio_diffusion_vs_gan_per_request']:.0f}x")
    print(f"  per image in a batch: diffusion (16) {per_image_batch_diff * 1000:.1f} ms, GAN (64) "
          f"{per_image_batch_gan * 1000:.2f} ms   diffusion/GAN = "
          f"{report['ratio_diffusion_vs_gan_per_image_in_batches']:.0f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
