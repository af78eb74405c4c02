#!/usr/bin/env bash
# Make the working tree small enough for one device call to carry the weights of MODEL, the token
# shard and a diffusers wheel (64 MiB in all), and put everything back afterwards.
#
#   bash scripts/gpu/slim_tree.sh out dbx-base-v2 [shard/full-v2-32-tokens]   # before the call
#   bash scripts/gpu/slim_tree.sh back                                        # after it
#
# `out` moves the weight files of every other built-in model and docs/sheets/*.jpg to runs/hold/
# (git-ignored), builds .whl-unet/: the diffusers wheel without diffusers/pipelines/*/ and
# diffusers/modular_pipelines/*/ (2.3 MB instead of 6.4; training needs only the UNet), and prints
# the bytes the call will carry. Train with WHEELS=.whl-unet and carry [SHARD, ".whl-unet"].
set -euo pipefail
cd "$(dirname "$0")/../.."
HOLD=runs/hold
case "${1:-}" in
out)
  MODEL=${2:?name the model being trained, e.g. dbx-base-v2}
  SHARD=${3:-shard/full-v2-32-tokens}
  [ -d "src/designerbox/weights/$MODEL" ] || { echo "no model folder src/designerbox/weights/$MODEL" >&2; exit 2; }
  mkdir -p "$HOLD/sheets"
  for f in src/designerbox/weights/*/*.safetensors src/designerbox/weights/*/unet/*.safetensors; do
    [ -e "$f" ] || continue
    case "$f" in "src/designerbox/weights/$MODEL/"*) continue ;; esac
    mkdir -p "$HOLD/$(dirname "$f")" && mv "$f" "$HOLD/$f"
  done
  for f in docs/sheets/*.jpg; do [ -e "$f" ] && mv "$f" "$HOLD/sheets/"; done
  if [ ! -d .whl-unet ]; then
    wheel=$(ls .whl/diffusers-*.whl 2>/dev/null | head -1)
    [ -n "$wheel" ] || { echo "no diffusers wheel in .whl/ (see scripts/gpu/train_diffusion.sh)" >&2; exit 2; }
    tmp=$(mktemp -d) && (cd "$tmp" && unzip -q "$OLDPWD/$wheel" \
      && find diffusers/pipelines diffusers/modular_pipelines -mindepth 1 -maxdepth 1 -type d -exec rm -rf {} + \
      && zip -q -r -9 "$OLDPWD/.whl-unet.tmp.whl" .)
    mkdir -p .whl-unet.tmp && mv .whl-unet.tmp.whl ".whl-unet.tmp/$(basename "$wheel")"
    cp .whl/importlib_metadata-*.whl .whl-unet.tmp/ 2>/dev/null || true
    mv .whl-unet.tmp .whl-unet && rm -rf "$tmp"
    grep -qx '/.whl-unet/' .git/info/exclude || echo /.whl-unet/ >> .git/info/exclude
  fi
  # tracked files (those moved out are missing: du skips them) and untracked ones git does not ignore
  tree=$( (git ls-files -z; git ls-files -z --others --exclude-standard) | xargs -0 du -cb 2>/dev/null | tail -1 | cut -f1 || true)
  extra=$(du -cb "$SHARD" .whl-unet | tail -1 | cut -f1)
  echo "the call carries $(( (tree + extra) / 1000000 )) MB of the 67 MB allowed (tree $(( tree / 1000000 )), $SHARD and .whl-unet $(( extra / 1000000 )))"
  ;;
back)
  [ -d "$HOLD" ] || { echo "nothing held in $HOLD" >&2; exit 0; }
  (cd "$HOLD" && find src -name '*.safetensors') | while read -r f; do mv "$HOLD/$f" "$f"; done
  for f in "$HOLD"/sheets/*.jpg; do [ -e "$f" ] && mv "$f" docs/sheets/; done
  git status --short -- src/designerbox/weights docs/sheets
  ;;
*) echo "usage: $0 out MODEL [SHARD] | back" >&2; exit 2 ;;
esac
