#!/usr/bin/env bash
# Issue 5, item 8: DesignerBox's Stable Diffusion path against plain diffusers, fp16, on the rented GPU
# machine (no package index there; it has torch, transformers, safetensors and huggingface_hub 1.33).
# SD 1.5 (512x512) and SDXL base (1024x1024) architectures with random weights, 25 steps, cfg 7,
# DPM++ 2M Karras on both sides: seconds per image at batch 1, images per second at batch 8.
# What is measured and how: the docstring of bench/gpu_sd.py.
#
# Prepare here (once per checkout; .whl/ may already hold both wheels):
#   echo /.whl/ >> .git/info/exclude
#   .venv/bin/pip download --no-deps --only-binary=:all: -d .whl diffusers==0.42.1 importlib_metadata==10.2.0
#   .venv/bin/python bench/gpu_sd.py --device cpu --tiny      # the same code on tiny configs, ~15 s
# Run through the device tool (an estimated 4-5 minutes on one H100; the script stops starting new
# measurements after BUDGET_S seconds, default 420, and notes what it skipped):
#   run(command="bash scripts/gpu/bench_sd.sh", carry=[".whl"], timeout_s=540)
# What comes back: files_at/gpu_sd.json (every run's seconds, medians, ratios, versions, notes) and
# files_at/gpu_sd.log; the table is also at the end of output_tail.
# Extra arguments go to the script, e.g. `bash scripts/gpu/bench_sd.sh --families sdxl --repeats 3`.
set -euo pipefail
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
export PYTHONPATH=/tmp/site:$PWD/src PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"; export OUT
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
python3 bench/gpu_sd.py --device cuda --budget-s "${BUDGET_S:-420}" "$@" 2>&1 | tee "$OUT/gpu_sd.log"
