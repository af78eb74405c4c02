"""The frozen MiniLM text encoder cut down to travel with a shard, and the captions' token states.

A network with cross-attention needs each caption's token states (L x 384 values), too many to ship
(76k captions x 39 tokens x 384: 2.3 GB in fp16). A GPU machine can compute them itself in seconds
if the encoder travels, but the encoder's package is 91 MB. What travels instead (`slice_encoder`):

  - the word-embedding rows of the token ids the captions use (a few thousand of 30,522),
  - every weight matrix in int8 with one fp16 scale per 64 values of a row; biases, LayerNorms, position
    and token-type embeddings in fp16,

about 14 MB, and the captions as token ids. `load_slice` rebuilds a transformers BertModel from it.
On 200 captions of data/full-v2 its token states were 1.8% (mean; 3.5% at most) from the fp32
encoder's in relative L2, its pooled embeddings at cosine >= 0.9997 (tests/test_grow.py checks
a tiny dataset's).

`token_table(bert, ids)` is shared by the dataset-folder path (full encoder) and the shard path
(sliced encoder): the token states of every distinct caption, zero past its length.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

WIDTH = 384


GROUP = 64  # values sharing one int8 scale


def quantize_rows(w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric int8 per group of GROUP values along each row: w ~ q * scale (R, C/GROUP, 1)."""
    g = w.reshape(w.shape[0], -1, GROUP)                                     # (R, C/GROUP, GROUP)
    scale = g.abs().amax(dim=-1, keepdim=True).clamp(min=1e-8) / 127
    return (g / scale).round().clamp(-127, 127).to(torch.int8).reshape(w.shape), scale.half()


def dequantize_rows(q: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return (q.float().reshape(q.shape[0], -1, GROUP) * scale.float()).reshape(q.shape)


def slice_encoder(bert: torch.nn.Module, used_ids: torch.Tensor) -> dict[str, torch.Tensor]:
    """Tensors of the cut-down encoder: `used_ids` (sorted int64 token ids) keep their embedding rows."""
    out = {"used_ids": used_ids.to(torch.int32)}
    for name, t in bert.state_dict().items():
        if name == "embeddings.word_embeddings.weight":
            t = t[used_ids]
        if t.dim() == 2 and name != "embeddings.token_type_embeddings.weight" and "position" not in name:
            out[name + "::q"], out[name + "::scale"] = quantize_rows(t.float())
        elif t.is_floating_point():
            out[name] = t.half()
    return out


def load_slice(tensors: dict[str, torch.Tensor], config: dict, device: str | torch.device = "cpu") -> torch.nn.Module:
    """A transformers BertModel from `slice_encoder`'s tensors (unused vocabulary rows left at zero)."""
    from transformers import BertConfig, BertModel

    bert = BertModel(BertConfig(**config), add_pooling_layer=False)
    state = bert.state_dict()
    for name in state:
        if name + "::q" in tensors:
            w = dequantize_rows(tensors[name + "::q"], tensors[name + "::scale"])
        elif name in tensors:
            w = tensors[name].float()
        else:
            continue  # position_ids buffer
        if name == "embeddings.word_embeddings.weight":
            full = torch.zeros_like(state[name])
            full[tensors["used_ids"].long()] = w
            w = full
        state[name] = w
    bert.load_state_dict(state)
    return bert.to(device).eval().requires_grad_(False)


def encoder_config(bert: torch.nn.Module) -> dict:
    keys = ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
            "hidden_act", "max_position_embeddings", "type_vocab_size", "layer_norm_eps", "pad_token_id")
    return {k: getattr(bert.config, k) for k in keys}


@torch.no_grad()
def token_table(bert: torch.nn.Module, ids: list[list[int]], max_tokens: int, batch: int = 1024
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """Token states of each id sequence (U, L, 384) fp16, zero past its length, and the lengths (U,);
    L = the longest sequence (cut to max_tokens). Pooled embeddings follow from them (`pooled`)."""
    device = next(bert.parameters()).device
    lengths = torch.tensor([min(len(i), max_tokens) for i in ids])
    length = int(lengths.max())
    table = torch.zeros(len(ids), length, WIDTH, dtype=torch.float16, device=device)
    order = torch.argsort(lengths, descending=True)  # similar lengths together: less padding per batch
    for start in range(0, len(ids), batch):
        rows = order[start:start + batch]
        n = int(lengths[rows].max())
        input_ids = torch.zeros(len(rows), n, dtype=torch.long)
        for r, row in enumerate(rows.tolist()):
            input_ids[r, :lengths[row]] = torch.tensor(ids[row][:max_tokens])
        mask = (torch.arange(n)[None] < lengths[rows][:, None]).long()
        states = bert(input_ids=input_ids.to(device), attention_mask=mask.to(device)).last_hidden_state
        table[rows.to(device), :n] = (states * mask.to(device)[..., None]).half()
    return table, lengths.to(device)


def pooled(table: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """The sentence embeddings (U, 384) as MiniLMTextEncoder computes them: masked mean, L2-normalised."""
    return F.normalize(table.float().sum(1) / lengths[:, None].float(), dim=-1)
