"""LoRA files for Stable Diffusion 1.x and SDXL, used the way AUTOMATIC1111 users write them.

    a castle on a hill <lora:watercolor:0.8>

A LoRA is a file of low-rank weight changes (Hu et al. 2021): for a layer with weight W, a down
projection D (r x in) and an up projection U (out x r) with a scale alpha, the layer becomes
W + strength * (alpha / r) * U @ D. We merge that into the loaded network's weights before drawing and
take it out again (from a copy of the touched weights) when the next request asks for other LoRAs, so
a LoRA costs nothing per step and never leaks into another request.

Files: $DESIGNERBOX_HOME/loras/NAME.safetensors (A1111's models/Lora folder can be linked there).
Formats read: kohya-ss / A1111 (`lora_unet_...`, `lora_te_...`, `lora_te1_...`/`lora_te2_...` for
SDXL's two text encoders; `.lora_down.weight`, `.lora_up.weight`, `.alpha`), with SDXL's UNet keys in
either diffusers or SGM block names (`input_blocks_4_1_...`, mapped by diffusers' own table), on
Linear layers and on 1x1 and 3x3 convolutions (LoCon). Pickled .pt/.ckpt files are never opened.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

TAG = re.compile(r"<lora:([^:<>]+)(?::([^:<>]+))?>")


class LoraError(ValueError):
    """A LoRA that is missing, unreadable, or does not fit the model."""


def parse_lora_tags(prompt: str) -> tuple[str, list[tuple[str, float]]]:
    """The prompt without its <lora:name:strength> tags, and the tags (strength 1.0 when omitted)."""
    tags = []
    for m in TAG.finditer(prompt):
        name, strength = m.group(1).strip(), m.group(2)
        try:
            tags.append((name, 1.0 if strength is None else float(strength)))
        except ValueError:
            raise LoraError(f"<lora:{name}:{strength}>: the strength must be a number, e.g. <lora:{name}:0.8>") from None
    clean = re.sub(r"\s{2,}", " ", TAG.sub("", prompt)).strip(" ,")
    return clean, tags


def lora_folder(home: Path) -> Path:
    return Path(home) / "loras"


def available(home: Path) -> list[str]:
    folder = lora_folder(home)
    return sorted(p.stem for p in folder.glob("*.safetensors")) if folder.is_dir() else []


def find_lora(home: Path, name: str) -> Path:
    if not name or "/" in name or "\\" in name or name.startswith("."):
        raise LoraError(f"{name!r} is not a LoRA name: a file name in {lora_folder(home)} without "
                        ".safetensors, with no folder part")
    path = lora_folder(home) / f"{name}.safetensors"
    if not path.is_file():
        names = available(home)
        raise LoraError(f"no LoRA named {name!r} in {lora_folder(home)}; available: "
                        f"{', '.join(names) if names else 'none (put NAME.safetensors files there)'}")
    return path


@functools.lru_cache(maxsize=64)
def _sha256(path: str, mtime_ns: int, size: int) -> str:
    from designerbox.registry.files import file_sha256

    return file_sha256(Path(path))


def lora_sha256(path: Path) -> str:
    """The file's sha256 (recorded with every image), hashed once per file version."""
    st = Path(path).stat()
    return _sha256(str(path), st.st_mtime_ns, st.st_size)


@dataclass
class LoraLayer:
    down: torch.Tensor   # (r, in) or (r, in, k, k)
    up: torch.Tensor     # (out, r) or (out, r, 1, 1)
    alpha: float

    def delta(self, weight: torch.Tensor) -> torch.Tensor:
        """U @ D * alpha / r, in the shape of `weight`."""
        rank = self.down.shape[0]
        up, down = self.up.float().flatten(1), self.down.float().flatten(1)  # (out, r), (r, in * k * k)
        return (up @ down).reshape(weight.shape) * (self.alpha / rank)


