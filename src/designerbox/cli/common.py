"""What the command's rooms share: the error every command raises for bad input, the argument types,
the sampling options of `generate` and `sheet`, and the output check made before any work."""

from __future__ import annotations

import argparse
import os
from pathlib import Path


class CLIError(Exception):
    """Bad input on the command line: printed as `error: ...`, exit status 2."""


def parse_size(text: str) -> tuple[int, int]:
    try:
        w, h = text.lower().split("x")
        return int(w), int(h)
    except ValueError:
        raise argparse.ArgumentTypeError(f"size must look like 512x512, not {text!r}") from None


def parse_extend(text: str) -> tuple[int, int, int, int]:
    try:
        parts = tuple(int(p) for p in text.split(","))
    except ValueError:
        parts = ()
    if len(parts) != 4:
        raise argparse.ArgumentTypeError(f"{text!r}: give four whole numbers of pixels, left,top,right,bottom "
                                         "(e.g. 0,0,128,0)")
    return parts


def parse_lora(text: str) -> dict:
    name, _, weight = text.rpartition(":") if ":" in text else (text, "", "1")
    try:
        return {"name": name, "weight": float(weight)}
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: give NAME or NAME:WEIGHT, e.g. watercolor:0.8") from None


def image_path(text: str) -> str:
    """An image argument: a path, not an empty string (which would name the current folder)."""
    if not text.strip():
        raise argparse.ArgumentTypeError("give the path of a PNG image (an empty path was given)")
    return text


def sampling_options(g) -> None:
    """The options every drawing command takes (generate, sheet)."""
    g.add_argument("--model", help="model id (see `designerbox models list`)")
    g.add_argument("--seed", type=int)
    g.add_argument("--steps", type=int)
    g.add_argument("--sampler", help="euler, euler_a, heun, dpmpp_2m, dpmpp_2m_sde, ddim")
    g.add_argument("--schedule", help="karras, exponential, simple")
    g.add_argument("--cfg", type=float, help="classifier-free guidance scale")
    g.add_argument("--truncation", type=float, help="GANs only: truncation psi (1: none, lower: more typical)")
    g.add_argument("--size", type=parse_size, help="WxH, e.g. 256x256")
    g.add_argument("--preset", help="a platform size, e.g. instagram-post")
    g.add_argument("--style", help="a style preset, e.g. 3d, flat, clip-art")
    g.add_argument("--negative", help="negative prompt")
    g.add_argument("--upscaler", help="upscaler model id for sizes beyond the model's, or 'none'")


def request_options(args) -> dict:
    opts = {"model": args.model, "seed": args.seed, "steps": args.steps, "sampler": args.sampler,
            "schedule": args.schedule, "cfg_scale": args.cfg, "style": args.style, "size_preset": args.preset,
            "negative_prompt": args.negative, "batch_size": args.n, "upscaler": args.upscaler,
            "truncation": args.truncation, "init_image": getattr(args, "init_image", None),
            "mask_image": getattr(args, "mask", None), "strength": getattr(args, "strength", None),
            "extend": getattr(args, "extend", None), "loras": getattr(args, "lora", None),
            "outpaint_to": getattr(args, "outpaint_to", None), "refiner": getattr(args, "refiner", None),
            "refiner_strength": getattr(args, "refiner_strength", None)}
    if args.size:
        opts["width"], opts["height"] = args.size
    return {k: v for k, v in opts.items() if v is not None}


def check_writable(out: Path) -> None:
    """Fail before any work when the output cannot be written."""
    folder = out.parent if out.suffix else out
    probe = folder
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir() or not os.access(probe, os.W_OK):
        raise CLIError(f"cannot write to {out}: {probe} is not a writable folder")
