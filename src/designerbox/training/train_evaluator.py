"""Train the DesignerBox evaluator: an image encoder aligned to the frozen MiniLM caption space.

The recipe (one file, CPU or GPU unchanged):
  1. the dataset's TRAIN split (training.data), images kept as uint8 at their stored size; every
     caption variant embedded once by the frozen all-MiniLM-L6-v2 (the cache train_diffusion uses);
  2. an EvalEncoder (models/evaluator.py) from constructor kwargs;
  3. per step: a batch of images, one caption variant each, a light random shift and zoom (white
     fill; no flips: emoji and text in clip art are not mirror-symmetric);
  4. CLIP's symmetric InfoNCE (Radford et al. 2021, Fig. 3) with its learnable temperature
     (logit_scale, clamped at ln 100), against the locked text embeddings; pairs with the same
     caption text (the same emoji from two sets) or the same image count as positives, so the
     targets are soft rows instead of the identity;
  5. AdamW (weight decay on conv/linear weights only), warm-up then cosine decay over decay_steps;
  6. a resumable checkpoint (safetensors + state.json) every few minutes; at the end, held-out
     retrieval measured and, with model_dir, the weights exported as a model folder.

Resumes from `run_dir` when it holds a checkpoint; the encoder config is then the run's own.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

from designerbox.models.evaluator import EvalEncoder
from designerbox.training import data as dataset
from designerbox.training.evaluate import encode, heldout_items, retrieval
from designerbox.training.model_folder import update_manifest_files
from designerbox.training.train_diffusion import (load_optimizer_tensors, optimizer_tensors, pick_device,
                                                  pooled_captions, save_state)

EXPORTED = ["model.safetensors", "config.json"]


@dataclass
class EvalTrainConfig:
    data: str                      # dataset folder written by `designerbox data build`
    run_dir: str                   # checkpoints and logs of this run
    model_dir: str = ""            # export the weights here when done ("" : no export)
    model_id: str = "dbx-eval-v0"  # the id an exported folder's manifest gets
    model: dict = field(default_factory=dict)  # EvalEncoder kwargs for a new run (its defaults when empty)
    minutes: float = 10.0          # wall-clock budget of this call
    max_steps: int = 3000          # stop after this many optimiser steps in total
    decay_steps: int = 0           # the cosine schedule's length in steps (0: max_steps)
    batch_size: int = 256
    lr: float = 2e-3
    warmup_steps: int = 100
    final_lr_ratio: float = 0.05   # the cosine decays the lr to lr * this at decay_steps
    weight_decay: float = 0.05
    shift: float = 0.06            # largest random translation, as a fraction of the side
    zoom: tuple[float, float] = (0.85, 1.1)  # range of the random zoom (> 1 enlarges the object)
    heldout_n: int = 100           # held-out captions for the retrieval figure (as `designerbox eval`)
    device: str = "auto"           # "auto" picks cuda when present
    threads: int = 0               # CPU threads (0: torch's default)
    seed: int = 0
    checkpoint_minutes: float = 5.0
    log_every: int = 50


def load_data(data: Path, heldout_n: int, log=print) -> tuple[torch.Tensor, torch.Tensor, np.ndarray, torch.Tensor]:
    """The train split as uint8 images (N, 3, S, S) with pooled embeddings of every caption variant
    (N, V, 384); the benchmark's held-out images (n, S, S, 3) with their variant-0 embeddings (n, 384)."""
    from designerbox.registry.text_encoders import shared_minilm

    images, meta = dataset.load(data)
    keep = [i for i, m in enumerate(meta) if m["split"] == "train"]
    x = torch.from_numpy(images[keep]).permute(0, 3, 1, 2).contiguous()  # (N, 3, S, S) uint8
    text = pooled_captions(data, [meta[i] for i in keep], log)["pooled"]  # (N, V, 384)
    chosen, _ = heldout_items(meta, heldout_n)
    _, held_text = shared_minilm("cpu")([meta[i]["captions"][0] for i in chosen])
    log(f"training set: {len(x)} images at {x.shape[-1]}px, {text.shape[1]} captions each; "
        f"{len(chosen)} held-out captions for retrieval")
    return x, text, images[chosen], held_text


