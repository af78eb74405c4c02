"""Textual-inversion embeddings for Stable Diffusion 1.x, 2.x and SDXL, used as A1111 users use them.

    a portrait, sharp focus            negative: easynegative, blurry

An embedding (Gal et al. 2022, "An Image is Worth One Word") is n learned input vectors of a text
encoder, standing for a word the vocabulary does not have. A file $DESIGNERBOX_HOME/embeddings/NAME.safetensors
(A1111's `embeddings/` folder can be linked there) is used wherever NAME appears in the prompt or the
negative prompt as a word of its own (case does not matter, as CLIP lower-cases text): NAME becomes n
new tokens whose input vectors are the embedding's, in one 75-token chunk (A1111 does not split an
embedding across chunks), and the encoder runs on them as on any word.

Formats read (pickled .pt/.bin files are never opened):
  A1111      {"emb_params": (n, D)}
  diffusers  {"<token>": (D,) or (n, D)}        (learned_embeds.safetensors)
  SDXL       {"clip_l": (n, 768), "clip_g": (n, 1280)}: one set per text encoder

How it is applied: the tokenizers stay as they are (transformers cannot take an added token out
again); prompt parsing (pipelines/prompt_weights.token_chunks) gives each vector a placeholder id past
the vocabulary, and each text encoder's token embedding is wrapped, for the request, by
`ExtendedTokenEmbedding` (the original table untouched, the new rows beside it). The next request
with other embeddings, or none, unwraps it first, so nothing leaks from one request into another.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn


class EmbeddingError(ValueError):
    """An embedding that is missing, unreadable, or does not fit the model."""


def embedding_folder(home: Path) -> Path:
    return Path(home) / "embeddings"


def available(home: Path) -> dict[str, Path]:
    """name -> file, for every NAME.safetensors in the embeddings folder."""
    folder = embedding_folder(home)
    return {p.stem: p for p in sorted(folder.glob("*.safetensors"))} if folder.is_dir() else {}


def name_pattern(names) -> re.Pattern:
    """Matches any of `names` as a word of its own ("bad-hands-5" is not "bad"), case-insensitively,
    longest first. The one tokenizing rule prompt parsing and find_in_prompts share."""
    alternatives = "|".join(re.escape(n) for n in sorted(names, key=len, reverse=True))
    return re.compile(rf"(?<![\w-])({alternatives})(?![\w-])", re.IGNORECASE)


def find_in_prompts(home: Path, texts: list[str | None]) -> list[tuple[str, Path]]:
    """The embeddings of the folder that the texts name: (name, file), in file-name order."""
    files = available(home)
    if not files:
        return []
    pattern = name_pattern(files)
    used = {m.group(1).lower() for t in texts if t for m in pattern.finditer(t)}
    return [(name, path) for name, path in files.items() if name.lower() in used]


@functools.lru_cache(maxsize=64)
def _sha256(path: str, mtime_ns: int, size: int) -> str:
    from designerbox.registry.files import file_sha256

    return file_sha256(Path(path))


def embedding_sha256(path: Path) -> str:
    """The file's sha256 (recorded with every image), hashed once per file version."""
    st = Path(path).stat()
    return _sha256(str(path), st.st_mtime_ns, st.st_size)


def read_embedding(path: Path, widths: dict[str, int]) -> dict[str, torch.Tensor]:
    """The vectors of one embedding file per text encoder of the model, {encoder: (n, D)}.

    widths  {encoder name: its input width}: {"text_encoder": 768} (SD 1.x), 1024 (SD 2.x), or
            {"text_encoder": 768, "text_encoder_2": 1280} (SDXL)"""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    name = Path(path).stem
    try:
        state = load_file(str(path))
    except (SafetensorError, OSError) as err:
        raise EmbeddingError(f"embedding {name!r} ({path}): not a readable .safetensors file ({err})") from None
    refiner = list(widths) == ["text_encoder_2"]  # the SDXL refiner: OpenCLIP bigG alone, an SDXL file's clip_g
    two = len(widths) == 2 or refiner
    if "clip_l" in state or "clip_g" in state:  # SDXL's format
        if not two:
            raise EmbeddingError(f"embedding {name!r} is made for SDXL (it holds clip_l/clip_g vectors); this "
                                 "model has one text encoder (SD 1.x/2.x): use an embedding made for it")
        missing = [k for k in (("clip_g",) if refiner else ("clip_l", "clip_g")) if k not in state]
        if missing:
            raise EmbeddingError(f"embedding {name!r}: an SDXL embedding needs clip_l and clip_g, it lacks {missing}")
        vectors = ({"text_encoder_2": state["clip_g"]} if refiner else
                   {"text_encoder": state["clip_l"], "text_encoder_2": state["clip_g"]})
    else:
        if "emb_params" in state:
            one = state["emb_params"]                      # A1111
        elif len(state) == 1:
            one = next(iter(state.values()))               # diffusers: {token: vectors}
        else:
            raise EmbeddingError(f"embedding {name!r}: not a textual-inversion file (expected emb_params, one "
                                 f"tensor, or clip_l + clip_g; it holds {sorted(state)[:4]})")
        if two:
            raise EmbeddingError(f"embedding {name!r} holds one set of vectors (width {one.shape[-1]}), made for a "
                                 "one-encoder model (SD 1.x/2.x); SDXL needs clip_l (768) and clip_g (1280) vectors")
        vectors = {"text_encoder": one}
    out = {}
    for encoder, v in vectors.items():
        v = v.reshape(-1, v.shape[-1]) if v.dim() in (1, 2) else v
        if v.dim() != 2 or v.shape[0] == 0:
            raise EmbeddingError(f"embedding {name!r}: vectors of shape {tuple(v.shape)}, expected (n, width)")
        if v.shape[-1] != widths[encoder]:
            raise EmbeddingError(
                f"embedding {name!r} has vectors of width {v.shape[-1]}, but this model's {encoder} takes width "
                f"{widths[encoder]} (768: SD 1.x, 1024: SD 2.x, 768 + 1280: SDXL); it is made for another family")
        out[encoder] = v.float()
    if len({v.shape[0] for v in out.values()}) > 1:
        raise EmbeddingError(f"embedding {name!r}: clip_l and clip_g hold different numbers of vectors "
                             f"({out['text_encoder'].shape[0]} and {out['text_encoder_2'].shape[0]})")
    return out


