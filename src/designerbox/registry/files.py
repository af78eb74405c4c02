"""Checks on model files before anything is loaded: safetensors only, whole, with the recorded hash.

A pickle checkpoint (.ckpt, .pt, .pth, .bin) is refused and never opened by the unpickler:
unpickling runs code chosen by whoever wrote the file.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

PICKLE_SUFFIXES = (".ckpt", ".pt", ".pth", ".bin", ".pkl", ".pickle")
MAX_HEADER = 100 * 2**20


class ModelFileError(ValueError):
    """A model file is missing, unsafe, corrupt, truncated or does not match its manifest/config."""


def refuse_pickle(path: Path) -> None:
    msg = (f"{path.name} is a pickle checkpoint; DesignerBox never unpickles model files, because "
           "loading a pickle runs code chosen by whoever made the file. Convert it to safetensors on a "
           "machine you trust (for example with safetensors.torch.save_file(torch.load(f, weights_only=True)"
           "['state_dict'], 'model.safetensors')) and use the .safetensors file.")
    if path.suffix.lower() in PICKLE_SUFFIXES:
        raise ModelFileError(msg)
    with path.open("rb") as f:
        magic = f.read(2)
    if magic[:1] == b"\x80" or magic == b"PK":  # pickle protocol 2+ / torch's zip container
        raise ModelFileError(msg)


def read_safetensors_header(path: Path) -> dict:
    """Parse and check a safetensors header; raises ModelFileError naming what is wrong."""
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"model file not found: {path}")
    refuse_pickle(path)
    size = path.stat().st_size
    with path.open("rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise ModelFileError(f"{path} is not a safetensors file: only {size} bytes")
        n = int.from_bytes(head, "little")
        if n > min(MAX_HEADER, size - 8):
            raise ModelFileError(f"{path} is not a valid safetensors file (header length {n} for a {size}-byte file): "
                                 "corrupt, truncated or another format")
        try:
            header = json.loads(f.read(n))
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            raise ModelFileError(f"{path} has a corrupt safetensors header: {err}") from None
    if not isinstance(header, dict):
        raise ModelFileError(f"{path} has a corrupt safetensors header")
    ends = [v["data_offsets"][1] for k, v in header.items() if k != "__metadata__"]
    expected = 8 + n + max(ends, default=0)
    if expected > size:
        raise ModelFileError(f"{path} is truncated: its header describes {expected} bytes, the file has {size}")
    return header


def file_sha256(path: Path, chunk: int = 2**20) -> str:
    h = hashlib.sha256()
    with Path(path).open("rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def verify_files(folder: Path, files) -> None:
    """Every manifest file exists, is a whole safetensors file (when it is one) and has its sha256."""
    for entry in files:
        path = folder / entry.path
        if not path.is_file():
            raise ModelFileError(f"model file missing: {path}")
        if path.suffix == ".safetensors":
            read_safetensors_header(path)
        elif path.suffix.lower() in PICKLE_SUFFIXES:
            refuse_pickle(path)
        digest = file_sha256(path)
        if digest != entry.sha256:
            raise ModelFileError(f"{path} does not match its manifest (sha256 {digest[:12]}..., expected "
                                 f"{entry.sha256[:12]}...): the file was changed or is corrupt")
