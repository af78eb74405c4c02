"""A1111-style prompt emphasis and prompts longer than 77 tokens, for the CLIP-conditioned models.

Syntax (the one AUTOMATIC1111's users write, so their prompts carry over unchanged):

    (word)        weight x1.1        ((word)) x1.21, and so on
    [word]        weight /1.1
    (word:1.5)    weight x1.5        (nestable: ((a:1.3)) is 1.3 x 1.1)
    \\( \\) \\[ \\]   literal brackets
    BREAK         start a new 75-token chunk here

A prompt becomes chunks of at most 75 tokens; each chunk is encoded on its own as BOS + tokens + EOS
+ padding (77 ids) and the chunks' token states are joined along the sequence axis, so a 120-token
prompt gives a (1, 154, D) context that the UNet's cross-attention reads whole. Emphasis scales each
token's states by its weight, then rescales the chunk so its mean is what it was before (A1111's
"Original" emphasis normalisation, which keeps the overall magnitude the UNet was trained on; done per
chunk of each prompt, and skipped for a chunk whose mean is about zero). The prompt and
the negative prompt are padded to the same number of chunks with empty ones (CFG batches them).

A prompt with no brackets that fits in 75 tokens gives exactly the plain encoding's states.
"""

from __future__ import annotations

import re
from typing import Callable

import torch

CHUNK = 75          # tokens per chunk, without BOS and EOS
UP, DOWN = 1.1, 1 / 1.1

_WEIGHT = re.compile(r":\s*([+-]?(?:\d+\.?\d*|\.\d+))\s*$")   # "(word:1.5)": the ":1.5" before ")"
_BREAK = re.compile(r"\s*\bBREAK\b\s*")


def parse_emphasis(text: str) -> list[tuple[str, float]]:
    """Fragments of `text` with their weights; BREAK becomes ("BREAK", -1). A bracket left open applies
    to the end of the prompt; a closing one with nothing open is kept as text; neighbouring fragments
    of equal weight are merged."""
    out: list[list] = []        # [text, weight]
    round_open: list[int] = []  # index in `out` where each open "(" began
    square_open: list[int] = []
    buf = ""

    def flush() -> None:
        nonlocal buf
        if buf:
            out.append([buf, 1.0])
        buf = ""

    def scale(start: int, factor: float) -> None:
        for frag in out[start:]:
            if frag[1] >= 0:
                frag[1] *= factor

    i = 0
    while i < len(text):
        c = text[i]
        brk = _BREAK.match(text, i) if c.isspace() or c == "B" else None
        if c == "\\" and i + 1 < len(text) and text[i + 1] in "()[]\\":
            buf += text[i + 1]
            i += 2
            continue
        if brk:
            flush()
            out.append(["BREAK", -1.0])
            i = brk.end()
            continue
        if c == "(":
            flush()
            round_open.append(len(out))
        elif c == "[":
            flush()
            square_open.append(len(out))
        elif c == ")" and round_open:
            m = _WEIGHT.search(buf)
            buf = buf[:m.start()] if m else buf
            flush()
            scale(round_open.pop(), float(m.group(1)) if m else UP)
        elif c == "]" and square_open:
            flush()
            scale(square_open.pop(), DOWN)
        else:
            buf += c
        i += 1
    flush()
    for start in round_open:
        scale(start, UP)
    for start in square_open:
        scale(start, DOWN)
    merged: list[list] = []
    for frag in out:
        if merged and merged[-1][1] == frag[1] and frag[1] >= 0:
            merged[-1][0] += frag[0]
        else:
            merged.append(frag)
    return [(t, w) for t, w in merged] or [("", 1.0)]