def augment(x: torch.Tensor, shift: float, zoom: tuple[float, float], gen: torch.Generator) -> torch.Tensor:
    """Random translation and zoom of images (B, 3, H, W) in [0, 1] on white; the edges fill with white."""
    b = x.shape[0]
    scale = torch.empty(b).uniform_(zoom[0], zoom[1], generator=gen)
    offset = (torch.rand(b, 2, generator=gen) * 2 - 1) * shift * 2           # normalised coords span 2
    theta = torch.zeros(b, 2, 3)
    theta[:, 0, 0] = theta[:, 1, 1] = 1 / scale
    theta[:, :, 2] = offset
    grid = F.affine_grid(theta.to(x.device), list(x.shape), align_corners=False)
    return F.grid_sample(x - 1, grid, mode="bilinear", padding_mode="zeros", align_corners=False) + 1


def clip_loss(z: torch.Tensor, t: torch.Tensor, logit_scale: torch.Tensor, positive: torch.Tensor) -> torch.Tensor:
    """Symmetric InfoNCE: image features z (B, D) and text t (B, D) as unit vectors; positive (B, B) a
    symmetric bool matrix with a true diagonal."""
    logits = logit_scale.exp() * z @ t.T                                      # (B, B) image -> text
    target = positive.float() / positive.float().sum(1, keepdim=True)         # soft rows (identity when unique)
    return (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2


def encoder_config(kwargs: dict) -> dict:
    """Every EvalEncoder keyword argument, defaults filled in, as JSON values (what config.json holds)."""
    import inspect

    params = inspect.signature(EvalEncoder).parameters
    unknown = sorted(set(kwargs) - set(params))
    if unknown:
        raise ValueError(f"unknown EvalEncoder argument(s) {unknown}; valid: {', '.join(params)}")
    full = {k: kwargs.get(k, p.default) for k, p in params.items()}
    return json.loads(json.dumps(full))  # tuples become lists


def lr_at(cfg: EvalTrainConfig, step: int) -> float:
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    progress = min(1.0, (step - cfg.warmup_steps) / max(1, (cfg.decay_steps or cfg.max_steps) - cfg.warmup_steps))
    return cfg.lr * (cfg.final_lr_ratio + (1 - cfg.final_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))


def export_evaluator(net: EvalEncoder, config: dict, model_dir: Path, model_id: str, training: dict) -> None:
    """A model folder: config.json, fp16 model.safetensors, training.json, manifest.json with file hashes."""
    model_dir = Path(model_dir)
    model_dir.mkdir(parents=True, exist_ok=True)
    save_state(model_dir / "model.safetensors", {k: v.half() for k, v in net.state_dict().items()})
    for name, obj in (("config.json", config), ("training.json", training)):
        (model_dir / f"{name}.tmp").write_text(json.dumps(obj, indent=2) + "\n")
        (model_dir / f"{name}.tmp").replace(model_dir / name)
    manifest = model_dir / "manifest.json"
    if not manifest.exists():
        size = config["image_size"]
        manifest.write_text(json.dumps({
            "id": model_id, "name": model_id, "family": "dbx-eval", "kind": "evaluator", "licence": "MIT",
            "description": "Image encoder into the all-MiniLM-L6-v2 sentence space, trained contrastively by "
                           "DesignerBox; used by `designerbox eval` (prompt adherence, FD-dbx, originality).",
            "good_at": ["evaluation", "caption retrieval"], "native_size": [size, size],
            "text_encoder": "all-minilm-l6-v2", "files": [], "card": "MODEL_CARD.md",
        }, indent=2) + "\n")
    update_manifest_files(model_dir, EXPORTED)


def export_from_run(run_dir: Path, model_dir: Path, model_id: str = "dbx-eval-v0") -> dict:
    """Export a run's latest checkpoint into a model folder (e.g. the built-in one)."""
    state = json.loads((Path(run_dir) / "state.json").read_text())
    net = EvalEncoder(**state["model"])
    net.load_state_dict(load_file(str(Path(run_dir) / "model.safetensors")))
    keep = ("step", "images_seen", "train_seconds", "runs", "heldout_retrieval")
    export_evaluator(net, state["model"], Path(model_dir), model_id, {k: state[k] for k in keep if k in state})
    return state


def train(cfg: EvalTrainConfig, log=print) -> dict:
    t_start = time.time()
    device = pick_device(cfg.device)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    run_dir = Path(cfg.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    gen = torch.Generator(device="cpu").manual_seed(cfg.seed)

    # 1. data: train split and caption embeddings; the held-out benchmark set
    x_all, text_all, held_images, held_text = load_data(Path(cfg.data), cfg.heldout_n, log)
    x_all, text_all = x_all.to(device), text_all.to(device)
    n, n_var = text_all.shape[:2]

    # 2. network and optimiser; resume from the run when it holds a checkpoint
    state = {"step": 0, "images_seen": 0, "train_seconds": 0.0, "runs": [], "model": encoder_config(cfg.model)}
    if (run_dir / "state.json").exists():
        state = json.loads((run_dir / "state.json").read_text())
        if cfg.model and encoder_config(cfg.model) != state["model"]:
            raise ValueError(f"{run_dir} holds a run of EvalEncoder({state['model']}), not ({cfg.model}); "
                             "use another run_dir for another config")
    torch.manual_seed(cfg.seed)  # the initial weights of a new run
    net = EvalEncoder(**state["model"]).to(device).train()
    decay = [p for p in net.parameters() if p.dim() >= 2]
    no_decay = [p for p in net.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr, betas=(0.9, 0.98))
    names = {p: k for k, p in net.named_parameters()}
    if state["step"]:
        net.load_state_dict(load_file(str(run_dir / "model.safetensors")))
        tensors = load_file(str(run_dir / "optim.safetensors"))
        load_optimizer_tensors(opt, names, tensors)
        gen.set_state(tensors["generator"])
        log(f"resumed {run_dir} at step {state['step']}")
    log(f"{sum(p.numel() for p in net.parameters()) / 1e6:.2f}M parameters on {device}, batch {cfg.batch_size}")

    run = {"started": time.strftime("%Y-%m-%d %H:%M:%S"),
           "device": torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu x{torch.get_num_threads()}",
           "start_step": state["step"], "config": asdict(cfg)}
    last_ckpt, losses, seconds0 = time.time(), [], state["train_seconds"]

    def heldout() -> dict:
        net.eval()
        result = retrieval(encode(net, held_images, device), held_text)
        net.train()
        return result

    def checkpoint() -> dict:
        run.update(end_step=state["step"], minutes=round((time.time() - t_start) / 60, 2))
        save_state(run_dir / "model.safetensors", net.state_dict())
        save_state(run_dir / "optim.safetensors", optimizer_tensors(opt, names) | {"generator": gen.get_state()})
        st = dict(state, runs=state["runs"] + [run])
        (run_dir / "state.json.tmp").write_text(json.dumps(st, indent=2))
        (run_dir / "state.json.tmp").replace(run_dir / "state.json")
        return st

    # 3-5. the loop
    with (run_dir / "log.jsonl").open("a") as log_file:
        while time.time() - t_start < cfg.minutes * 60 and state["step"] < cfg.max_steps:
            step_t0 = time.time()
            idx = torch.randint(0, n, (cfg.batch_size,), generator=gen)
            var = torch.randint(0, n_var, (cfg.batch_size,), generator=gen)
            x = augment(x_all[idx.to(device)].float() / 255, cfg.shift, cfg.zoom, gen)  # (B, 3, S, S) in [0, 1]
            t = text_all[idx.to(device), var.to(device)]                               # (B, 384) unit vectors
            positive = (idx[:, None] == idx[None]).to(device) | (t @ t.T > 1 - 1e-5)   # (B, B) same image or caption
            for g in opt.param_groups:
                g["lr"] = lr_at(cfg, state["step"])
            z = net(x)                                                                 # (B, 384) unit vectors
            loss = clip_loss(z, t, net.logit_scale, positive)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            with torch.no_grad():
                net.logit_scale.clamp_(0, math.log(100))
            state["step"] += 1
            state["images_seen"] += cfg.batch_size
            state["train_seconds"] = seconds0 + (time.time() - t_start)
            losses.append(loss.item())
            if state["step"] % cfg.log_every == 0:
                row = {"step": state["step"], "loss": round(sum(losses) / len(losses), 4),
                       "temperature": round(float(1 / net.logit_scale.detach().exp()), 4), "heldout": heldout(),
                       "img_per_s": round(cfg.batch_size / (time.time() - step_t0), 1),
                       "minutes": round((time.time() - t_start) / 60, 2)}
                log_file.write(json.dumps(row) + "\n")
                log_file.flush()
                log(json.dumps(row))
                losses = []
            if time.time() - last_ckpt > cfg.checkpoint_minutes * 60:
                checkpoint()
                last_ckpt = time.time()

    # 6. checkpoint, held-out retrieval, export
    state["heldout_retrieval"] = {"captions": len(held_text), **heldout()}
    final = checkpoint()
    log(f"step {state['step']}: held-out retrieval {state['heldout_retrieval']}")
    if cfg.model_dir:
        net.eval()
        keep = ("step", "images_seen", "train_seconds", "runs", "heldout_retrieval")
        export_evaluator(net, state["model"], Path(cfg.model_dir), cfg.model_id, {k: final[k] for k in keep})
        log(f"exported step {state['step']} to {cfg.model_dir}")
    return final