class ExtendedTokenEmbedding(nn.Module):
    """A text encoder's token table (V, D) with k more rows beside it: ids < V read the original table,
    ids V .. V+k-1 the new rows. The original module is kept as it is, to be put back."""

    def __init__(self, base: nn.Embedding, extra: torch.Tensor):
        super().__init__()
        self.base = base
        self.register_buffer("extra", extra.to(base.weight.device, base.weight.dtype), persistent=False)  # (k, D)

    @property
    def weight(self) -> torch.Tensor:  # what transformers reads for the dtype and device
        return self.base.weight

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        v = self.base.num_embeddings
        out = self.base(ids.clamp(max=v - 1))  # (..., D)
        new = ids >= v
        if new.any():
            out[new] = self.extra[ids[new] - v]
        return out


def _embeddings_of(encoder: nn.Module) -> nn.Module:
    """The CLIPTextEmbeddings of a CLIP text model (transformers >= 5.6 builds CLIPTextModel without its
    text_model level; CLIPTextModelWithProjection keeps it)."""
    encoder = getattr(encoder, "text_model", encoder)
    return encoder.embeddings


def text_encoders(model) -> list[str]:
    names = ["text_encoder", "text_encoder_2"] if hasattr(model, "text_encoder_2") else ["text_encoder"]
    return [n for n in names if getattr(model, n) is not None]  # the SDXL refiner has no text_encoder


@dataclass
class Applied:
    key: tuple = ()
    summary: tuple = ()


def set_embeddings(model, embeddings: list[tuple[str, Path]]) -> list[dict]:
    """Give `model` these embeddings (name, file) as new tokens, taking out those of the last call;
    returns what was applied (name, vectors). An empty list restores the plain text encoders.

    Sets model.embedding_tokens: {lower-case name: placeholder ids}, which prompt parsing reads."""
    key = tuple((str(p), p.stat().st_mtime_ns) for _, p in embeddings)
    applied: Applied = getattr(model, "_embeddings_applied", None) or Applied()
    if key == applied.key:
        return [dict(item) for item in applied.summary]
    encoders = text_encoders(model)
    for name in encoders:  # 1. back to the plain tables
        emb = _embeddings_of(getattr(model, name))
        if isinstance(emb.token_embedding, ExtendedTokenEmbedding):
            emb.token_embedding = emb.token_embedding.base
    model.embedding_tokens, model._embeddings_applied = {}, Applied()
    if not embeddings:
        return []
    # 2. every embedding's vectors, checked against the encoders' widths
    bases = {name: _embeddings_of(getattr(model, name)).token_embedding for name in encoders}
    widths = {name: base.embedding_dim for name, base in bases.items()}
    vocabulary = len(model.tokenizer or model.tokenizer_2)
    first = max([b.num_embeddings for b in bases.values()] + [vocabulary])  # past every vocabulary
    rows = {name: [] for name in encoders}
    tokens, summary = {}, []
    for name, path in embeddings:
        vectors = read_embedding(path, widths)
        n = next(iter(vectors.values())).shape[0]
        start = first + sum(len(t) for t in tokens.values())
        tokens[name.lower()] = list(range(start, start + n))
        for enc, v in vectors.items():
            rows[enc].append(v)
        summary.append({"name": name, "vectors": n})
    # 3. the new rows beside each encoder's table; ids first .. first+k-1 for every encoder
    for enc, base in bases.items():
        if base.num_embeddings < first:  # a table shorter than the vocabulary: pad to the first new id
            rows[enc].insert(0, torch.zeros(first - base.num_embeddings, base.embedding_dim))
        _embeddings_of(getattr(model, enc)).token_embedding = ExtendedTokenEmbedding(base, torch.cat(rows[enc]))
    model.embedding_tokens = tokens
    model._embeddings_applied = Applied(key, tuple(summary))
    return summary