def _fragment_tokens(tokenizer, fragment: str, embeddings: dict[str, list[int]] | None) -> list[list[int]]:
    """A fragment's token ids in groups that must stay in one chunk: each word's tokens alone, and an
    embedding's placeholder ids together (pipelines/textual_inversion.py)."""
    if not embeddings:
        return [[tok] for tok in tokenizer(fragment, add_special_tokens=False).input_ids]
    from designerbox.pipelines.textual_inversion import name_pattern

    groups = []
    for i, part in enumerate(name_pattern(embeddings).split(fragment)):  # odd parts: embedding names
        if i % 2:
            groups.append(embeddings[part.lower()])
        elif part.strip():  # CLIP's BPE splits at spaces first: the parts tokenize as in the whole text
            groups += [[tok] for tok in tokenizer(part, add_special_tokens=False).input_ids]
    return groups


def token_chunks(tokenizer, text: str,
                 embeddings: dict[str, list[int]] | None = None) -> list[tuple[list[int], list[float]]]:
    """(ids, weights) per chunk, each 77 long: BOS, up to 75 tokens, EOS, then the tokenizer's padding.
    embeddings: {lower-case name: placeholder ids} of textual-inversion embeddings to put in for names."""
    chunks: list[tuple[list[int], list[float]]] = [([], [])]
    for fragment, weight in parse_emphasis(text):
        if weight < 0:  # BREAK
            chunks.append(([], []))
            continue
        for group in _fragment_tokens(tokenizer, fragment, embeddings):
            if chunks[-1][0] and len(chunks[-1][0]) + len(group) > CHUNK:
                chunks.append(([], []))  # an embedding is not split across chunks (unless longer than one)
            for tok in group:
                if len(chunks[-1][0]) == CHUNK:
                    chunks.append(([], []))
                chunks[-1][0].append(tok)
                chunks[-1][1].append(weight)
    bos, eos = tokenizer.bos_token_id, tokenizer.eos_token_id
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos
    full = []
    for ids, weights in chunks:
        n = CHUNK - len(ids)
        full.append(([bos, *ids, eos] + [pad] * n, [1.0, *weights, 1.0] + [1.0] * n))
    return full


def is_plain(text: str, tokenizer) -> bool:
    """No emphasis, no BREAK, and within one chunk: the plain 77-token encoding applies."""
    chunks = token_chunks(tokenizer, text)
    return len(chunks) == 1 and all(w == 1.0 for w in chunks[0][1])


def encode_weighted(tokenizer, encode: Callable[[torch.Tensor], torch.Tensor], texts: list[str],
                    device: torch.device,
                    embeddings: dict[str, list[int]] | None = None) -> tuple[torch.Tensor, list[int]]:
    """Token states (N, 77 * K, D) for `texts`, K = the most chunks any text needs (the others are
    padded with encodings of the empty prompt); also each text's first-chunk row index in the batch
    of encoded chunks (for pooled outputs). `encode(ids (M, 77)) -> states (M, 77, D)`; embeddings as
    token_chunks takes them."""
    per_text = [token_chunks(tokenizer, t, embeddings) for t in texts]
    k = max(len(c) for c in per_text)
    empty = token_chunks(tokenizer, "")[0]
    per_text = [c + [empty] * (k - len(c)) for c in per_text]
    ids = torch.tensor([ids for c in per_text for ids, _ in c], device=device)               # (N * K, 77)
    weights = torch.tensor([w for c in per_text for _, w in c], device=device)               # (N * K, 77)
    states = encode(ids)                                                                     # (N * K, 77, D)
    if not torch.all(weights == 1.0):
        before = states.float().mean(dim=(1, 2), keepdim=True)
        states = states * weights[..., None].to(states.dtype)
        after = states.float().mean(dim=(1, 2), keepdim=True)
        # a chunk whose mean is about zero has no magnitude to restore (and the ratio would explode)
        ratio = torch.where(after.abs() > 1e-4 * states.float().abs().mean(dim=(1, 2), keepdim=True), before / after, 1.0)
        states = states * ratio.to(states.dtype)
    n, d = len(texts), states.shape[-1]
    return states.reshape(n, k * states.shape[1], d), [i * k for i in range(n)]
