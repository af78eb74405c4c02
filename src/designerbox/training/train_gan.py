"""Train the text-conditioned GAN (models/gan.py) on the captioned dataset.

The recipe (one file, CPU or GPU unchanged), what lets a small GAN train from scratch on ~28k
images without pretrained features:
  1. the dataset's training split (training.data or a shard) and the frozen MiniLM caption
     embeddings, shared with the diffusion recipe (train_diffusion.load_training_set);
  2. hinge loss (Lim & Ye 2017; Miyato et al. 2018) with a projection discriminator, plus
     matching-aware negatives: a real image with another image's caption counts as fake
     (Reed et al. 2016), weighted by `mismatch`;
  3. R1 on real images (Mescheder et al. 2018, eq. 9), lazily every `r1_every` steps with the
     penalty scaled by that interval (StyleGAN2, Karras et al. 2020, Sec. 4);
  4. DiffAugment on every image the discriminator sees (training/diffaugment.py);
  5. Adam with beta1 = 0 (StyleGAN2), bf16 autocast for the networks (fp32 for R1), an EMA of the
     generator's weights: the EMA generator is what ships;
  6. a resumable checkpoint (safetensors + state.json) and a sample grid every few minutes; with
     `export` the EMA generator is written in fp16 into the model folder at every checkpoint, so
     the folder always holds the latest usable weights.

Resumes from `run_dir` if it holds a checkpoint, else starts from random weights; the model
folder is created from `generator` (Generator keyword arguments) when it has no config.json.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

from designerbox.models.gan import Discriminator, Generator
from designerbox.training.diffaugment import diff_augment
from designerbox.training.model_folder import GAN_HASHED, GAN_WEIGHTS, create_gan_model, update_manifest_files
from designerbox.training.train_diffusion import (
    load_optimizer_tensors,
    load_training_set,
    optimizer_tensors,
    pick_device,
    save_state,
)


@dataclass
class GANTrainConfig:
    data: str                      # dataset folder (`designerbox data build`) or shard (`data shard`)
    model_dir: str                 # model folder: config.json (Generator kwargs), manifest.json, model.safetensors
    run_dir: str                   # checkpoints, logs and sample grids of this run
    model_id: str = ""             # the id of a model folder created here (default: the folder's name)
    generator: dict = field(default_factory=dict)  # Generator kwargs for a model folder created here
    d_channels: tuple[int, ...] = (16, 32, 64, 128, 256)  # discriminator channels, output side down to 4x4
    d_features: int = 256
    minutes: float = 60.0          # wall-clock budget of this call
    max_steps: int = 0             # stop after this many steps in total (0: no limit)
    batch_size: int = 32
    lr_g: float = 2e-4
    lr_d: float = 2e-4
    beta1: float = 0.0
    beta2: float = 0.99
    r1_gamma: float = 0.1
    r1_every: int = 4
    mismatch: float = 0.5          # weight of the (real image, wrong caption) negatives
    augment: str = "color,translation,cutout"
    ema_decay: float = 0.999
    resolution: int = 64
    bf16: bool = True              # bf16 autocast for the networks' forward and backward passes
    device: str = "auto"
    threads: int = 0               # CPU threads (0: torch's default)
    seed: int = 0
    checkpoint_minutes: float = 5.0
    log_every: int = 20
    samples: int = 8               # captions in the sample grid written at each checkpoint (0: none)
    from_weights: bool = False     # no run checkpoint: start the generator (and its EMA) from the model
                                   # folder's weights, with a fresh discriminator (what travels to a GPU)
    export: bool = True            # write the EMA generator into model_dir at every checkpoint


def hinge_d(d_real: torch.Tensor, d_fake: torch.Tensor) -> torch.Tensor:
    return F.relu(1 - d_real).mean() + F.relu(1 + d_fake).mean()


def r1_penalty(disc: Discriminator, x: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
    """E ||grad_x D(x, y)||^2 on real images (fp32; the graph is kept for the backward pass)."""
    x = x.detach().requires_grad_(True)
    (grad,) = torch.autograd.grad(disc(x, text).sum(), x, create_graph=True)
    return grad.pow(2).sum(dim=(1, 2, 3)).mean()


def export_generator(model_dir: Path, ema: dict[str, torch.Tensor], meta: dict) -> None:
    """The EMA generator in fp16 into model_dir, written atomically, plus a training record and hashes."""
    model_dir = Path(model_dir)
    save_state(model_dir / GAN_WEIGHTS, {k: v.half() for k, v in ema.items()})
    (model_dir / GAN_WEIGHTS).chmod(0o644)  # a model file is for every user to read
    tmp = model_dir / "training.json.tmp"
    tmp.write_text(json.dumps(meta, indent=2))
    tmp.replace(model_dir / "training.json")
    update_manifest_files(model_dir, GAN_HASHED)


@torch.no_grad()
def sample_grid(gen: Generator, real: torch.Tensor, text: torch.Tensor, z: torch.Tensor, path: Path) -> None:
    """One row per caption: the real image, then the generator's images for each z. PNG."""
    from PIL import Image

    n, k = len(text), len(z)
    fake = gen(z.repeat(n, 1), text.repeat_interleave(k, 0)).float().view(n, k, 3, *real.shape[-2:])
    grid = torch.cat([real[:, None].float(), fake], dim=1)                     # (n, 1 + k, 3, R, R)
    grid = ((grid.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).cpu()
    rows = grid.permute(0, 3, 1, 4, 2).reshape(n * real.shape[-2], (1 + k) * real.shape[-1], 3)
    tmp = path.with_suffix(".tmp.png")
    Image.fromarray(rows.numpy()).save(tmp)
    tmp.replace(path)


def train(cfg: GANTrainConfig, log=print) -> dict:
    t_start = time.time()
    device = pick_device(cfg.device)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    model_dir, run_dir = Path(cfg.model_dir), Path(cfg.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    if not (model_dir / "config.json").exists():
        create_gan_model(model_dir, cfg.model_id or model_dir.name, cfg.generator, seed=cfg.seed)
        log(f"created model folder {model_dir}")
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True

    # 1. data and caption embeddings
    x_all, text_all, _, _ = load_training_set(cfg, device, log)               # (N, 3, R, R), (N, V, 384)
    n, n_var = text_all.shape[:2]

    # 2. networks, EMA generator and optimisers; resume from the run when it holds a checkpoint
    torch.manual_seed(cfg.seed)
    cl = torch.channels_last  # NHWC: ~30% faster convolutions on the CPU (oneDNN) and on tensor cores
    gen = Generator(**json.loads((model_dir / "config.json").read_text())).to(device, memory_format=cl).train()
    if gen.resolution != cfg.resolution:
        raise ValueError(f"the generator in {model_dir} draws {gen.resolution}px; the run trains at {cfg.resolution}px")
    disc = Discriminator(text_dim=gen.text_dim, channels=cfg.d_channels, features=cfg.d_features)
    disc = disc.to(device, memory_format=cl).train()
    opt_g = torch.optim.Adam(gen.parameters(), lr=cfg.lr_g, betas=(cfg.beta1, cfg.beta2))
    opt_d = torch.optim.Adam(disc.parameters(), lr=cfg.lr_d, betas=(cfg.beta1, cfg.beta2))
    names_g = {p: k for k, p in gen.named_parameters()}
    names_d = {p: k for k, p in disc.named_parameters()}
    state = {"step": 0, "images_seen": 0, "train_seconds": 0.0, "runs": []}
    if (run_dir / "state.json").exists():
        state = json.loads((run_dir / "state.json").read_text())
        gen.load_state_dict(load_file(str(run_dir / "generator.safetensors")))
        disc.load_state_dict(load_file(str(run_dir / "discriminator.safetensors")))
        ema = {k: v.to(device).float() for k, v in load_file(str(run_dir / "ema.safetensors")).items()}
        load_optimizer_tensors(opt_g, names_g, load_file(str(run_dir / "optim_g.safetensors")))
        load_optimizer_tensors(opt_d, names_d, load_file(str(run_dir / "optim_d.safetensors")))
        log(f"resumed {run_dir} at step {state['step']}")
    elif cfg.from_weights and (model_dir / GAN_WEIGHTS).exists():
        # the shipped EMA weights start both the trained generator and its EMA; the discriminator and
        # the optimisers start fresh (their states stay with the run that made them)
        weights = {k: v.float() for k, v in load_file(str(model_dir / GAN_WEIGHTS)).items()}
        gen.load_state_dict(weights)
        ema = {k: v.to(device) for k, v in weights.items()}
        prior = model_dir / "training.json"
        if prior.exists():
            state.update({k: v for k, v in json.loads(prior.read_text()).items() if k in state})
        log(f"started the generator from {model_dir / GAN_WEIGHTS} (step {state['step']}), fresh discriminator")
    else:
        ema = {k: v.detach().clone().float() for k, v in gen.state_dict().items()}
    params = [p for _, p in gen.named_parameters()]
    ema_params = [ema[k] for k, _ in gen.named_parameters()]
    ema_gen = Generator(**json.loads((model_dir / "config.json").read_text())).to(device).eval()
    # a resumed run draws other batches than its first part did
    rng = torch.Generator(device=device).manual_seed(cfg.seed * 1_000_003 + state["step"])

    # fixed captions and latents for the sample grids
    pick = torch.linspace(0, n - 1, max(cfg.samples, 1)).long().to(device)
    grid_real, grid_text = x_all[pick], text_all[pick, 0]
    grid_z = torch.randn(4, gen.z_dim, generator=torch.Generator().manual_seed(0)).to(device)

    n_g, n_d = (sum(p.numel() for p in m.parameters()) for m in (gen, disc))
    log(f"generator {n_g / 1e6:.2f}M, discriminator {n_d / 1e6:.2f}M parameters on {device}, batch {cfg.batch_size}")
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=cfg.bf16)
    run = {"started": time.strftime("%Y-%m-%d %H:%M:%S"),
           "device": torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu x{torch.get_num_threads()}",
           "start_step": state["step"], "config": asdict(cfg)}
    last_ckpt, seconds0 = time.time(), state["train_seconds"]
    sums: dict[str, list[torch.Tensor]] = {}

    def aug(x: torch.Tensor) -> torch.Tensor:
        return diff_augment(x, cfg.augment, rng).contiguous(memory_format=cl)

    def checkpoint() -> dict:
        run.update(end_step=state["step"], minutes=round((time.time() - t_start) / 60, 2))
        save_state(run_dir / "generator.safetensors", gen.state_dict())
        save_state(run_dir / "discriminator.safetensors", disc.state_dict())
        save_state(run_dir / "ema.safetensors", ema)
        save_state(run_dir / "optim_g.safetensors", optimizer_tensors(opt_g, names_g))
        save_state(run_dir / "optim_d.safetensors", optimizer_tensors(opt_d, names_d))
        st = dict(state, runs=state["runs"] + [run])
        (run_dir / "state.json.tmp").write_text(json.dumps(st, indent=2))
        (run_dir / "state.json.tmp").replace(run_dir / "state.json")
        if cfg.export:
            export_generator(model_dir, ema, {k: st[k] for k in ("step", "images_seen", "train_seconds", "runs")})
        if cfg.samples:
            ema_gen.load_state_dict(ema)
            (run_dir / "samples").mkdir(exist_ok=True)
            sample_grid(ema_gen, grid_real, grid_text, grid_z, run_dir / "samples" / f"step-{state['step']:07d}.png")
        return st

    # 3. the loop
    with (run_dir / "log.jsonl").open("a") as log_file:
        while time.time() - t_start < cfg.minutes * 60 and not (cfg.max_steps and state["step"] >= cfg.max_steps):
            step_t0 = time.time()
            b = cfg.batch_size
            idx = torch.randint(0, n, (b,), generator=rng, device=device)
            var = torch.randint(0, n_var, (b,), generator=rng, device=device)
            real, text = x_all[idx], text_all[idx, var]                        # (B, 3, R, R), (B, 384)
            wrong = text.roll(1, dims=0)                                       # another image's caption

            # 3a. discriminator: hinge on (real, caption) vs (fake, caption) and (real, wrong caption)
            z = torch.randn(b, gen.z_dim, generator=rng, device=device)
            with torch.no_grad(), autocast:
                fake = gen(z, text)
            with autocast:
                phi = disc.features(aug(torch.cat([real, fake.float()])))     # (2B, F)
                d_real, d_fake = disc.score(phi[:b], text).float(), disc.score(phi[b:], text).float()
                d_wrong = disc.score(phi[:b], wrong).float()
            loss_d = hinge_d(d_real, d_fake) + cfg.mismatch * F.relu(1 + d_wrong).mean()
            opt_d.zero_grad(set_to_none=True)
            loss_d.backward()
            if cfg.r1_gamma and state["step"] % cfg.r1_every == 0:            # lazy R1, fp32, on half the batch
                h = max(1, b // 2)
                r1 = r1_penalty(disc, aug(real[:h]), text[:h])
                (cfg.r1_gamma / 2 * cfg.r1_every * r1).backward()
                sums.setdefault("r1", []).append(r1.detach())
            opt_d.step()

            # 3b. generator: make the discriminator score its images as real for their captions
            disc.requires_grad_(False)
            z = torch.randn(b, gen.z_dim, generator=rng, device=device)
            with autocast:
                loss_g = -disc(aug(gen(z, text).float()), text).float().mean()
            opt_g.zero_grad(set_to_none=True)
            loss_g.backward()
            opt_g.step()
            disc.requires_grad_(True)

            # 3c. EMA of the generator (warm-up as in train_diffusion)
            decay = min(cfg.ema_decay, (1 + state["step"]) / (10 + state["step"]))
            with torch.no_grad():
                torch._foreach_lerp_(ema_params, [p.detach() for p in params], 1 - decay)
            state["step"] += 1
            state["images_seen"] += b
            state["train_seconds"] = seconds0 + (time.time() - t_start)
            for k, v in (("loss_d", loss_d), ("loss_g", loss_g), ("d_real", d_real.mean()),
                         ("d_fake", d_fake.mean()), ("d_wrong", d_wrong.mean())):
                sums.setdefault(k, []).append(v.detach())
            if state["step"] % cfg.log_every == 0:
                row = {"step": state["step"], **{k: float(f"{torch.stack(v).mean().item():.4g}") for k, v in sums.items()},
                       "img_per_s": round(b / (time.time() - step_t0), 1),
                       "minutes": round((time.time() - t_start) / 60, 2)}
                if not all(np.isfinite(v) for v in row.values()):
                    raise FloatingPointError(f"training diverged at step {state['step']} (the last checkpoint "
                                             f"is intact): {row}")
                log_file.write(json.dumps(row) + "\n")
                log_file.flush()
                log(json.dumps(row))
                sums = {}
            if time.time() - last_ckpt > cfg.checkpoint_minutes * 60:
                checkpoint()
                last_ckpt = time.time()

    # 4. the last checkpoint (and export)
    final = checkpoint()
    if cfg.export:
        log(f"exported the EMA generator at step {state['step']} to {model_dir / GAN_WEIGHTS}")
    return final
