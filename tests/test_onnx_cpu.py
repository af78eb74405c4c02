"""The pixel models' UNet through ONNX Runtime on the CPU (pipelines/onnx_cpu.py): same images as PyTorch."""

from __future__ import annotations

import numpy as np
import pytest

import designerbox
from designerbox.pipelines.onnx_cpu import OnnxUNet
from designerbox.registry.discovery import Registry
from designerbox.registry.loading import load_pixel_diffusion
from designerbox.settings import Settings
from designerbox.studio import Studio

REQUEST = dict(model="tiny-test", seed=5, batch_size=2, steps=4, width=16, height=16, sampler="dpmpp_2m", schedule="karras", cfg_scale=5.0, save=False)


def _images(backend: str, monkeypatch) -> np.ndarray:
    monkeypatch.setenv("DESIGNERBOX_CPU_BACKEND", backend)
    images = designerbox.generate("a red apple", studio=Studio(Settings.from_env()), **REQUEST)
    return np.stack([np.asarray(i.image).astype(int) for i in images])


def test_onnx_and_torch_give_the_same_images(home, monkeypatch):
    onnx, eager = _images("onnx", monkeypatch), _images("torch", monkeypatch)
    assert onnx.shape == (2, 16, 16, 3) and onnx.std() > 1
    assert np.abs(onnx - eager).max() <= 1  # float32 reordering can flip one 8-bit step


def test_the_export_is_made_once_and_reused(home, monkeypatch):
    monkeypatch.setenv("DESIGNERBOX_CPU_BACKEND", "onnx")
    manifest = Registry(home).get("tiny-test")
    first = load_pixel_diffusion(manifest, "cpu").unet
    assert isinstance(first, OnnxUNet) and first.path.parent == home / "cache" / "onnx"
    written = first.path.stat().st_mtime_ns
    second = load_pixel_diffusion(manifest, "cpu").unet
    assert second.path == first.path and second.path.stat().st_mtime_ns == written
    assert [p.name for p in first.path.parent.iterdir()] == [first.path.name]  # no temporary file left


def test_torch_backend_keeps_the_pytorch_network(home, monkeypatch):
    monkeypatch.setenv("DESIGNERBOX_CPU_BACKEND", "torch")
    unet = load_pixel_diffusion(Registry(home).get("tiny-test"), "cpu").unet
    assert not isinstance(unet, OnnxUNet) and not (home / "cache" / "onnx").exists()


def test_an_unknown_backend_names_the_choices(home, monkeypatch):
    monkeypatch.setenv("DESIGNERBOX_CPU_BACKEND", "tensorrt")
    with pytest.raises(ValueError, match="onnx, torch"):
        load_pixel_diffusion(Registry(home).get("tiny-test"), "cpu")
