#!/usr/bin/env bash
# Train the text-conditioned GAN (dbx-gan) on the rented GPU machine (no package index there, 64 MiB
# in, 8 files of 16 MiB out). It resumes from the committed generator (src/designerbox/weights/$MODEL:
# config.json, model.safetensors, training.json) with a fresh discriminator and optimisers
# (GANTrainConfig.from_weights): the CPU run's discriminator and optimiser states (~60 MB) are too
# large to travel. FRESH=1 starts from random weights instead.
#
# Prepare here (once per checkout):
#   .venv/bin/designerbox data build --out data/full-v1 --sources fluent3d,noto,twemoji,fluent-flat,openclipart,fluent-color,iconify,avatars            # if not built yet (~6 min)
#   .venv/bin/designerbox data shard --data data/full-v1 --out shard/full-v1-64-12k --resolution 64 --max-images 12000
# The shard is 42.7 MiB: 12,000 of the 27,610 training images (a seeded random subset; all of them
# at 64px would be ~110 MB compressed) with the 6-bit embeddings of their 28k distinct captions.
# Nothing else is needed there: the GAN recipe imports torch, numpy, PIL and safetensors only (no
# diffusers, no wheels to carry). What travels must stay under 64 MiB: the tree (~25 MB with every
# built-in model's weights) + the shard. If it does not fit, move the weights of the models not
# being trained out of the tree for the call, or write a smaller shard (--max-images 10000).
# Run through the device tool:
#   run(command="MODEL=dbx-gan-v0 DATA=shard/full-v1-64-12k bash scripts/gpu/train_gan.sh 7 128",
#       carry=["shard/full-v1-64-12k"], timeout_s=540)
# Then here: copy files_at/model/model.safetensors and training.json into src/designerbox/weights/$MODEL/,
# run model_folder.update_manifest_files(folder, GAN_HASHED), look at files_at/model/samples-*.png,
# and keep the new weights only if they are better (designerbox sheet, designerbox eval when it takes GANs).
set -euo pipefail
MINUTES=${1:-7}
BATCH=${2:-128}
MODEL=${MODEL:-dbx-gan-v0}                 # the weights folder under src/designerbox/weights/ (its config.json)
DATA=${DATA:-shard/full-v1-64-12k}         # the 64px shard built by `designerbox data shard`
export PYTHONPATH=$PWD/src PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true
rm -rf /tmp/model /tmp/run && mkdir -p /tmp/model
cp "src/designerbox/weights/$MODEL/config.json" "src/designerbox/weights/$MODEL/manifest.json" /tmp/model/
if [ "${FRESH:-0}" != 1 ]; then
    cp "src/designerbox/weights/$MODEL/model.safetensors" "src/designerbox/weights/$MODEL/training.json" /tmp/model/
fi
python3 - <<PY 2>&1 | tee "$OUT/train.log"
from designerbox.training.train_gan import GANTrainConfig, train
train(GANTrainConfig(data="$DATA", model_dir="/tmp/model", run_dir="/tmp/run", minutes=$MINUTES, batch_size=$BATCH,
                     d_channels=(16, 32, 64, 128, 256), device="${DEVICE:-cuda}", checkpoint_minutes=2,
                     log_every=500, samples=8, from_weights="${FRESH:-0}" != "1"))
PY
mkdir -p "$OUT/model"
cp /tmp/model/model.safetensors /tmp/model/training.json /tmp/model/manifest.json /tmp/run/log.jsonl "$OUT/model/"
last=$(ls /tmp/run/samples/*.png | tail -1) && cp "$last" "$OUT/model/samples-$(basename "$last")"
echo "done: $(python3 -c 'import json; s=json.load(open("/tmp/model/training.json")); print(s["step"], "steps,", s["images_seen"], "images seen")')"
