"""The frozen all-MiniLM-L6-v2 sentence encoder used to condition the built-in models.

Token states feed cross-attention (where a network has it); the mean-pooled, L2-normalised
sentence embedding (as sentence-transformers computes it) feeds the time embedding.
"""

from __future__ import annotations

import torch
from torch import nn


class MiniLMTextEncoder(nn.Module):
    """Wraps a `transformers.BertModel` and a `tokenizers.Tokenizer` built by the registry.

    bert        the 6-layer, 384-wide BERT of all-MiniLM-L6-v2 (frozen, eval mode)
    tokenizer   its WordPiece tokenizer (`tokenizer.json` from the package)
    max_length  longer prompts are truncated to this many tokens (the model was trained at 128)
    """

    hidden_size = 384

    def __init__(self, bert: nn.Module, tokenizer, max_length: int = 128):
        super().__init__()
        self.bert = bert.eval().requires_grad_(False)
        self.tokenizer = tokenizer
        self.tokenizer.no_padding()
        self.tokenizer.enable_truncation(max_length)

    @property
    def device(self) -> torch.device:
        return next(self.bert.parameters()).device

    def tokenize(self, prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        ids = [e.ids for e in self.tokenizer.encode_batch(prompts)]  # truncated, unpadded
        length = max(len(i) for i in ids)
        input_ids = torch.zeros(len(ids), length, dtype=torch.long)
        mask = torch.zeros(len(ids), length, dtype=torch.long)
        for row, i in enumerate(ids):
            input_ids[row, : len(i)] = torch.tensor(i)
            mask[row, : len(i)] = 1
        return input_ids, mask

    @torch.no_grad()
    def forward(self, prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Returns (token states (B, T, 384) with padding zeroed, pooled (B, 384) unit vectors)."""
        input_ids, mask = self.tokenize(prompts)
        input_ids, mask = input_ids.to(self.device), mask.to(self.device)
        states = self.bert(input_ids=input_ids, attention_mask=mask).last_hidden_state  # (B, T, 384)
        states = states * mask[..., None]
        pooled = states.sum(1) / mask.sum(1, keepdim=True)  # (B, 384)
        pooled = nn.functional.normalize(pooled, dim=-1)
        return states.float(), pooled.float()
