import json
import pickle
import shutil

import pytest
import torch
from safetensors.torch import save_file

from designerbox.registry.cache import ModelCache
from designerbox.registry.discovery import DEFAULT_MODEL, Registry, UnknownModelError
from designerbox.registry.files import ModelFileError, read_safetensors_header
from designerbox.registry.loading import load_model
from designerbox.registry.manifest import ModelManifest


def test_builtin_and_user_models_are_discovered(home):
    reg = Registry(home)
    assert DEFAULT_MODEL in reg.models and reg.get(None).id == DEFAULT_MODEL
    assert reg.get(DEFAULT_MODEL).builtin
    tiny = reg.get("tiny-test")
    assert not tiny.builtin and tiny.kind == "diffusion" and tiny.native_size == (16, 16)
    assert tiny.short_hash == tiny.files[0].sha256[:10]


def test_unknown_model_lists_installed(home):
    with pytest.raises(UnknownModelError, match="unknown model 'sd-99'; installed models: .*tiny-test"):
        Registry(home).get("sd-99")


def test_bad_manifest_is_reported_not_fatal(home):
    bad = home / "models" / "broken"
    bad.mkdir()
    (bad / "manifest.json").write_text(json.dumps({"id": "Broken Model!", "kind": "diffusion"}))
    reg = Registry(home)
    assert "tiny-test" in reg.models and "broken" not in reg.models
    assert any("broken" in p and "id" in p for p in reg.problems)


def test_duplicate_id_is_reported(home):
    shutil.copytree(home / "models" / "tiny-test", home / "models" / "tiny-copy")
    reg = Registry(home)
    assert any("already used" in p for p in reg.problems)


def _manifest(home) -> ModelManifest:
    return Registry(home).get("tiny-test")


def test_pickle_checkpoint_is_refused_without_unpickling(home, tmp_path):
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    ckpt = tmp_path / "model.ckpt"
    ckpt.write_bytes(pickle.dumps(Evil()))
    with pytest.raises(ModelFileError, match="pickle checkpoint.*never unpickles"):
        read_safetensors_header(ckpt)
    disguised = tmp_path / "model.safetensors"
    disguised.write_bytes(pickle.dumps(Evil()))
    with pytest.raises(ModelFileError, match="pickle checkpoint"):
        read_safetensors_header(disguised)
    assert not marker.exists()


def test_truncated_and_corrupt_files_are_named(tmp_path):
    good = tmp_path / "good.safetensors"
    save_file({"w": torch.zeros(64, 64)}, str(good))
    data = good.read_bytes()
    (tmp_path / "cut.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelFileError, match="truncated"):
        read_safetensors_header(tmp_path / "cut.safetensors")
    (tmp_path / "junk.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all}")
    with pytest.raises(ModelFileError, match="corrupt safetensors header"):
        read_safetensors_header(tmp_path / "junk.safetensors")
    (tmp_path / "tiny.safetensors").write_bytes(b"abc")
    with pytest.raises(ModelFileError, match="only 3 bytes"):
        read_safetensors_header(tmp_path / "tiny.safetensors")
    assert "w" in read_safetensors_header(good)


def test_changed_weights_fail_the_hash_check_and_nothing_loads(home):
    m = _manifest(home)
    weights = m.folder / m.files[0].path
    data = bytearray(weights.read_bytes())
    data[-10] ^= 0xFF
    weights.write_bytes(bytes(data))
    cache = ModelCache()
    with pytest.raises(ModelFileError, match="does not match its manifest"):
        cache.get(("tiny-test", "cpu"), lambda: load_model(m))
    assert len(cache) == 0


def test_truncated_weights_are_refused(home):
    m = _manifest(home)
    weights = m.folder / m.files[0].path
    weights.write_bytes(weights.read_bytes()[:5000])
    with pytest.raises(ModelFileError, match="truncated"):
        load_model(m)


def test_tensors_that_do_not_match_the_config_are_refused(home):
    from designerbox.training.model_folder import update_manifest_files

    m = _manifest(home)
    cfg = json.loads((m.folder / "unet" / "config.json").read_text())
    cfg["block_out_channels"] = [16, 48]  # the file holds (16, 32) tensors
    (m.folder / "unet" / "config.json").write_text(json.dumps(cfg))
    update_manifest_files(m.folder)
    with pytest.raises(ModelFileError, match="do not match its config.*other shapes"):
        load_model(Registry(home).get("tiny-test"))


def test_missing_weights_file(home):
    m = _manifest(home)
    (m.folder / m.files[0].path).unlink()
    with pytest.raises(ModelFileError, match="model file missing"):
        load_model(m)


def test_cache_evicts_least_recently_used_within_budget():
    sizes = {"a": 40, "b": 40, "c": 40}
    cache = ModelCache(budget_bytes=100, size_of=lambda v: sizes[v])
    loads = []

    def loader(name):
        return lambda: loads.append(name) or name

    cache.get(("a",), loader("a"))
    cache.get(("b",), loader("b"))
    cache.get(("a",), loader("a"))          # hit: a becomes most recent
    cache.get(("c",), loader("c"))          # evicts b
    assert ("a",) in cache and ("c",) in cache and ("b",) not in cache
    assert loads == ["a", "b", "c"] and cache.used_bytes == 80
    with pytest.raises(MemoryError, match="more than the model cache's budget"):
        ModelCache(budget_bytes=10, size_of=lambda v: 50).get(("big",), lambda: "big")
