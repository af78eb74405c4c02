#!/usr/bin/env bash
# Train the built-in diffusion model on the rented GPU machine (no package index there, 64 MiB in,
# 8 files of 16 MiB out). It resumes from the committed weights in src/designerbox/weights/.
#
# Prepare here (once per checkout):
#   .venv/bin/designerbox data build --out data/emoji-v0            # if not built yet
#   .venv/bin/designerbox data shard --data data/emoji-v0 --out shard/emoji-v0-32
#   echo /.whl/ >> .git/info/exclude
#   .venv/bin/pip download --no-deps --only-binary=:all: -d .whl diffusers==0.42.1 importlib_metadata
# Run through the device tool (one call; 8 minutes of training leaves room inside a 10-minute call):
#   run(command="bash scripts/gpu/train_diffusion.sh 8", carry=["shard/emoji-v0-32", ".whl"], timeout_s=600)
# Then here: copy the files under files_at/model/ into src/designerbox/weights/dbx-emoji-v0/ (weights
# into unet/), run `designerbox eval` on old and new, and keep the new weights only if they are better.
set -euo pipefail
MINUTES=${1:-8}
BATCH=${2:-256}
LR=${3:-1e-3}
MODEL=${MODEL:-dbx-emoji-v0}        # the weights folder under src/designerbox/weights/ to continue
DATA=${DATA:-shard/emoji-v0-32}     # the shard built by `designerbox data shard`
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
export PYTHONPATH=/tmp/site:$PWD/src PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true
rm -rf /tmp/model && cp -r "src/designerbox/weights/$MODEL" /tmp/model
python3 - <<PY 2>&1 | tee "$OUT/train.log"
from designerbox.training.train_diffusion import TrainConfig, train
train(TrainConfig(data="$DATA", model_dir="/tmp/model", run_dir="/tmp/run", minutes=$MINUTES,
                  batch_size=$BATCH, lr=$LR, device="${DEVICE:-cuda}", checkpoint_minutes=1000, log_every=500))
PY
mkdir -p "$OUT/model"
cp /tmp/model/unet/diffusion_pytorch_model.safetensors /tmp/model/training.json /tmp/model/manifest.json "$OUT/model/"
cp /tmp/run/log.jsonl "$OUT/model/log.jsonl"
echo "done: $(python3 -c 'import json; s=json.load(open("/tmp/model/training.json")); print(s["step"], "steps,", s["images_seen"], "images seen")')"
