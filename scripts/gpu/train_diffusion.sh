#!/usr/bin/env bash
# Train the built-in diffusion model on the rented GPU machine (no package index there, 64 MiB in,
# 8 files of 16 MiB out). It resumes from the committed weights in src/designerbox/weights/.
#
# Prepare here (once per checkout):
#   .venv/bin/designerbox data build --out data/full-v1 --sources fluent3d,noto,twemoji,fluent-flat,openclipart,fluent-color,iconify,avatars            # if not built yet (~6 min)
#   .venv/bin/designerbox data shard --data data/full-v1 --out shard/full-v1-32   # 44 MB
#   echo /.whl/ >> .git/info/exclude
#   .venv/bin/pip download --no-deps --only-binary=:all: -d .whl diffusers==0.42.1 importlib_metadata==10.2.0
#   (the machine has huggingface_hub 1.33, which diffusers 0.42.1 accepts: do not carry a hub wheel)
# What travels must stay under 64 MiB: the tree (~18 MB with two models' weights) + shard + wheels
# (6.4 MB). If it does not fit, move the weights of the models not being trained out of the tree
# for the call (they are not needed there).
# Run through the device tool (a 7-minute run fits a 15-minute session with one machine start):
#   run(command="MODEL=dbx-base-v1 DATA=shard/full-v1-32 bash scripts/gpu/train_diffusion.sh 7 512 1e-3",
#       carry=["shard/full-v1-32", ".whl"], timeout_s=480)
# A network with cross-attention (training/grow.py) trains from a token shard
# (`designerbox data shard --data data/full-v2 --out shard/full-v2-32-tokens --tokens`: images, token ids
# and a 14 MB cut-down text encoder; token states are computed on the GPU at start). GROW=1 grows
# MODEL on the machine first (deterministic, so only the 7 MB v1 weights travel, not the 14 MB grown ones).
# Sizes on 2026-11-27: shard 48.4 MB + wheels 6.4 MB + the tree 11.4 MB once the other models' weights are
# moved out = 66.2 MB of the 67.1 MB (64 MiB) allowed; move docs/sheets/*.jpg out too for some room:
#   run(command="GROW=1 MODEL=dbx-base-v1 DATA=shard/full-v2-32-tokens bash scripts/gpu/train_diffusion.sh 7 2048 1e-3",
#       carry=["shard/full-v2-32-tokens", ".whl"], timeout_s=540)
# Next run (dbx-base-v2, the default since 2026-11-27, 14 MB of weights), all prepared by one script:
#   bash scripts/gpu/slim_tree.sh out dbx-base-v2     # other weights and sheets to runs/hold, .whl-unet, prints the size
#   run(command="WHEELS=.whl-unet EMA_DECAY=0.998 MODEL=dbx-base-v2 DATA=shard/full-v2-32-tokens bash scripts/gpu/train_diffusion.sh 8 2048 1e-3",
#       carry=["shard/full-v2-32-tokens", ".whl-unet"], timeout_s=585)
#   bash scripts/gpu/slim_tree.sh back
# then install files_at/model/ as a user model, `designerbox eval` it against the default and keep it only
# if better (dbx-base-v2's card has the recipe and the figures to beat).
# How it was done by hand the first time: to continue the grown network itself there is no room for the full diffusers wheel:
# carry a wheel without diffusers/pipelines/*/ and diffusers/modular_pipelines/*/ (2.3 MB instead of 6.4;
# the UNet needs none of them): unzip the wheel, delete those subfolders, zip it again under the same name.
# With it, the grown weights as src/designerbox/weights/dbx-base-v2 (untracked) and the other models'
# weights and docs/sheets/*.jpg moved out, the call carries 66.7 MB:
#   run(command="EMA_DECAY=0.998 MODEL=dbx-base-v2 DATA=shard/full-v2-32-tokens bash scripts/gpu/train_diffusion.sh 8 2048 1e-3",
#       carry=["shard/full-v2-32-tokens", ".whl"], timeout_s=585)
# Measured on one H100 (2026-11-27): the grown 7.02M-parameter network at batch 2048 trains at 6,000-6,300
# images/s (about 3 steps/s); 8 minutes = 1,500 steps, the whole call 490 s with pip, token states and
# copying. EMA_DECAY=0.998 suits runs of a few thousand steps (0.999 keeps a third of the starting weights
# after 1,000 steps).
# Then here: copy the files under files_at/model/ into src/designerbox/weights/$MODEL/ (the weights
# into unet/; training.json beside the manifest; run model_folder.update_manifest_files), run
# `designerbox eval` on old and new, and keep the new weights only if they are better.
# Measured on one H100: 7-9k images/s at batch 512 (about 15 steps/s; the 3.5M-parameter network
# is bound by kernel launches, not arithmetic: CUDA graphs or torch.compile are the next lever).
# COMPILE=default (or reduce-overhead, with CUDA graphs) compiles the network's forward and backward
# first (its seconds are in the log and training.json; the budget includes them) and trains eager if
# compiling fails; not yet measured on a GPU. The batches are seeded by the step since 2026-11-27:
# a resumed run no longer replays the batches of the run before it.
set -euo pipefail
MINUTES=${1:-8}
BATCH=${2:-256}
LR=${3:-1e-3}
MODEL=${MODEL:-dbx-base-v1}        # the weights folder under src/designerbox/weights/ to continue
DATA=${DATA:-shard/full-v1-32}     # the shard built by `designerbox data shard`
WHEELS=${WHEELS:-.whl}               # .whl-unet (scripts/gpu/slim_tree.sh) when the 64 MiB are tight
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site "$WHEELS"/*.whl
export PYTHONPATH=/tmp/site:$PWD/src PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true
rm -rf /tmp/model /tmp/run  # a fresh run from the weights in the tree
if [ "${GROW:-0}" = 1 ]; then
  python3 -c "from designerbox.training.grow import grow; grow('src/designerbox/weights/$MODEL', '/tmp/model')"
else
  cp -r "src/designerbox/weights/$MODEL" /tmp/model
fi
python3 - <<PY 2>&1 | tee "$OUT/train.log"
from designerbox.training.train_diffusion import TrainConfig, train
train(TrainConfig(data="$DATA", model_dir="/tmp/model", run_dir="/tmp/run", minutes=$MINUTES,
                  batch_size=$BATCH, lr=$LR, device="${DEVICE:-cuda}", checkpoint_minutes=1000, log_every=500,
                  compile="${COMPILE:-}", ema_decay=${EMA_DECAY:-0.999}))
PY
mkdir -p "$OUT/model"
cp /tmp/model/unet/diffusion_pytorch_model.safetensors /tmp/model/unet/config.json /tmp/model/training.json \
   /tmp/model/manifest.json "$OUT/model/"
cp /tmp/run/log.jsonl "$OUT/model/log.jsonl"
echo "done: $(python3 -c 'import json; s=json.load(open("/tmp/model/training.json")); print(s["step"], "steps,", s["images_seen"], "images seen")')"
