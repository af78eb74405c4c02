"""The RDN upscaler: a tiny random-weight model from its config, then the real esrgan-medium-x4 installed
from npm (through `npm pack`, fetched once per session) and checked against the package's own JS output.
"""

import dataclasses
import json
import shutil

import numpy as np
import pytest
import torch
from PIL import Image
from pydantic import ValidationError

from designerbox.cli import main
from designerbox.models.esrgan import RDN
from designerbox.pipelines.upscale import UpscaleError, upscale
from designerbox.registry import assets
from designerbox.registry.discovery import Registry
from designerbox.registry.files import ModelFileError
from designerbox.registry.loading import load_model
from designerbox.registry.manifest import ModelManifest

MEDIUM = "esrgan-medium-x4"
needs_npm = pytest.mark.skipif(shutil.which("npm") is None, reason="installing assets needs npm on PATH")


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return RDN(scale=2, C=2, D=2, G=4, G0=8).eval()


def test_tiny_rdn_output_slice(tiny):
    x = torch.linspace(0, 255, 3 * 16 * 16).reshape(1, 3, 16, 16)
    with torch.no_grad():
        y = tiny(x)
    assert y.shape == (1, 3, 32, 32) and tiny.receptive_radius == 12
    expected = torch.tensor([[1.5047, 0.8539, 1.4821], [2.0788, 1.1869, 1.3293], [1.6760, 0.7959, 0.8026]])
    assert torch.allclose(y[0, 0, -3:, -3:], expected, atol=1e-3)


def test_receptive_radius_bounds_what_a_pixel_changes(tiny):
    x = torch.rand(1, 3, 40, 40) * 255
    x2 = x.clone()
    x2[0, :, 20, 20] += 100
    with torch.no_grad():
        rows = torch.nonzero((tiny(x) - tiny(x2)).abs().amax(dim=(0, 1, 3)))[:, 0]
    r, s = tiny.receptive_radius, tiny.scale
    assert rows.min() >= (20 - r) * s and rows.max() < (21 + r) * s
    assert rows.min() <= (20 - r + 1) * s  # and the bound is nearly tight


def test_tiles_give_the_whole_image_result(tiny):
    net = RDN(scale=2, C=2, D=2, G=4, G0=8).double().eval()  # float64: no rounding ties to blur the check
    net.load_state_dict(tiny.state_dict())
    img = Image.fromarray(np.random.default_rng(0).integers(0, 256, (50, 70, 3), dtype=np.uint8))
    whole = np.asarray(upscale(net, img, tile=512))
    for tile in (16, 23):
        assert np.array_equal(np.asarray(upscale(net, img, tile=tile)), whole)


def test_modes_and_alpha(tiny):
    rgba = Image.new("RGBA", (20, 12), (200, 30, 30, 255))
    rgba.putpixel((3, 3), (0, 0, 0, 0))
    out = upscale(tiny, rgba)
    assert out.mode == "RGBA" and out.size == (40, 24)
    assert np.asarray(out)[6:8, 6:8, 3].max() < 128 and np.asarray(out)[20, 30, 3] == 255
    assert upscale(tiny, rgba.convert("LA")).mode == "LA"
    assert upscale(tiny, rgba.convert("L")).mode == "L"
    assert upscale(tiny, rgba.convert("RGB").convert("P")).mode == "RGB"
    paletted = rgba.convert("RGB").convert("P")
    paletted.info["transparency"] = paletted.getpixel((0, 0))
    assert upscale(tiny, paletted).mode == "RGBA"


@pytest.mark.parametrize("image, tile, message", [
    ("cat.png", None, "needs a PIL image, not str; open files with PIL.Image.open"),
    (np.zeros((8, 8, 3), np.uint8), None, "needs a PIL image, not ndarray"),
    (Image.new("RGB", (4097, 4096)), None, r"would be 8194x8192 \(67 MP\); the limit is 67 MP"),
    (Image.new("RGB", (8, 8)), 8, "tile must be a whole number of pixels >= 16"),
])
def test_bad_inputs_are_named(tiny, image, tile, message):
    with pytest.raises(UpscaleError, match=message):
        upscale(tiny, image, tile=tile)


def test_manifest_needs_scale_for_upscalers_and_native_size_for_diffusion():
    base = {"id": "up-x", "name": "u", "family": "isr-rdn", "licence": "MIT"}
    with pytest.raises(ValidationError, match="an upscaler needs scale"):
        ModelManifest.model_validate(base | {"kind": "upscaler"})
    with pytest.raises(ValidationError, match="a diffusion model needs native_size"):
        ModelManifest.model_validate(base | {"kind": "diffusion"})
    assert ModelManifest.model_validate(base | {"kind": "upscaler", "scale": 4}).native_size is None


