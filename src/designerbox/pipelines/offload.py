"""Model CPU offload: a model's networks wait in CPU memory and each is moved to the GPU only while it
runs, as diffusers' enable_model_cpu_offload does (accelerate's cpu_offload_with_hook).

A generation runs its networks one after another (text encoders, then the denoiser for every step,
then the VAE), so at most one of them is on the GPU at a time: peak GPU memory is the largest network
plus activations instead of all of them (SDXL in float16: about 5 GiB instead of 7; FLUX: the
12-billion-parameter transformer alone). The price is one transfer per network per image.

How: a forward pre-hook on each network and on its direct children (the VAE is run by .encode and
.decode, which call its children, never its forward) moves the whole network to the execution device
when any of them is called, sends the network that was there before back to the offload device, and
moves tensor arguments to the execution device. The model object's own `device` stays the execution
device, so the pipelines need no change. Extension by composition: hooks, no replaced functions.
"""

from __future__ import annotations

import functools

import torch
from torch import nn

OFFLOAD_MODES = ("none", "model")


def offload_mode(value: str | None) -> str:
    """DESIGNERBOX_OFFLOAD or a manifest's `offload` checked: none (the default) or model."""
    mode = (value or "none").strip().lower()
    if mode not in OFFLOAD_MODES:
        raise ValueError(f"offload must be one of {', '.join(OFFLOAD_MODES)}, not {value!r}")
    return mode


def _to(value, device: torch.device):
    if isinstance(value, torch.Tensor):
        return value.to(device)
    if isinstance(value, (list, tuple)):
        return type(value)(_to(v, device) for v in value)
    if isinstance(value, dict):
        return {k: _to(v, device) for k, v in value.items()}
    return value


class ModelOffload:
    """One network of `networks` on `device` at a time; the others on `offload_device`.

    networks        {name: nn.Module}, e.g. {"text_encoder": ..., "unet": ..., "vae": ...}
    device          where networks run (the model's device: "cuda")
    offload_device  where they wait ("cpu")
    moves           the names of the networks moved onto `device`, in order (for tests and logs)
    """

    def __init__(self, networks: dict[str, nn.Module], device: torch.device | str,
                 offload_device: torch.device | str = "cpu"):
        self.networks = dict(networks)
        self.device, self.offload_device = torch.device(device), torch.device(offload_device)
        self.resident: str | None = None
        self.moves: list[str] = []
        self._handles = []
        for name, net in self.networks.items():
            net.to(self.offload_device)
            hook = functools.partial(self._before, name)
            for module in (net, *net.children()):
                self._handles.append(module.register_forward_pre_hook(hook, with_kwargs=True))

    def _before(self, name: str, module: nn.Module, args: tuple, kwargs: dict):
        if self.resident != name:
            if self.resident is not None:
                self.networks[self.resident].to(self.offload_device)
            self.networks[name].to(self.device)
            self.resident = name
            self.moves.append(name)
        return _to(args, self.device), _to(kwargs, self.device)

    def release(self) -> None:
        """Send the network on the execution device back (after a generation, to free the GPU)."""
        if self.resident is not None:
            self.networks[self.resident].to(self.offload_device)
            self.resident = None

    def remove(self) -> None:
        """Take the hooks out; every network stays where it is."""
        for handle in self._handles:
            handle.remove()
        self._handles.clear()


def enable_model_offload(model, device: torch.device | str, offload_device: torch.device | str = "cpu",
                         names: tuple[str, ...] = ("text_encoder", "text_encoder_2", "text_encoder_3", "unet",
                                                   "transformer", "vae")) -> ModelOffload:
    """Offload the networks a model has among `names` (attributes that are nn.Modules); the model's
    `device` stays the execution device. Returns the ModelOffload, also kept as model.offload."""
    networks = {n: getattr(model, n) for n in names if isinstance(getattr(model, n, None), nn.Module)}
    offload = ModelOffload(networks, device, offload_device)
    model.offload = offload
    return offload
