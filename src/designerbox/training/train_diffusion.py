"""Train a text-to-image diffusion model in pixel space on the captioned dataset.

The recipe (one file, CPU or GPU unchanged):
  1. the dataset (training.data) at `resolution`, captions embedded once by the frozen MiniLM;
  2. a diffusers UNet2DConditionModel from a model folder's unet/config.json, conditioned on the
     pooled caption embedding (class embedding "projection", scale-shift norm) and, where the config
     has cross-attention blocks (training/grow.py), on the caption's MiniLM token states;
  3. v-prediction (Salimans & Ho 2022) on the model folder's DDPM noise table, with min-SNR-5
     loss weighting (Hang et al. 2023) and 10% caption dropout for classifier-free guidance;
  4. AdamW, warm-up then constant lr, bf16 autocast, an EMA of the weights; optionally torch.compile;
     batches seeded by the step number, so a resumed run draws what an uninterrupted one would;
  5. a resumable checkpoint (safetensors + state.json) every few minutes, and on exit the EMA
     weights exported in fp16 into the model folder.

Resumes from `run_dir` if it holds a checkpoint, else starts from the model folder's weights
(the committed built-in model), else from random initialisation.
"""

from __future__ import annotations

import json
import time
import zlib
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

from designerbox.pipelines.text_to_image import TOKENS, uses_tokens
from designerbox.samplers.discrete import alphas_cumprod
from designerbox.training import data as dataset
from designerbox.training.model_folder import update_manifest_files


@dataclass
class TrainConfig:
    data: str                      # dataset folder written by `designerbox data build`
    model_dir: str                 # model folder: unet/config.json (+ weights to start from), scheduler/
    run_dir: str                   # checkpoints and logs of this run
    minutes: float = 60.0          # wall-clock budget of this call
    max_steps: int = 0             # stop after this many optimiser steps in total (0: no limit)
    batch_size: int = 64
    lr: float = 5e-4
    warmup_steps: int = 200
    weight_decay: float = 0.01
    ema_decay: float = 0.999
    cond_drop: float = 0.1         # probability of training on the empty caption (for CFG)
    min_snr_gamma: float = 5.0
    resolution: int = 32
    device: str = "auto"           # "auto" picks cuda when present
    threads: int = 0               # CPU threads (0: torch's default)
    seed: int = 0
    checkpoint_minutes: float = 10.0
    compile: str = ""              # torch.compile mode for the network's forward and backward ("default",
                                   # "reduce-overhead": CUDA graphs); "" trains eager. Falls back to eager
                                   # when compiling fails
    log_every: int = 50
    export: bool = True            # write the EMA weights into model_dir when the budget ends


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def load_training_set(cfg: TrainConfig, device: torch.device, log=print, tokens: bool = False):
    """Images as (N, 3, R, R) in [-1, 1], pooled caption embeddings (N, V, 384), the empty caption's,
    and with `tokens` the captions' token states (caption_tokens' dict; else None).

    From a dataset folder (training.data, captions embedded here and cached) or a compact shard
    (training.shard, embeddings inside, or token ids and a cut-down encoder: what travels to a GPU machine)."""
    tok = None
    if (Path(cfg.data) / "shard.json").exists():
        from designerbox.training.shard import load_shard

        images, pooled, empty, tok = load_shard(Path(cfg.data), tokens=tokens, device=device, log=log)
    else:
        images, meta = dataset.load(Path(cfg.data))
        keep = np.array([m["split"] == "train" for m in meta])
        images, meta = images[keep], [m for m, k in zip(meta, keep) if k]
        text = pooled_captions(Path(cfg.data), meta, log)
        pooled, empty = text["pooled"], text["empty"]
        if tokens:
            tok = caption_tokens(Path(cfg.data), meta, log)
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 127.5 - 1  # (N, 3, S, S)
    if x.shape[-1] != cfg.resolution:
        x = F.interpolate(x, size=cfg.resolution, mode="area")
    log(f"training set: {len(x)} images at {cfg.resolution}px, {pooled.shape[1]} captions each")
    if tok is not None:
        tok = {k: v.to(device) for k, v in tok.items()}
    return x.to(device), pooled.to(device), empty.to(device), tok