def test_unknown_asset_names_the_choices(tmp_path):
    with pytest.raises(assets.AssetError, match="installable assets: esrgan-medium-x4, esrgan-slim-x4"):
        assets.install("esrgan-huge-x4", tmp_path, tmp_path)


# --- the real model, from npm --------------------------------------------------------------------

@pytest.fixture(scope="session")
def npm_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="session")
def medium_home(tmp_path_factory, npm_cache):
    home = tmp_path_factory.mktemp("home")
    folder, report = assets.install(MEDIUM, home, npm_cache)
    return home, report


@pytest.fixture
def package(npm_cache, medium_home):
    from designerbox.training.fetch import fetch_npm

    spec = assets.ASSETS[MEDIUM]
    return fetch_npm(spec.package, spec.version, npm_cache)  # cached by the install


@needs_npm
def test_medium_reproduces_the_packages_js_output(medium_home, package):
    home, report = medium_home
    assert report["installed"] and report["parameters"] == 704_611
    m = Registry(home).get(MEDIUM)
    assert (m.kind, m.family, m.scale, m.licence) == ("upscaler", "isr-rdn", 4, "MIT")
    net = load_model(m)
    fixture = Image.open(package / "assets/fixture.png")  # RGBA, alpha 255 everywhere
    ours = upscale(net, fixture)
    theirs = np.asarray(Image.open(package / "assets/samples/4x/result.png").convert("RGB"), dtype=np.int16)
    diff = np.abs(np.asarray(ours.convert("RGB"), dtype=np.int16) - theirs)
    print(f"\nesrgan-medium-x4 vs the package's result.png: max {diff.max()}, mean {diff.mean():.2e}, "
          f"{(diff > 0).sum()} of {diff.size} values differ")
    assert ours.size == (512, 512) and diff.max() <= 1 and (diff > 0).mean() < 1e-4
    assert np.asarray(ours)[..., 3].min() == 255
    tiled = np.asarray(upscale(net, fixture, tile=48).convert("RGB"), dtype=np.int16)
    assert np.abs(tiled - np.asarray(ours.convert("RGB"), dtype=np.int16)).max() <= 1


@needs_npm
def test_install_is_idempotent_repairs_and_loads_only_whole_files(medium_home, npm_cache, tmp_path):
    home = tmp_path / "home"
    shutil.copytree(medium_home[0] / "models", home / "models")
    folder = home / "models" / MEDIUM
    before = {p.name: p.stat().st_mtime_ns for p in folder.iterdir()}
    again, report = assets.install(MEDIUM, home, npm_cache)
    assert again == folder and not report["installed"]
    assert {p.name: p.stat().st_mtime_ns for p in folder.iterdir()} == before
    (folder / "config.json").write_text(json.dumps({"scale": 4, "C": 1, "D": 9, "G": 64, "G0": 64}))
    with pytest.raises(ModelFileError, match="does not match its manifest"):
        load_model(Registry(home).get(MEDIUM))
    _, report = assets.install(MEDIUM, home, npm_cache)  # a changed install is rebuilt, then swapped in
    assert report["installed"] and load_model(Registry(home).get(MEDIUM)).scale == 4
    assert sorted(p.name for p in home.iterdir()) == ["models"]  # no temporary folders left behind


@needs_npm
def test_a_package_that_is_not_what_was_checked_is_refused(package):
    spec = assets.ASSETS[MEDIUM]
    changed = dataclasses.replace(spec, sha256=spec.sha256 | {"group1-shard1of1.bin": "0" * 64})
    with pytest.raises(assets.AssetError, match="has sha256 .* expected 000000000000.*nothing was installed"):
        assets.check_pinned(changed, package / "models/x4")
    topology = json.loads((package / spec.model_json).read_text())
    layers = topology["modelTopology"]["model_config"]["config"]["layers"]
    add = next(layer for layer in layers if layer["name"] == "FDF")
    add["inbound_nodes"][0][1][0] = "F_0"  # global residual from F_0 instead of F_m1
    with pytest.raises(assets.AssetError, match="layer graph differs"):
        assets.rdn_config(topology)


@needs_npm
def test_cli_installs_and_lists(medium_home, npm_cache, tmp_path, monkeypatch, capsys):
    home = tmp_path / "home"
    shutil.copytree(npm_cache, home / "cache")  # the CLI fetches into $DESIGNERBOX_HOME/cache
    monkeypatch.setenv("DESIGNERBOX_HOME", str(home))
    assert main(["assets", "install", MEDIUM]) == 0
    assert "installed esrgan-medium-x4 (704,611 parameters)" in capsys.readouterr().out
    assert main(["assets", "install", MEDIUM]) == 0 and "already installed" in capsys.readouterr().out
    assert main(["models", "list", "--kind", "upscaler"]) == 0
    assert "esrgan-medium-x4" in (out := capsys.readouterr().out) and "x4" in out
    assert main(["assets", "install", "nope"]) == 2 and "installable assets" in capsys.readouterr().err
