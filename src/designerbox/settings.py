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
    # the server (`designerbox serve`)
    max_body_bytes: int = 32 << 20     # DESIGNERBOX_MAX_BODY_BYTES: larger request bodies get a 413 unread
    max_image_bytes: int = 16 << 20    # DESIGNERBOX_MAX_IMAGE_BYTES: an uploaded image (decoded) over this: a 413
    webhook_hosts: tuple[str, ...] = ()  # DESIGNERBOX_WEBHOOK_HOSTS: "host" or "host:port", comma-separated
    quota_concurrent: int = 8          # DESIGNERBOX_QUOTA_CONCURRENT: a user's queued + running jobs (0: no limit)
    quota_per_minute: int = 60         # DESIGNERBOX_QUOTA_PER_MINUTE: jobs a user may submit a minute (0: no limit)
    require_keys: bool = False         # set by `serve` on a non-loopback address: never serve without a key

    @classmethod
    def from_env(cls, env: dict | None = None) -> "Settings":
        env = os.environ if env is None else env
        home = Path(env.get("DESIGNERBOX_HOME") or Path.home() / ".designerbox").expanduser()
        hosts = tuple(h.strip().lower() for h in env.get("DESIGNERBOX_WEBHOOK_HOSTS", "").split(",") if h.strip())
        return cls(home=home, device=env.get("DESIGNERBOX_DEVICE", "auto"),
                   cache_mb=_whole(env, "DESIGNERBOX_CACHE_MB", 4096, "MiB"),
                   max_body_bytes=_whole(env, "DESIGNERBOX_MAX_BODY_BYTES", 32 << 20, "bytes"),
                   max_image_bytes=_whole(env, "DESIGNERBOX_MAX_IMAGE_BYTES", 16 << 20, "bytes"),
                   webhook_hosts=hosts,
                   quota_concurrent=_whole(env, "DESIGNERBOX_QUOTA_CONCURRENT", 8, "jobs"),
                   quota_per_minute=_whole(env, "DESIGNERBOX_QUOTA_PER_MINUTE", 60, "jobs"))

    def resolve_device(self) -> str:
        if self.device != "auto":
            return self.device
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"


def _whole(env, name: str, default: int, unit: str) -> int:
    try:
        value = int(env.get(name, str(default)))
    except ValueError:
        value = -1
    if value < 0:
        raise ValueError(f"{name} must be a whole number of {unit} (0 or more), not {env[name]!r}")
    return value