def pooled_captions(data: Path, meta: list[dict], log=print) -> dict[str, torch.Tensor]:
    """{"pooled": (N, V, 384) MiniLM embeddings of every caption variant, "empty": (384,) of ""},
    cached in the dataset folder and keyed by a checksum of the captions (shared by every recipe)."""
    cache = Path(data) / "text_minilm_pooled.safetensors"
    captions = [c for m in meta for c in m["captions"]]
    n_var = len(meta[0]["captions"])
    key = str(zlib.crc32("\n".join(captions).encode()))
    if cache.exists() and load_file(str(cache)).get("key", torch.zeros(1)).item() == int(key) and \
            load_file(str(cache))["pooled"].shape[0] == len(meta):
        return load_file(str(cache))
    from designerbox.registry.text_encoders import load_minilm

    log(f"embedding {len(captions)} captions with all-MiniLM-L6-v2 ...")
    encoder = load_minilm("cpu")
    pooled = torch.cat([encoder(captions[i:i + 512])[1] for i in range(0, len(captions), 512)])
    text = {"pooled": pooled.view(len(meta), n_var, -1).contiguous(), "empty": encoder([""])[1][0],
            "key": torch.tensor([int(key)])}
    save_file(text, str(cache))
    return text


def caption_tokens(data: Path, meta: list[dict], log=print) -> dict[str, torch.Tensor]:
    """What a cross-attention network attends to, for every caption variant of `meta`'s rows:
    {"table": (U, L, 384) fp16 MiniLM token states of the U distinct captions (zero past each one's
    length), "lengths": (U,), "index": (N, V) rows of the table, "empty": (L, 384) and
    "empty_length": (1,) for the empty caption}; L = the longest caption (at most TOKENS).
    Cached in the dataset folder like the pooled embeddings (the shard path: training.shard)."""
    from designerbox.training.text_slice import token_table

    cache = Path(data) / "text_minilm_tokens.safetensors"
    captions = [m["captions"] for m in meta]
    key = zlib.crc32("\n".join(c for caps in captions for c in caps).encode())
    if cache.exists():
        cached = load_file(str(cache))
        if "table" in cached and cached["key"].item() == key and cached["index"].shape[0] == len(meta):
            return cached
    from designerbox.registry.text_encoders import load_minilm

    encoder = load_minilm("cpu")
    distinct: dict[str, int] = {}
    index = torch.tensor([[distinct.setdefault(c, len(distinct)) for c in caps] for caps in captions], dtype=torch.int32)
    log(f"token states of {len(distinct)} distinct captions with all-MiniLM-L6-v2 ...")
    ids = [e.ids for e in encoder.tokenizer.encode_batch(list(distinct) + [""])]
    table, lengths = token_table(encoder.bert, ids, TOKENS)
    text = {"table": table[:-1].contiguous(), "lengths": lengths[:-1].contiguous(), "index": index,
            "empty": table[-1].contiguous(), "empty_length": lengths[-1:].contiguous(), "key": torch.tensor([key])}
    save_file(text, str(cache) + ".tmp")
    Path(str(cache) + ".tmp").replace(cache)
    return text


def build_unet(model_dir: Path):
    from diffusers import UNet2DConditionModel

    config = json.loads((model_dir / "unet" / "config.json").read_text())
    return UNet2DConditionModel.from_config(config)


def save_state(path: Path, tensors: dict[str, torch.Tensor]) -> None:
    tmp = path.with_suffix(".tmp")
    save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, str(tmp))
    tmp.replace(path)


def optimizer_tensors(opt: torch.optim.AdamW, names: dict) -> dict[str, torch.Tensor]:
    out = {}
    for p, st in opt.state.items():
        for k in ("exp_avg", "exp_avg_sq", "step"):
            out[f"{names[p]}::{k}"] = st[k] if torch.is_tensor(st[k]) else torch.tensor(float(st[k]))
    return out


def load_optimizer_tensors(opt: torch.optim.AdamW, names: dict, tensors: dict) -> None:
    for p, name in names.items():
        if f"{name}::exp_avg" in tensors:
            opt.state[p] = {k: tensors[f"{name}::{k}"].to(p.device) for k in ("exp_avg", "exp_avg_sq")}
            opt.state[p]["step"] = tensors[f"{name}::step"].float().cpu()


def export_weights(model_dir: Path, ema: dict[str, torch.Tensor], meta: dict) -> None:
    """EMA weights in fp16 into model_dir/unet, written atomically, plus a training record."""
    unet = model_dir / "unet"
    save_state(unet / "diffusion_pytorch_model.safetensors", {k: v.half() for k, v in ema.items()})
    tmp = model_dir / "training.json.tmp"
    tmp.write_text(json.dumps(meta, indent=2))
    tmp.replace(model_dir / "training.json")
    update_manifest_files(model_dir)