def read_lora(path: Path) -> dict[str, LoraLayer]:
    """kohya key prefix (e.g. 'lora_unet_down_blocks_0_attentions_0_proj_in') -> its layer."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        state = load_file(str(path))
    except (SafetensorError, OSError) as err:
        raise LoraError(f"{path}: not a readable .safetensors file ({err})") from None
    prefixes = {k.rsplit(".lora_down.weight", 1)[0] for k in state if k.endswith(".lora_down.weight")}
    if not prefixes:
        sample = ", ".join(list(state)[:3])
        raise LoraError(f"{path}: no kohya/A1111 LoRA tensors (*.lora_down.weight) found; it holds e.g. {sample}")
    layers = {}
    for p in prefixes:
        down, up = state[f"{p}.lora_down.weight"], state.get(f"{p}.lora_up.weight")
        if up is None:
            raise LoraError(f"{path}: {p}.lora_down.weight has no matching lora_up.weight")
        alpha = state.get(f"{p}.alpha")
        layers[p] = LoraLayer(down, up, float(alpha) if alpha is not None else float(down.shape[0]))
    return layers


def _targets(model) -> dict[str, nn.Module]:
    """kohya prefix of every Linear and Conv2d of the model's networks -> the module."""
    nets = [("lora_unet", model.unet)]
    if hasattr(model, "text_encoder_2"):
        nets += [(n, te) for n, te in (("lora_te1", model.text_encoder), ("lora_te2", model.text_encoder_2))
                 if te is not None]  # the SDXL refiner has no text_encoder
    else:
        nets += [("lora_te", model.text_encoder)]
    out = {}
    for prefix, net in nets:
        net = getattr(net, "_orig_mod", net)  # a torch.compile'd UNet
        for name, module in net.named_modules():
            if isinstance(module, (nn.Linear, nn.Conv2d)):
                flat = name.replace(".", "_")
                out[f"{prefix}_{flat}"] = module
                if prefix.startswith("lora_te") and not flat.startswith("text_model_"):
                    out[f"{prefix}_text_model_{flat}"] = module  # transformers >= 5 dropped the text_model level
    return out


def _sgm_to_diffusers(layers: dict[str, LoraLayer], unet) -> dict[str, LoraLayer]:
    """SDXL LoRAs from kohya name UNet layers by SGM blocks (input_blocks_4_1_...): renamed one key at a
    time with diffusers' own table (the new name depends only on the block numbers and the config)."""
    from diffusers.loaders.lora_conversion_utils import _maybe_map_sgm_blocks_to_diffusers

    config = getattr(unet, "_orig_mod", unet).config
    out = {}
    for k, layer in layers.items():
        if k.startswith("lora_unet_") and any(b in k for b in ("input_blocks", "middle_block", "output_blocks")):
            try:
                (k,) = _maybe_map_sgm_blocks_to_diffusers({f"{k}.lora_down.weight": None}, config)
                k = k.rsplit(".lora_down.weight", 1)[0]  # block numbers remapped; then the block words:
                k = (k.replace("_input_blocks_", "_down_blocks_").replace("_middle_block_", "_mid_block_")
                     .replace("_output_blocks_", "_up_blocks_"))
            except (ValueError, IndexError, KeyError):
                pass  # left as it is: reported below as a layer without a match
        out[k] = layer
    return out


@dataclass
class LoraState:
    """What is merged into a loaded model now, and the original weights of the layers it touched."""

    applied: tuple = ()
    originals: dict = field(default_factory=dict)  # module -> its weight before any LoRA (a CPU copy)


def set_loras(model, loras: list[tuple[Path, float]]) -> list[dict]:
    """Merge these LoRAs (path, strength) into `model`, removing what the last call merged; returns what
    was applied (name, strength, layers touched). An empty list restores the plain model."""
    state: LoraState = getattr(model, "_lora_state", None) or LoraState()
    key = tuple((str(p), float(s)) for p, s in loras)
    if key == state.applied:
        return getattr(model, "_lora_summary", [])
    with torch.no_grad():
        for module, weight in state.originals.items():  # back to the plain weights
            module.weight.copy_(weight.to(module.weight.device, module.weight.dtype))
        targets, summary = None, []
        for path, strength in loras:
            layers = read_lora(path)
            if targets is None:
                targets = _targets(model)
            if hasattr(model, "text_encoder_2"):
                layers = _sgm_to_diffusers(layers, model.unet)
            unknown = [k for k in layers if k not in targets]
            if unknown:
                raise LoraError(f"LoRA {path.stem!r} does not fit this model: {len(unknown)} of its {len(layers)} "
                                f"layers have no match (e.g. {unknown[:2]}); is it made for another family?")
            for k, layer in layers.items():
                module = targets[k]
                if module not in state.originals:
                    state.originals[module] = module.weight.detach().to("cpu", copy=True)
                if layer.delta(module.weight).numel() != module.weight.numel():
                    raise LoraError(f"LoRA {path.stem!r}: layer {k} has shape {tuple(layer.up.shape)} x "
                                    f"{tuple(layer.down.shape)}, the model's is {tuple(module.weight.shape)}")
                delta = layer.delta(module.weight).to(module.weight.device)
                module.weight.add_((strength * delta).to(module.weight.dtype))
            summary.append({"name": path.stem, "strength": strength, "layers": len(layers)})
    state.applied = key
    model._lora_state, model._lora_summary = state, summary
    return summary
