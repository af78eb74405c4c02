"""bench/gpu_sd.py on tiny configs on the CPU: the GPU benchmark's code paths (both families, the
plain and the optimised sides) stay runnable between GPU sessions, and the sides agree."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_gpu_benchmark_runs_on_tiny_models(tmp_path, monkeypatch):
    monkeypatch.setenv("BENCH_COMPILE", "0")  # compile is covered by tests/test_stable_diffusion.py
    spec = importlib.util.spec_from_file_location("gpu_sd", ROOT / "bench" / "gpu_sd.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    out = tmp_path / "gpu_sd.json"
    assert bench.main(["--device", "cpu", "--tiny", "--batches", "1", "--repeats", "1", "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    assert [r["family"] for r in report["results"]] == ["sd15", "sdxl"]
    for row in report["results"]:
        assert set(row["times_s"]) == {"diffusers", "ours", "ours+cl+qkv"}
        assert row["max_pixel_diff_vs_ours"]["ours+cl+qkv"] < 1e-3
        assert row["unet_tflop_per_call"] > 0 and row["ours"]["s_per_image"] > 0
    assert not [n for n in report["notes"] if "non-finite" in n]