def export_from_run(run_dir: Path, model_dir: Path) -> dict:
    """Export a run's latest checkpoint (its EMA weights) into a model folder, e.g. the built-in one."""
    run_dir, model_dir = Path(run_dir), Path(model_dir)
    state = json.loads((run_dir / "state.json").read_text())
    ema = load_file(str(run_dir / "ema.safetensors"))
    export_weights(model_dir, ema, {k: state[k] for k in ("step", "images_seen", "train_seconds", "runs")})
    return state


def train(cfg: TrainConfig, log=print) -> dict:
    t_start = time.time()
    device = pick_device(cfg.device)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    model_dir, run_dir = Path(cfg.model_dir), Path(cfg.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True

    # 1. data and text embeddings (token states too for a network with cross-attention)
    tokens = uses_tokens(json.loads((model_dir / "unet" / "config.json").read_text()))
    x_all, text_all, empty, tok = load_training_set(cfg, device, log, tokens=tokens)
    n, n_var = text_all.shape[:2]
    if tokens:
        tok_table, tok_len = tok["table"], tok["lengths"]                        # (U, L, 384), (U,)
        tok_index = tok["index"].long()                                           # (N, V)
        tok_empty, len_empty = tok["empty"].float(), int(tok["empty_length"])
        positions = torch.arange(tok_table.shape[1], device=device)

    # 2. network, EMA and optimiser; resume from the run, else from the model folder's weights
    unet = build_unet(model_dir).to(device).train()
    names = {p: k for k, p in unet.named_parameters()}
    opt = torch.optim.AdamW(unet.parameters(), lr=cfg.lr, betas=(0.9, 0.99), weight_decay=cfg.weight_decay,
                            fused=device.type == "cuda")  # one kernel for all parameters on a GPU
    state = {"step": 0, "images_seen": 0, "train_seconds": 0.0, "runs": []}
    ema = None
    weights = model_dir / "unet" / "diffusion_pytorch_model.safetensors"
    if (run_dir / "state.json").exists():
        state = json.loads((run_dir / "state.json").read_text())
        unet.load_state_dict(load_file(str(run_dir / "model.safetensors")))
        ema = {k: v.to(device).float() for k, v in load_file(str(run_dir / "ema.safetensors")).items()}
        load_optimizer_tensors(opt, names, load_file(str(run_dir / "optim.safetensors")))
        log(f"resumed {run_dir} at step {state['step']}")
    elif weights.exists():
        unet.load_state_dict({k: v.float() for k, v in load_file(str(weights)).items()})
        prior = model_dir / "training.json"
        if prior.exists():
            state.update({k: v for k, v in json.loads(prior.read_text()).items() if k in state})
        log(f"started from {weights} (step {state['step']})")
    if ema is None:
        ema = {k: v.detach().clone().float() for k, v in unet.state_dict().items()}
    params = [p for _, p in unet.named_parameters()]
    # batches, timesteps and noise drawn on the device (no host work per step), reseeded by the step
    # number: a resumed run draws what an uninterrupted one would, never the batches of the call before
    gen = torch.Generator(device=device)
    ema_params = [ema[k] for k, _ in unet.named_parameters()]  # buffers (none in this UNet) stay as loaded

    # 3. the noise table (v-prediction) and the min-SNR loss weights
    sched = json.loads((model_dir / "scheduler" / "scheduler_config.json").read_text())
    ab = alphas_cumprod(sched["beta_schedule"], sched["num_train_timesteps"],
                        sched.get("beta_start", 1e-4), sched.get("beta_end", 0.02)).float().to(device)
    snr = ab / (1 - ab)
    weight_t = snr.clamp(max=cfg.min_snr_gamma) / (snr + 1)
    n_t = len(ab)

    log(f"{sum(p.numel() for p in unet.parameters()) / 1e6:.2f}M parameters on {device}, batch {cfg.batch_size}")
    autocast = torch.autocast(device.type, dtype=torch.bfloat16)
    run = {"started": time.strftime("%Y-%m-%d %H:%M:%S"),
           "device": torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu x{torch.get_num_threads()}",
           "start_step": state["step"], "config": asdict(cfg)}
    last_ckpt, losses, seconds0 = time.time(), [], state["train_seconds"]

    def checkpoint() -> dict:
        run.update(end_step=state["step"], minutes=round((time.time() - t_start) / 60, 2))
        save_state(run_dir / "model.safetensors", unet.state_dict())
        save_state(run_dir / "ema.safetensors", ema)
        save_state(run_dir / "optim.safetensors", optimizer_tensors(opt, names))
        st = dict(state, runs=state["runs"] + [run])
        (run_dir / "state.json.tmp").write_text(json.dumps(st, indent=2))
        (run_dir / "state.json.tmp").replace(run_dir / "state.json")
        return st

    def batch(step: int) -> tuple[torch.Tensor, torch.Tensor, dict, torch.Tensor]:
        """Step `step`'s noisy images, timesteps, the network's conditioning and the v target."""
        gen.manual_seed(cfg.seed * 1_000_003 + step)
        idx = torch.randint(0, n, (cfg.batch_size,), generator=gen, device=device)
        var = torch.randint(0, n_var, (cfg.batch_size,), generator=gen, device=device)
        x0 = x_all[idx]                                                     # (B, 3, R, R)
        cond = text_all[idx, var]                                           # (B, 384)
        drop = torch.rand(cfg.batch_size, generator=gen, device=device) < cfg.cond_drop
        cond = torch.where(drop[:, None], empty[None], cond)
        t = torch.randint(0, n_t, (cfg.batch_size,), generator=gen, device=device)
        noise = torch.randn(x0.shape, generator=gen, device=device)
        a, s = ab[t].sqrt()[:, None, None, None], (1 - ab[t]).sqrt()[:, None, None, None]
        if tokens:  # the caption's token states (the empty caption's where dropped), masked past its length
            row = tok_index[idx, var]
            states = torch.where(drop[:, None, None], tok_empty[None], tok_table[row].float())
            length = torch.where(drop, len_empty, tok_len[row])
            inputs = {"encoder_hidden_states": states, "class_labels": cond,
                      "encoder_attention_mask": (positions[None] < length[:, None]).float()}  # (B, L)
        else:
            inputs = {"encoder_hidden_states": cond[:, None], "class_labels": cond}
        return a * x0 + s * noise, t, inputs, a * noise - s * x0           # q(x_t | x_0), the v target

    def step_loss(net, x_t, t, inputs, v) -> torch.Tensor:
        with autocast:
            pred = net(x_t, t, **inputs).sample
        return (weight_t[t] * (pred.float() - v).pow(2).mean(dim=(1, 2, 3))).mean()

    forward = unet
    if cfg.compile:  # compiled on one step's shapes (forward and backward), then gradients cleared
        compile_t0 = time.time()
        try:
            forward = torch.compile(unet, mode=cfg.compile, dynamic=False)
            step_loss(forward, *batch(state["step"])).backward()
            log(f"torch.compile ({cfg.compile}): {time.time() - compile_t0:.1f} s")
        except Exception as err:  # any compiler failure: train eager instead
            forward = unet
            log(f"torch.compile ({cfg.compile}) failed after {time.time() - compile_t0:.1f} s, training eager: "
                f"{type(err).__name__}: {str(err)[:300]}")
        opt.zero_grad(set_to_none=True)
        run["compile"] = {"mode": cfg.compile, "compiled": forward is not unet,
                          "seconds": round(time.time() - compile_t0, 1)}

    # 4. the loop
    with (run_dir / "log.jsonl").open("a") as log_file:
        while time.time() - t_start < cfg.minutes * 60 and not (cfg.max_steps and state["step"] >= cfg.max_steps):
            step_t0 = time.time()
            for g in opt.param_groups:
                g["lr"] = cfg.lr * min(1.0, (state["step"] + 1) / cfg.warmup_steps)
            x_t, t, inputs, v = batch(state["step"])
            loss = step_loss(forward, x_t, t, inputs, v)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(unet.parameters(), 1.0)
            opt.step()
            decay = min(cfg.ema_decay, (1 + state["step"]) / (10 + state["step"]))
            with torch.no_grad():  # one fused update of every EMA tensor (the loop's overhead on a GPU)
                torch._foreach_lerp_(ema_params, [p.detach() for p in params], 1 - decay)
            state["step"] += 1
            state["images_seen"] += cfg.batch_size
            state["train_seconds"] = seconds0 + (time.time() - t_start)
            losses.append(loss.detach())  # no host sync per step; averaged when logged
            if state["step"] % cfg.log_every == 0:
                row = {"step": state["step"], "loss": round(torch.stack(losses).mean().item(), 5),
                       "img_per_s": round(cfg.batch_size / (time.time() - step_t0), 1),
                       "minutes": round((time.time() - t_start) / 60, 2)}
                log_file.write(json.dumps(row) + "\n")
                log_file.flush()
                log(json.dumps(row))
                losses = []
            if time.time() - last_ckpt > cfg.checkpoint_minutes * 60:
                checkpoint()
                last_ckpt = time.time()

    # 5. checkpoint and export
    final = checkpoint()
    if cfg.export:
        export_weights(model_dir, ema, {k: final[k] for k in ("step", "images_seen", "train_seconds", "runs")})
        log(f"exported EMA weights at step {state['step']} to {model_dir / 'unet'}")
    return final
