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
    job_retention_days: float | None = None  # DESIGNERBOX_JOB_RETENTION_DAYS: finished jobs and the uploads no job
                                       #   names are deleted after this many days (None, "off": kept forever)
    batch_images: int = 16             # DESIGNERBOX_BATCH_IMAGES: queued generations that share model, size, steps,
                                       #   sampler, schedule and cfg run as one network call of up to this many
                                       #   images (1: every job alone)
    # records and images (a cluster: one database and one shared folder for the API and every worker)
    database: str | None = None        # DESIGNERBOX_DATABASE: a SQLAlchemy URL for jobs, images and users
                                       #   (None: SQLite files in home: queue.sqlite, gallery/, users.sqlite)
    images: Path | None = None         # DESIGNERBOX_IMAGES: the gallery folder (None: home/gallery)
    # C2PA Content Credentials in every output PNG (store/content_credentials.py)
    c2pa: bool = True                  # DESIGNERBOX_C2PA: "on" (default) or "off"
    c2pa_cert: Path | None = None      # DESIGNERBOX_C2PA_CERT + DESIGNERBOX_C2PA_KEY: your own PEM chain and key
    c2pa_key: Path | None = None       #   (None: a local identity made on first use in home/keys/c2pa)

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
                   quota_per_minute=_whole(env, "DESIGNERBOX_QUOTA_PER_MINUTE", 60, "jobs"),
                   job_retention_days=_retention_days(env),
                   batch_images=max(1, _whole(env, "DESIGNERBOX_BATCH_IMAGES", 16, "images")),
                   database=env.get("DESIGNERBOX_DATABASE") or None,
                   images=Path(env["DESIGNERBOX_IMAGES"]).expanduser() if env.get("DESIGNERBOX_IMAGES") else None,
                   c2pa=_on_off(env, "DESIGNERBOX_C2PA"), **_c2pa_pair(env))

    @property
    def gallery_root(self) -> Path:
        return self.images or self.home / "gallery"

    def store(self, name: str) -> Path | str:
        """Where a store keeps its records: the shared database, or the SQLite file `home/name`."""
        return self.database or self.home / name

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


def _retention_days(env) -> float | None:
    value = env.get("DESIGNERBOX_JOB_RETENTION_DAYS", "").strip().lower()
    if value in ("", "off"):
        return None
    try:
        days = float(value)
    except ValueError:
        days = -1.0
    if not 0 < days < float("inf"):
        raise ValueError("DESIGNERBOX_JOB_RETENTION_DAYS must be a number of days above 0 (e.g. 30 or 0.5), or "
                         f"'off' to keep every job, not {env['DESIGNERBOX_JOB_RETENTION_DAYS']!r}")
    return days


def _on_off(env, name: str) -> bool:
    value = env.get(name, "on").strip().lower()
    if value not in ("on", "off"):
        raise ValueError(f"{name} must be 'on' or 'off', not {env[name]!r}")
    return value == "on"


def _c2pa_pair(env) -> dict:
    cert, key = env.get("DESIGNERBOX_C2PA_CERT"), env.get("DESIGNERBOX_C2PA_KEY")
    if bool(cert) != bool(key):
        raise ValueError("set both DESIGNERBOX_C2PA_CERT (a PEM certificate chain) and DESIGNERBOX_C2PA_KEY "
                         "(its PEM private key), or neither (a local identity is made in home/keys/c2pa)")
    return {"c2pa_cert": Path(cert).expanduser(), "c2pa_key": Path(key).expanduser()} if cert else {}
