"""GPU benchmark: DesignerBox's Stable Diffusion path against plain diffusers, SD 1.5 and SDXL, fp16.

    python3 bench/gpu_sd.py [--device cuda] [--families sd15,sdxl] [--batches 1,8] [--repeats 2] [--budget-s 420]
    .venv/bin/python bench/gpu_sd.py --device cpu --tiny        # the same code on tiny configs, here

Issue 5, item 8. Through the device tool: scripts/gpu/bench_sd.sh.

Networks: SD 1.5 and SDXL base architectures with RANDOM weights (seed 0; the same compute as the
real ones), built from configs, nothing downloaded: the packaged src/designerbox/configs/sd15/ and
configs/sdxl/ (the published stable-diffusion-xl-base-1.0 configs). Both sides run the very same
module objects.

  diffusers  StableDiffusionPipeline / StableDiffusionXLPipeline built from those modules,
             DPMSolverMultistepScheduler (Karras sigmas), output_type "np" (images on the CPU);
  ours       pipelines.stable_diffusion.sd_text_to_image (SD 1.5) and
             pipelines.stable_diffusion_xl.sdxl_text_to_image (SDXL: two text encoders, pooled
             embedding, size/crop time ids) unchanged, on LatentDiffusion / LatentDiffusionXL in fp16 on
             CUDA: our DPM++ 2M sampler, Karras schedule, DiscreteEpsDenoiser, CFGDenoiser, VAE
             decode, images on the CPU.

Same work on both sides: 512x512 (SD 1.5) or 1024x1024 (SDXL), 25 steps (25 UNet calls at batch 2B:
CFG's two branches batched), cfg 7, fp16 weights and activations, VAE decode in fp16 (the SDXL VAE
config sets force_upcast false, else diffusers would decode in fp32 and ours in fp16). Text encoding
is INSIDE the timing on both sides: a fixed-id tokenizer (FixedTokenizer: no vocabulary is needed,
every prompt becomes the same 77 ids) feeds the real-size text encoders; SD 1.5 encodes the prompt
and the empty negative prompt, SDXL encodes the prompt with both encoders and uses zeros for the
unconditional branch (diffusers' force_zeros_for_empty_prompt, done the same way in ours).
Differences left in: our latents stay fp32 between UNet calls (the UNet sees fp16), diffusers keeps
them fp16; the initial noise is drawn on the CPU per image in ours, on the GPU in diffusers.

Measured: seconds per image at batch 1, images per second at batch 8, medians over --repeats runs
after one untimed warm-up of each side, the sides interleaved (d, o, d, o, ...), torch.cuda.synchronize
around each run. ratio = ours time / diffusers time (> 1: ours is slower). --budget-s skips the
measurements that would not finish in time, with a note. JSON to $OUT/gpu_sd.json when OUT is set
(or --json PATH).
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT / "src") not in sys.path:
    sys.path.insert(0, str(ROOT / "src"))

PROMPT = "a photo of a cat"
TOKEN_IDS = [49406, 320, 1125, 539, 320, 2368, 49407]  # BOS "a photo of a cat" EOS in CLIP's BPE vocabulary
SCALED_LINEAR = {"beta_schedule": "scaled_linear", "num_train_timesteps": 1000, "beta_start": 0.00085, "beta_end": 0.012}

# Tiny configs for --tiny: the same code paths, a few channels (diffusers' own test sizes).
TINY_UNET = {"block_out_channels": [32, 64], "layers_per_block": 1, "norm_num_groups": 32, "sample_size": 32,
             "down_block_types": ["CrossAttnDownBlock2D", "DownBlock2D"],
             "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D"], "attention_head_dim": 8, "cross_attention_dim": 32}
TINY_SDXL_UNET = {"block_out_channels": [32, 64], "layers_per_block": 1, "norm_num_groups": 32, "sample_size": 32,
                  "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D"],
                  "up_block_types": ["CrossAttnUpBlock2D", "UpBlock2D"], "attention_head_dim": [2, 4],
                  "transformer_layers_per_block": [1, 2], "cross_attention_dim": 64,
                  "addition_time_embed_dim": 8, "projection_class_embeddings_input_dim": 80}  # 32 + 6 * 8
TINY_VAE = {"block_out_channels": [32, 64], "down_block_types": ["DownEncoderBlock2D"] * 2,
            "up_block_types": ["UpDecoderBlock2D"] * 2, "layers_per_block": 1, "sample_size": 64}
TINY_TEXT = {"hidden_size": 32, "intermediate_size": 37, "num_attention_heads": 4, "num_hidden_layers": 2,
             "projection_dim": 32}


class FixedTokenizer:
    """Stands in for CLIPTokenizer in both pipelines: every text becomes TOKEN_IDS padded to 77 (no
    vocabulary needed). What diffusers' encode_prompt touches: __call__, tokenize, added_tokens_encoder;
    ours (pipelines/prompt_weights): the special token ids and __call__ without special tokens."""

    model_max_length = 77
    added_tokens_encoder: dict = {}
    bos_token_id, eos_token_id, pad_token_id = TOKEN_IDS[0], TOKEN_IDS[-1], TOKEN_IDS[-1]

    def __init__(self):
        ids = TOKEN_IDS + [TOKEN_IDS[-1]] * (self.model_max_length - len(TOKEN_IDS))
        self.ids = torch.tensor([ids])  # (1, 77)

    def tokenize(self, text: str) -> list[str]:
        return text.split()

    def __call__(self, texts, add_special_tokens: bool = True, **kwargs):
        if not add_special_tokens:  # one fragment, as pipelines/prompt_weights tokenizes: the words alone
            return SimpleNamespace(input_ids=TOKEN_IDS[1:-1] if texts else [])
        n = 1 if isinstance(texts, str) else len(texts)
        ids = self.ids.expand(n, -1).clone()  # (N, 77)
        return SimpleNamespace(input_ids=ids, attention_mask=torch.ones_like(ids))


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def build(make, device: torch.device, dtype: torch.dtype):
    """Construct a module with random weights directly on the device (fast for SDXL), then cast."""
    with device:
        module = make()
    return module.to(dtype=dtype).eval().requires_grad_(False)


def load_json(path: Path) -> dict:
    return {k: v for k, v in json.loads(path.read_text()).items() if not k.startswith("_")}


def packaged_configs(family: str) -> dict:
    """Constructor arguments of each network and the scheduler, from src/designerbox/configs/<family>/."""
    folder = ROOT / "src" / "designerbox" / "configs" / family
    cfg = {p.parent.name: load_json(p) for p in sorted(folder.glob("*/config.json"))}
    cfg["scheduler"] = load_json(folder / "scheduler" / "scheduler_config.json")
    return cfg


def sd15_configs(tiny: bool) -> dict:
    cfg = packaged_configs("sd15")
    if tiny:
        cfg["unet"].update(TINY_UNET)
        cfg["vae"].update(TINY_VAE)
        cfg["text_encoder"].update(TINY_TEXT)
    return cfg


def sdxl_configs(tiny: bool) -> dict:
    cfg = packaged_configs("sdxl")
    cfg["vae"]["force_upcast"] = False  # published: true (fp32 decode in diffusers); false so both sides decode in fp16
    if tiny:
        cfg["unet"].update(TINY_SDXL_UNET)
        cfg["vae"].update(TINY_VAE)
        cfg["text_encoder"].update(TINY_TEXT)
        cfg["text_encoder_2"].update(TINY_TEXT)
    return cfg


def make_scheduler(cfg: dict):
    from diffusers import DPMSolverMultistepScheduler

    return DPMSolverMultistepScheduler.from_config({**cfg, "use_karras_sigmas": True})


# ---------------------------------------------------------------------------------------------- SD 1.5


def setup_sd15(device, dtype, tiny: bool):
    """Returns (diffusers_run, ours_run), each run(batch, size, steps, cfg) -> images."""
    from diffusers import AutoencoderKL, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    from designerbox.pipelines.speed import speed_up
    from designerbox.pipelines.stable_diffusion import LatentDiffusion, sd_text_to_image
    from designerbox.samplers.discrete import alphas_cumprod

    cfg = sd15_configs(tiny)
    torch.manual_seed(0)
    unet = build(lambda: UNet2DConditionModel.from_config(cfg["unet"]), device, dtype)
    vae = build(lambda: AutoencoderKL.from_config(cfg["vae"]), device, dtype)
    text_encoder = build(lambda: CLIPTextModel(CLIPTextConfig(**cfg["text_encoder"])), device, dtype)
    tokenizer = FixedTokenizer()

    pipe = StableDiffusionPipeline(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet,
                                   scheduler=make_scheduler(cfg["scheduler"]), safety_checker=None,
                                   feature_extractor=None, requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    ours = LatentDiffusion(unet=unet, vae=vae, text_encoder=text_encoder, tokenizer=tokenizer,
                           alphas_cumprod=alphas_cumprod(**SCALED_LINEAR).float(), prediction="eps",
                           device=device, dtype=dtype)

    def run_diffusers(batch, size, steps, cfg_scale):
        return pipe(PROMPT, height=size, width=size, num_inference_steps=steps, guidance_scale=cfg_scale,
                    num_images_per_prompt=batch, output_type="np").images  # (B, H, W, 3)

    def ours_run(model):
        def run(batch, size, steps, cfg_scale):
            return sd_text_to_image(model, PROMPT, None, width=size, height=size, steps=steps, sampler="dpmpp_2m",
                                    schedule="karras", cfg_scale=cfg_scale, seeds=list(range(batch)))  # (B, 3, H, W)
        return run

    sides = {"diffusers": run_diffusers, "ours": ours_run(ours)}
    for name, options in speedups(device):  # copies of the networks, so the plain sides stay plain
        fast = copy.copy(ours)
        fast.unet, fast.vae = copy.deepcopy(unet), copy.deepcopy(vae)
        speed_up(fast, **options)
        sides[name] = ours_run(fast)
    return sides, lambda batch, size: unet_flops(unet, batch, size, {"encoder_hidden_states": (77, cfg["unet"]["cross_attention_dim"])}, device, dtype)


# ---------------------------------------------------------------------------------------------- SDXL


def setup_sdxl(device, dtype, tiny: bool):
    from diffusers import AutoencoderKL, StableDiffusionXLPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    from designerbox.pipelines.speed import speed_up
    from designerbox.pipelines.stable_diffusion_xl import LatentDiffusionXL, sdxl_text_to_image
    from designerbox.samplers.discrete import alphas_cumprod

    cfg = sdxl_configs(tiny)
    torch.manual_seed(0)
    nets = {
        "unet": build(lambda: UNet2DConditionModel.from_config(cfg["unet"]), device, dtype),
        "vae": build(lambda: AutoencoderKL.from_config(cfg["vae"]), device, dtype),
        "text_encoder": build(lambda: CLIPTextModel(CLIPTextConfig(**cfg["text_encoder"])), device, dtype),
        "text_encoder_2": build(lambda: CLIPTextModelWithProjection(CLIPTextConfig(**cfg["text_encoder_2"])),
                                device, dtype),
        "tokenizer": FixedTokenizer(),
        "tokenizer_2": FixedTokenizer(),
    }
    pipe = StableDiffusionXLPipeline(**nets, scheduler=make_scheduler(cfg["scheduler"]),
                                     force_zeros_for_empty_prompt=True, add_watermarker=False)
    pipe.set_progress_bar_config(disable=True)

    def run_diffusers(batch, size, steps, cfg_scale):
        return pipe(PROMPT, height=size, width=size, num_inference_steps=steps, guidance_scale=cfg_scale,
                    num_images_per_prompt=batch, output_type="np").images  # (B, H, W, 3)

    ours = LatentDiffusionXL(**nets, alphas_cumprod=alphas_cumprod(**SCALED_LINEAR).float(), prediction="eps",
                             device=device, dtype=dtype)

    def ours_run(model):
        def run(batch, size, steps, cfg_scale):
            return sdxl_text_to_image(model, PROMPT, None, width=size, height=size, steps=steps, sampler="dpmpp_2m",
                                      schedule="karras", cfg_scale=cfg_scale, seeds=list(range(batch)))  # (B, 3, H, W)
        return run

    sides = {"diffusers": run_diffusers, "ours": ours_run(ours)}
    # SDXL compile takes minutes of warm-up: opt in with BENCH_SDXL_COMPILE=1 (run it alone, with budget)
    for name, options in speedups(device, compile=os.environ.get("BENCH_SDXL_COMPILE") == "1"):
        fast = copy.copy(ours)
        fast.unet, fast.vae = copy.deepcopy(ours.unet), copy.deepcopy(ours.vae)
        speed_up(fast, **options)
        sides[name] = ours_run(fast)
    d = cfg["unet"]
    extra = {"encoder_hidden_states": (77, d["cross_attention_dim"]),
             "added_cond_kwargs": {"text_embeds": (d["projection_class_embeddings_input_dim"] - 6 * d["addition_time_embed_dim"],),
                                   "time_ids": (6,)}}
    return sides, lambda batch, size: unet_flops(nets["unet"], batch, size, extra, device, dtype)


def speedups(device, compile: bool = True) -> list[tuple[str, dict]]:
    """The optimised sides, each adding one step to the last (issue 9: one measured step at a time)."""
    sides = [("ours+cl+qkv", {"channels_last": True, "fuse_qkv": True})]
    if compile and os.environ.get("BENCH_COMPILE", "1") == "1":
        sides.append(("ours+cl+qkv+compile", {"channels_last": True, "fuse_qkv": True, "compile": "reduce-overhead"}))
    return sides


def unet_flops(unet, batch: int, size: int, extra: dict, device, dtype) -> float:
    """Floating-point operations of one UNet call on `batch` latents of an image of `size` pixels
    (torch.utils.flop_counter: matrix products and convolutions, 2 per multiply-add)."""
    from torch.utils.flop_counter import FlopCounterMode

    def tensor(shape):
        return torch.randn(batch, *shape, device=device, dtype=dtype)

    f = 8 if size >= 256 else 2  # the real VAE downsamples by 8, the tiny one by 2
    x = tensor((unet.config.in_channels, size // f, size // f))
    kwargs = {k: ({kk: tensor(vv) for kk, vv in v.items()} if isinstance(v, dict) else tensor(v)) for k, v in extra.items()}
    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        unet(x, torch.full((batch,), 500, device=device), **kwargs)
    return float(counter.get_total_flops())


PEAK_TFLOPS = {"H100": 989.0, "H200": 989.0}  # dense bf16/fp16 tensor-core peak (SXM)

FAMILIES = {"sd15": (setup_sd15, 512), "sdxl": (setup_sdxl, 1024)}


# ---------------------------------------------------------------------------------------------- timing


def check_outputs(family: str, batch: int, size: int, images: dict, notes: list) -> dict:
    """The warm-up outputs: every side returns `batch` images of size x size; non-finite pixels noted.
    Returns each optimised side's largest pixel difference from the plain "ours" (same seeds)."""
    as_nchw = {name: torch.as_tensor(im).float() for name, im in images.items()}
    if "diffusers" in as_nchw:
        as_nchw["diffusers"] = as_nchw["diffusers"].permute(0, 3, 1, 2)  # diffusers' numpy output is (B, H, W, 3)
    for name, im in as_nchw.items():
        if tuple(im.shape) != (batch, 3, size, size):
            raise RuntimeError(f"{family} {name}: unexpected output shape {tuple(im.shape)}")
    finite = {name: bool(torch.isfinite(im).all()) for name, im in as_nchw.items()}
    diffs = {name: float((im - as_nchw["ours"]).abs().max()) for name, im in as_nchw.items()
             if name not in ("diffusers", "ours") and "ours" in as_nchw}
    print(f"{family} batch {batch}: finite {finite}; max |optimised - ours| {diffs}", flush=True)
    if not all(finite.values()):
        notes.append(f"{family} batch {batch}: non-finite pixels (random weights): {finite}")
    return diffs


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default="cuda")
    p.add_argument("--tiny", action="store_true", help="tiny configs, 64x64, 2 steps (a check, not a benchmark)")
    p.add_argument("--families", default="sd15,sdxl")
    p.add_argument("--batches", default="1,8")
    p.add_argument("--steps", type=int, default=None, help="default 25 (2 with --tiny)")
    p.add_argument("--cfg", type=float, default=7.0)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--sides", default="", help="only these sides, comma-separated (default: all)")
    p.add_argument("--budget-s", type=float, default=420.0, help="skip measurements that would end past this")
    p.add_argument("--json", default=None, help="default $OUT/gpu_sd.json when OUT is set")
    args = p.parse_args(argv)
    start = time.perf_counter()
    device = torch.device(args.device)
    dtype = torch.float16 if device.type == "cuda" else torch.float32
    steps = args.steps or (2 if args.tiny else 25)
    batches = [int(b) for b in args.batches.split(",")]

    import diffusers
    import transformers

    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    report = {"device": gpu, "dtype": str(dtype).removeprefix("torch."), "tiny": args.tiny, "steps": steps,
              "cfg": args.cfg, "repeats": args.repeats, "sampler": "DPM++ 2M, Karras sigmas",
              "versions": {"torch": torch.__version__, "diffusers": diffusers.__version__,
                           "transformers": transformers.__version__},
              "results": [], "notes": []}
    print(f"device {gpu}, {report['dtype']}, {steps} steps, cfg {args.cfg}, repeats {args.repeats}", flush=True)

    def elapsed() -> float:
        return time.perf_counter() - start

    def timed(fn, keep: dict | None = None) -> float:
        sync(device)
        t0 = time.perf_counter()
        with torch.inference_mode():
            out = fn()
        sync(device)
        seconds = time.perf_counter() - t0
        if keep is not None:
            keep["images"] = out
        return seconds

    for family in args.families.split(","):
        setup, size = FAMILIES[family]
        size = 64 if args.tiny else size
        if elapsed() > args.budget_s:
            report["notes"].append(f"{family}: skipped, budget of {args.budget_s:.0f} s spent before building")
            continue
        t0 = time.perf_counter()
        runs, flops_of = setup(device, dtype, args.tiny)
        print(f"{family}: built in {time.perf_counter() - t0:.1f} s; sides {list(runs)}", flush=True)
        per_image = None  # seconds per image of the slowest side, from the last warm-up
        for batch in batches:
            sides = {name: (lambda b=batch, run=run: run(b, size, steps, args.cfg)) for name, run in runs.items()
                     if not args.sides or name in args.sides.split(",")}
            compiles = sum(v for r in report["results"] for k, v in r["warmup_s"].items() if "compile" in k)
            guess = 0.0 if per_image is None else len(sides) * per_image * batch * (1 + args.repeats) + compiles
            if elapsed() + guess > args.budget_s:
                report["notes"].append(f"{family} batch {batch}: skipped, about {guess:.0f} s would pass the budget")
                print(report["notes"][-1], flush=True)
                continue
            outs = {name: {} for name in sides}
            warm = {}
            for name, fn in sides.items():  # one untimed warm-up each (the compiled side compiles here)
                warm[name] = timed(fn, outs[name])
                print(f"  warm-up {name}: {warm[name]:.1f} s", flush=True)
            diffs = check_outputs(family, batch, size, {n: o["images"] for n, o in outs.items()}, report["notes"])
            del outs
            per_image = max([v for k, v in warm.items() if "compile" not in k] or list(warm.values())) / batch
            if elapsed() + per_image * batch * len(sides) * args.repeats > args.budget_s:
                report["notes"].append(f"{family} batch {batch}: skipped after warm-up, the runs would pass the budget")
                print(report["notes"][-1], flush=True)
                continue
            times = {name: [] for name in sides}
            for _ in range(args.repeats):  # interleaved: d, o, o+..., d, o, ...
                for name, fn in sides.items():
                    times[name].append(timed(fn))
            flops = flops_of(2 * batch, size)  # one UNet call: CFG's two branches batched
            row = {"family": family, "size": size, "batch": batch, "warmup_s": warm, "times_s": times,
                   "max_pixel_diff_vs_ours": diffs, "unet_tflop_per_call": flops / 1e12}
            peak = next((v for k, v in PEAK_TFLOPS.items() if k in gpu), None)
            for name in sides:
                med = statistics.median(times[name])
                row[name] = {"s_per_image": med / batch, "images_per_s": batch / med, "median_s": med,
                             "steps_per_s": steps / med, "tflop_per_s": flops * steps / med / 1e12}
                if peak:
                    row[name]["share_of_peak"] = row[name]["tflop_per_s"] / peak
                if "diffusers" in times:
                    row[name]["ratio_time_vs_diffusers"] = med / statistics.median(times["diffusers"])
            report["results"].append(row)
            # the next batch size's guess from the timed runs (the first warm-up holds one-off set-up)
            per_image = max(row[n]["s_per_image"] for n in sides)
            print(f"{family} {size}px batch {batch}: " + ", ".join(f"{n} {row[n]['median_s']:.3f} s" for n in sides)
                  + f"  ({elapsed():.0f} s elapsed)", flush=True)
        del runs, sides
        if device.type == "cuda":
            torch.cuda.empty_cache()

    print("\n| family | size | batch | side | s/image | images/s | steps/s | TFLOP/s | share of peak | time vs diffusers |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in report["results"]:
        for name in r["times_s"]:
            x = r[name]
            print(f"| {r['family']} | {r['size']} | {r['batch']} | {name} | {x['s_per_image']:.3f} | {x['images_per_s']:.2f} | "
                  f"{x['steps_per_s']:.1f} | {x['tflop_per_s']:.1f} | {x.get('share_of_peak', float('nan')):.3f} | "
                  f"{x.get('ratio_time_vs_diffusers', float('nan')):.3f} |")
    # the two targets: batch-1 latency against diffusers, and 8 concurrent requests served as one
    # batch against diffusers handling them one by one (8 x its batch-1 time)
    for family in {r["family"] for r in report["results"]}:
        rows = {r["batch"]: r for r in report["results"] if r["family"] == family}
        if 1 in rows and "diffusers" in rows[1]["times_s"] and len(rows[1]["times_s"]) > 1:
            best = min((n for n in rows[1]["times_s"] if n != "diffusers"), key=lambda n: rows[1][n]["median_s"])
            report.setdefault("targets", {})[f"{family} batch-1 latency, {best} / diffusers (target <= 0.45)"] = \
                rows[1][best]["ratio_time_vs_diffusers"]
            if 8 in rows and len(rows[8]["times_s"]) > 1:
                best8 = max((n for n in rows[8]["times_s"] if n != "diffusers"), key=lambda n: rows[8][n]["images_per_s"])
                report["targets"][f"{family} 8 concurrent, {best8} batched / diffusers one by one (target >= 2.5)"] = \
                    rows[8][best8]["images_per_s"] / rows[1]["diffusers"]["images_per_s"]
    for k, v in report.get("targets", {}).items():
        print(f"target: {k}: {v:.3f}")
    for note in report["notes"]:
        print("note:", note)
    report["total_s"] = elapsed()
    print(f"total {report['total_s']:.0f} s")
    path = args.json or (os.path.join(os.environ["OUT"], "gpu_sd.json") if os.environ.get("OUT") else None)
    if path:
        Path(path).write_text(json.dumps(report, indent=1))
        print("wrote", path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
