"""Settings, read once at the edge (CLI, server, notebook) from the environment."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Settings:
    home: Path          # DESIGNERBOX_HOME: user models (home/models), gallery (home/gallery)
    device: str         # DESIGNERBOX_DEVICE: "auto", "cpu", "cuda", "cuda:1"...
    cache_mb: int       # DESIGNERBOX_CACHE_MB: memory budget of the model cache

    @classmethod
    def from_env(cls, env: dict | None = None) -> "Settings":
        env = os.environ if env is None else env
        home = Path(env.get("DESIGNERBOX_HOME") or Path.home() / ".designerbox").expanduser()
        try:
            cache_mb = int(env.get("DESIGNERBOX_CACHE_MB", "4096"))
        except ValueError:
            raise ValueError(f"DESIGNERBOX_CACHE_MB must be a whole number of MiB, not {env['DESIGNERBOX_CACHE_MB']!r}") from None
        return cls(home=home, device=env.get("DESIGNERBOX_DEVICE", "auto"), cache_mb=cache_mb)

    def resolve_device(self) -> str:
        if self.device != "auto":
            return self.device
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
