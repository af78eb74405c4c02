"""Will a model fit? Its weights' bytes, estimated from the safetensors headers before anything is
loaded, against the model cache's budget and the device's free memory.

    estimate   sum over the manifest's .safetensors files of numel(tensor) * bytes per element of
               the dtype the loader runs in (float16 on a GPU for Stable Diffusion, float32 on the
               CPU): the weights alone; activations come on top (see ACTIVATION_SLACK)
    free       on a GPU torch.cuda.mem_get_info (what the driver has free now), on the CPU the
               kernel's MemAvailable (/proc/meminfo), else physical pages * page size

A model that cannot fit is refused with a ModelTooLargeError (a MemoryError, so every front door
reports it as the user's problem) naming its size, the budget or the free memory, and what to try.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from designerbox.registry.files import read_safetensors_header
from designerbox.registry.manifest import ModelManifest

ELEMENT_BYTES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1,
                 "BOOL": 1, "F8_E4M3": 1, "F8_E5M2": 1}
FLOAT_TYPES = {"F64", "F32", "F16", "BF16"}
ACTIVATION_SLACK = 1.2  # the weights plus a fifth for activations and the allocator when checking free memory
SD_FAMILIES = ("sd15", "sd2", "sdxl", "sdxl-refiner", "sd3", "flux-dev", "flux-schnell")


class ModelTooLargeError(MemoryError):
    """A model that does not fit in the cache's budget or the device's free memory."""


def runtime_dtype(manifest: ModelManifest, device: str | torch.device) -> torch.dtype:
    """The dtype the loader puts a model's floating-point weights in on this device."""
    on_gpu = torch.device(device).type == "cuda"
    return torch.float16 if on_gpu and manifest.family in SD_FAMILIES else torch.float32


def estimate_bytes(manifest: ModelManifest, device: str | torch.device = "cpu",
                   dtype: torch.dtype | None = None) -> int:
    """Bytes the model's weights take once loaded on `device` (floats in `dtype`, default runtime_dtype),
    read from the headers of its .safetensors files; no tensor data is read."""
    size = torch.empty(0, dtype=dtype or runtime_dtype(manifest, device)).element_size()
    total = 0
    for f in manifest.files:
        path = Path(f.path) if Path(f.path).is_absolute() else manifest.folder / f.path
        if path.suffix != ".safetensors" or not path.is_file():
            continue
        for name, info in read_safetensors_header(path).items():
            if name == "__metadata__":
                continue
            numel = 1
            for d in info["shape"]:
                numel *= d
            total += numel * (size if info["dtype"] in FLOAT_TYPES else ELEMENT_BYTES.get(info["dtype"], 4))
    return total


def free_bytes(device: str | torch.device) -> int:
    """Memory free on the device now: the GPU driver's free bytes, or the system's available RAM."""
    device = torch.device(device)
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free)
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def advice(device: str | torch.device) -> str:
    on_gpu = torch.device(device).type == "cuda"
    tips = ["draw a smaller size or fewer images at once"]
    if on_gpu:
        tips += ["keep float16 (the default on a GPU)", "turn on CPU offload (DESIGNERBOX_OFFLOAD=model: each "
                 "network on the GPU only while it runs)", "or run on the CPU (DESIGNERBOX_DEVICE=cpu)"]
    else:
        tips += ["close other programs", "or use a GPU (DESIGNERBOX_DEVICE=cuda)"]
    return "; ".join(tips)


def mib(n: int) -> str:
    return f"{n / 2**20:,.0f} MiB"


def check_fits(model_id: str, need: int, budget: int, free: int | None, device: str | torch.device) -> None:
    """Raise ModelTooLargeError when `need` bytes of weights exceed the cache's budget, or (times
    ACTIVATION_SLACK) the device's free memory."""
    where = "GPU" if torch.device(device).type == "cuda" else "RAM"
    if need > budget:
        raise ModelTooLargeError(
            f"model {model_id!r} needs about {mib(need)} for its weights on {device}, more than the model cache's "
            f"budget of {mib(budget)}: raise DESIGNERBOX_CACHE_MB (now {budget // 2**20}) if the {where} allows, "
            f"or {advice(device)}")
    if free is not None and need * ACTIVATION_SLACK > free:
        raise ModelTooLargeError(
            f"model {model_id!r} needs about {mib(need)} for its weights on {device} (plus room to run), but only "
            f"{mib(free)} of {where} is free: {advice(device)}")


def out_of_memory(model_id: str, device: str | torch.device, doing: str) -> ModelTooLargeError:
    """The error for a torch.cuda.OutOfMemoryError met while `doing` something with a model."""
    if torch.device(device).type == "cuda":
        torch.cuda.empty_cache()
    free = free_bytes(device)
    return ModelTooLargeError(f"out of memory on {device} while {doing} with model {model_id!r} ({mib(free)} free "
                              f"now): {advice(device)}")
