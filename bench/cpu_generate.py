"""CPU benchmark: seconds per image of the default model, our pipeline vs diffusers' components.

    .venv/bin/python bench/cpu_generate.py [--model-dir DIR] [--steps 20] [--repeats N] [--batch 1]
                                           [--threads N] [--json]

What is measured, for the model folder (default: the built-in dbx-base-v2) at its manifest's
defaults (for dbx-base-v2: DPM++ 2M, exponential sigmas, 20 steps, cfg 7, 32x32), fp32, on the CPU:
  (a) ours       designerbox.pipelines.text_to_image.text_to_image, with the model from
                 designerbox.registry.loading.load_pixel_diffusion;
  (b) diffusers  the same weights file loaded by UNet2DConditionModel.from_pretrained(dir,
                 subfolder="unet") and DPMSolverMultistepScheduler.from_pretrained(dir,
                 subfolder="scheduler", algorithm_type="dpmsolver++", solver_order=2,
                 use_exponential_sigmas=True or use_karras_sigmas=True, as the default schedule
                 asks; see reference_diffusers.DIFFUSERS_SCHEDULERS), driven by the denoising loop of diffusers' pipelines
                 (scale_model_input, one batched UNet call on [uncond, cond], guidance, scheduler.step).
                 diffusers has no pipeline class for a pixel-space UNet conditioned on a pooled MiniLM
                 embedding, so that loop is written out, as StableDiffusionPipeline.__call__ writes it,
                 in designerbox.pipelines.reference_diffusers.diffusers_text_to_image.
Each timed run is one call that makes B images, from the starting noise to pixels in [0, 1]; the
text embeddings of the prompt and the negative prompt are computed once, before any timing, and
both sides get the same ones. After one untimed warm-up run of each, the runs alternate a, b, a,
b, ... (so that drifts in background load hit both alike); the figure is the median over --repeats
runs of (seconds / B). It is reported for --batch and for batch 4. ours/diffusers < 1: ours is faster.

Agreement: the mean and max absolute difference, in [0, 255] pixel units, between our images and
diffusers' images from the same initial noise (pipelines.text_to_image.initial_noise of the same
seeds). Both are DPM-Solver++(2M) on the same sigmas; the remaining difference is that
diffusers' DPMSolverMultistepScheduler gives the UNet floor(t) (int64 timesteps) where we give the
continuous t; the figure with diffusers' UNet given the continuous t shows that (see
reference_diffusers.py for all convention differences).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

import designerbox
from designerbox.pipelines.reference_diffusers import (
    diffusers_text_to_image,
    load_diffusers_scheduler,
    load_diffusers_unet,
)
from designerbox.pipelines.text_to_image import initial_noise, pad_tokens, text_to_image
from designerbox.registry.files import ModelFileError
from designerbox.registry.loading import load_pixel_diffusion
from designerbox.registry.manifest import ModelManifest

BUILTIN = Path(designerbox.__file__).parent / "weights" / "dbx-base-v2"
WEIGHTS = "unet/diffusion_pytorch_model.safetensors"
PROMPT, NEGATIVE = "a red apple", ""
FIRST_SEED = 1


class PrecomputedTextEncoder(torch.nn.Module):
    """Stands in for model.text_encoder with embeddings computed once by the real encoder, so that
    the timed runs leave text encoding out (it is outside the timing for diffusers as well)."""

    def __init__(self, encoder, prompts: list[str]):
        super().__init__()
        states, pooled = encoder(prompts)  # (P, T, 384), (P, 384)
        self.rows = {p: i for i, p in enumerate(prompts)}
        self.states, self.pooled = states, pooled

    def forward(self, prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        index = torch.tensor([self.rows[p] for p in prompts])
        return self.states[index], self.pooled[index]


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model-dir", type=Path, default=BUILTIN, help="model folder (default: the built-in dbx-base-v2)")
    p.add_argument("--steps", type=int, default=None, help="sampling steps (default: the manifest's, 20)")
    p.add_argument("--repeats", type=int, default=5, help="timed runs per side and batch size (median reported)")
    p.add_argument("--batch", type=int, default=1, help="images per call for the main figure (batch 4 is always added)")
    p.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    return p.parse_args(argv)


def load(model_dir: Path):
    """Both sides' models from the same folder; exits with a message if it has no weights."""
    if not (model_dir / WEIGHTS).is_file():
        sys.exit(f"cpu_generate: no weights in {model_dir} (missing {WEIGHTS}). The built-in model's weights "
                 "are exported when its training finishes; until then pass --model-dir with a model folder "
                 "that has weights (designerbox.training.model_folder.create_pixel_model makes one).")
    models = {}
    try:
        manifest = ModelManifest.read(model_dir)
        for backend in ("onnx", "torch"):  # pipelines/onnx_cpu.py: the default on the CPU, and plain PyTorch
            os.environ["DESIGNERBOX_CPU_BACKEND"] = backend
            models[backend] = load_pixel_diffusion(manifest, "cpu")
    except ModelFileError as err:
        sys.exit(f"cpu_generate: cannot load {model_dir}: {err}")
    encoder = PrecomputedTextEncoder(models["torch"].text_encoder, [PROMPT, NEGATIVE])
    models = {k: dataclasses.replace(m, text_encoder=encoder) for k, m in models.items()}
    unet = load_diffusers_unet(model_dir)
    same = all(torch.equal(a, b) for a, b in zip(models["torch"].unet.state_dict().values(), unet.state_dict().values()))
    if not same:
        sys.exit("cpu_generate: diffusers' from_pretrained and our loader gave different weights")
    return manifest, models, unet


