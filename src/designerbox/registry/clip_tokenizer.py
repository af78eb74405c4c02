"""The CLIP tokenizer of Stable Diffusion 1.x/2.x/SDXL text encoders, built offline.

No model hub is reachable, so the tokenizer files are written from the BPE merges that ship in the
PyPI wheel `open-clip-torch==3.3.0` (`open_clip/bpe_simple_vocab_16e6.txt.gz`, MIT). The wheel is
fetched with `pip download --no-deps` into $DESIGNERBOX_HOME/cache/pypi (sha256 pinned, and the
file's inside it); only that one file is read out of the zip: the package is never imported (it
needs torchvision).

The vocabulary is built exactly as OpenAI's CLIP `SimpleTokenizer` builds it (clip/simple_tokenizer.py):

    merges = lines[1 : 49152 - 256 - 2 + 1]                    # 48,894 merges
    vocab  = 256 byte characters (GPT-2's bytes_to_unicode order)
           + the same 256 with '</w>'
           + one token per merge (its two halves joined)
           + '<|startoftext|>', '<|endoftext|>'                 # 49,408 tokens, ids 49406 and 49407

and written as the vocab.json + merges.txt pair transformers' CLIPTokenizer reads, with
model_max_length 77 (the text encoders' position table).
"""

from __future__ import annotations

import gzip
import hashlib
import json
import shutil
import zipfile
from pathlib import Path

from designerbox.registry.files import file_sha256

PACKAGE, VERSION = "open-clip-torch", "3.3.0"
WHEEL = "open_clip_torch-3.3.0-py3-none-any.whl"
WHEEL_SHA256 = "c549ad5ed6bfc119cc11105033c0a2b9d7a2a4afeb40a58a09aab3da1a0043ce"
BPE_FILE = "open_clip/bpe_simple_vocab_16e6.txt.gz"
BPE_SHA256 = "924691ac288e54409236115652ad4aa250f48203de50a9e4722a6ecd48d6804a"
VOCAB_SIZE = 49408
MAX_LENGTH = 77
FOLDER = f"clip-tokenizer-{PACKAGE}-{VERSION}"   # under the cache: vocab.json, merges.txt, tokenizer_config.json


class TokenizerAssetError(ValueError):
    """The wheel or the merges file inside it is not the one this module was checked against."""


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible map of the 256 byte values to printable characters (as CLIP uses it)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


def read_bpe_merges(wheel: Path) -> list[str]:
    """The merges ('a b' lines) of the CLIP BPE, read out of the open-clip-torch wheel, hash-checked."""
    digest = file_sha256(wheel)
    if digest != WHEEL_SHA256:
        raise TokenizerAssetError(f"{wheel} has sha256 {digest[:12]}..., expected {WHEEL_SHA256[:12]}...: the "
                                  "download is corrupt or the package changed (delete the file to fetch it again)")
    with zipfile.ZipFile(wheel) as z:
        if BPE_FILE not in z.namelist():
            raise TokenizerAssetError(f"{wheel.name} holds no {BPE_FILE}")
        data = z.read(BPE_FILE)
    if hashlib.sha256(data).hexdigest() != BPE_SHA256:
        raise TokenizerAssetError(f"{wheel.name} {BPE_FILE} does not have its pinned sha256 {BPE_SHA256[:12]}...")
    lines = gzip.decompress(data).decode("utf-8").split("\n")
    return lines[1: 49152 - 256 - 2 + 1]


def clip_vocab(merges: list[str]) -> dict[str, int]:
    """token -> id, in OpenAI CLIP's order (see the module docstring)."""
    chars = list(bytes_to_unicode().values())
    tokens = chars + [c + "</w>" for c in chars] + ["".join(m.split()) for m in merges]
    tokens += ["<|startoftext|>", "<|endoftext|>"]
    vocab = {t: i for i, t in enumerate(tokens)}
    if len(vocab) != VOCAB_SIZE:
        raise TokenizerAssetError(f"the CLIP vocabulary built from {len(merges)} merges has {len(vocab)} tokens, "
                                  f"expected {VOCAB_SIZE}")
    return vocab


def write_tokenizer_files(folder: Path, merges: list[str], pad_token: str = "<|endoftext|>") -> Path:
    """vocab.json, merges.txt, tokenizer_config.json and special_tokens_map.json, as in the SD 1.5
    repository's tokenizer/ folder (SD 2.x pads with '!' instead: pad_token)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps(clip_vocab(merges), ensure_ascii=False))
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n", encoding="utf-8")
    special = {"bos_token": "<|startoftext|>", "eos_token": "<|endoftext|>", "unk_token": "<|endoftext|>",
               "pad_token": pad_token}
    (folder / "special_tokens_map.json").write_text(json.dumps(special, indent=2) + "\n")
    config = special | {"tokenizer_class": "CLIPTokenizer", "model_max_length": MAX_LENGTH,
                        "do_lower_case": True, "errors": "replace"}
    (folder / "tokenizer_config.json").write_text(json.dumps(config, indent=2) + "\n")
    return folder


def tokenizer_folder(cache: Path) -> Path:
    """The tokenizer files under cache/, written once from the wheel (fetched with pip when missing)."""
    from designerbox.registry.pypi_assets import fetch_pypi_wheel

    folder = Path(cache) / FOLDER
    if (folder / "tokenizer_config.json").is_file():
        return folder
    merges = read_bpe_merges(fetch_pypi_wheel(PACKAGE, VERSION, WHEEL, Path(cache)))
    tmp = folder.with_name(folder.name + ".tmp")
    write_tokenizer_files(tmp, merges)
    tmp.rename(folder)  # whole or absent
    return folder


def copy_tokenizer(cache: Path, dest: Path, pad_token: str = "<|endoftext|>") -> Path:
    """The cached tokenizer files copied into dest, padding with pad_token: SDXL's tokenizer_2 pads
    with "!" (id 0) where tokenizer pads with "<|endoftext|>", as the published SDXL folders do (the
    pad positions reach the UNet through the token states, so the padding must be the trained one)."""
    if pad_token not in ("<|endoftext|>", "!"):
        raise ValueError(f"pad_token must be '<|endoftext|>' (SD 1.x, SDXL tokenizer) or '!' (SD 2.x, SDXL "
                         f"tokenizer_2), got {pad_token!r}")
    shutil.copytree(tokenizer_folder(cache), dest)
    for name in ("special_tokens_map.json", "tokenizer_config.json"):
        data = json.loads((dest / name).read_text())
        (dest / name).write_text(json.dumps(data | {"pad_token": pad_token}, indent=2) + "\n")
    return dest


def clip_tokenizer(cache: Path, pad_token: str = "<|endoftext|>"):
    """A transformers CLIPTokenizer with the CLIP vocabulary (model_max_length 77)."""
    from transformers import CLIPTokenizer

    folder = tokenizer_folder(cache)
    return CLIPTokenizer.from_pretrained(str(folder), pad_token=pad_token, local_files_only=True)