def main(argv=None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    from diffusers.utils import logging as diffusers_logging
    diffusers_logging.set_verbosity_error()  # e.g. "accelerate was not found", on every from_pretrained

    manifest, models, unet = load(args.model_dir)
    ours = models["onnx"]
    d = manifest.defaults
    steps = args.steps or d.steps
    width, height = manifest.native_size
    scheduler = load_diffusers_scheduler(args.model_dir, d.sampler, d.schedule)
    states, pooled = ours.text_encoder([PROMPT, NEGATIVE])  # (2, T, 384), (2, 384): the same for both sides
    tokens = {}
    if ours.tokens:  # a network with cross-attention also gets the token states, padded as ours pads them
        padded, mask = pad_tokens(states)
        tokens = {"cond_tokens": (padded[:1], mask[:1]), "uncond_tokens": (padded[1:], mask[1:])}

    def run_ours(seeds, model=ours):
        start = time.perf_counter()
        images = text_to_image(model, PROMPT, NEGATIVE, width=width, height=height, steps=steps, sampler=d.sampler,
                               schedule=d.schedule, cfg_scale=d.cfg_scale, seeds=seeds)
        return time.perf_counter() - start, images

    def run_diffusers(seeds, continuous_timesteps=False):
        start = time.perf_counter()
        noise = initial_noise(seeds, (3, height, width))  # diffusers' prepare_latents, inside its __call__
        images = diffusers_text_to_image(unet, scheduler, noise, pooled[:1], pooled[1:], steps=steps,
                                         cfg_scale=d.cfg_scale, continuous_timesteps=continuous_timesteps, **tokens)
        return time.perf_counter() - start, images

    results = []
    for batch in dict.fromkeys([args.batch, 4]):
        seeds = list(range(FIRST_SEED, FIRST_SEED + batch))
        run_ours(seeds), run_ours(seeds, models["torch"]), run_diffusers(seeds)  # warm-up
        times = {"ours": [], "ours_torch": [], "diffusers": []}
        for _ in range(args.repeats):  # interleaved: a, b, c, a, b, c, ...
            times["ours"].append(run_ours(seeds)[0] / batch)
            times["ours_torch"].append(run_ours(seeds, models["torch"])[0] / batch)
            times["diffusers"].append(run_diffusers(seeds)[0] / batch)
        a, t, b = (statistics.median(times[k]) for k in ("ours", "ours_torch", "diffusers"))
        results.append({"batch": batch, "ours_s_per_image": a, "ours_torch_s_per_image": t, "diffusers_s_per_image": b,
                        "ratio": a / b, "ratio_torch": t / b, "ours_runs": times["ours"],
                        "ours_torch_runs": times["ours_torch"], "diffusers_runs": times["diffusers"]})

    seeds = list(range(FIRST_SEED, FIRST_SEED + args.batch))
    mine = run_ours(seeds)[1]
    diff = (mine - run_diffusers(seeds)[1]).abs() * 255
    diff_t = (mine - run_diffusers(seeds, continuous_timesteps=True)[1]).abs() * 255
    report = {
        "model_dir": str(args.model_dir), "model_id": manifest.id, "weights_sha256": manifest.weights_sha256,
        "width": width, "height": height, "sampler": d.sampler, "schedule": d.schedule, "steps": steps,
        "cfg_scale": d.cfg_scale, "dtype": "float32", "threads": args.threads, "repeats": args.repeats,
        "cpu": cpu_name(), "torch": torch.__version__, "diffusers": __import__("diffusers").__version__,
        "results": results,
        "agreement": {"seeds": seeds, "mean_abs_255": diff.mean().item(), "max_abs_255": diff.max().item(),
                      "continuous_t_mean_abs_255": diff_t.mean().item(),
                      "continuous_t_max_abs_255": diff_t.max().item()},
    }
    print(json.dumps(report, indent=2) if args.json else table(report))
    return 0


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def table(r: dict) -> str:
    lines = [f"{r['model_id']} ({r['model_dir']}), {r['width']}x{r['height']}, {r['sampler']}/{r['schedule']}, "
             f"{r['steps']} steps, cfg {r['cfg_scale']}, fp32",
             f"CPU: {r['cpu']}, {r['threads']} thread(s); torch {r['torch']}, diffusers {r['diffusers']}; "
             f"median of {r['repeats']} interleaved runs",
             "",
             "ours: UNet on ONNX Runtime (the default on the CPU); ours-torch: the same pipeline on PyTorch",
             f"{'batch':>5}  {'ours s/img':>10}  {'ours-torch s/img':>16}  {'diffusers s/img':>15}  "
             f"{'ours/diffusers':>14}  {'ours-torch/diffusers':>20}"]
    for x in r["results"]:
        lines.append(f"{x['batch']:>5}  {x['ours_s_per_image']:>10.4f}  {x['ours_torch_s_per_image']:>16.4f}  "
                     f"{x['diffusers_s_per_image']:>15.4f}  {x['ratio']:>14.3f}  {x['ratio_torch']:>20.3f}")
    g = r["agreement"]
    lines += ["",
              f"agreement, seeds {g['seeds']}: |ours - diffusers| mean {g['mean_abs_255']:.4f}, "
              f"max {g['max_abs_255']:.4f} (of 255)",
              f"  with diffusers' UNet given the continuous timestep instead of its int64 one: "
              f"mean {g['continuous_t_mean_abs_255']:.4f}, max {g['continuous_t_max_abs_255']:.4f}"]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
