#!/usr/bin/env bash
# Download the public CompVis LDM checkpoints used by configs/model/{ffhq256ldm,imagenet256ldm}.yaml.
# Usage: bash scripts/download_checkpoints.sh [ffhq|imagenet|all]   (default: all; safe to re-run)
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
which="${1:-all}"

fetch() {  # fetch URL DEST: download to DEST.part, then rename, so an interrupted run never leaves a bad DEST
    local url="$1" dest="$2"
    if command -v wget >/dev/null 2>&1; then
        wget -c -O "$dest.part" "$url"
    elif command -v curl >/dev/null 2>&1; then
        curl -fL -C - -o "$dest.part" "$url"
    else
        echo "error: need wget or curl" >&2
        exit 1
    fi
    mv "$dest.part" "$dest"
}

get_ffhq() {
    local dir=checkpoints/ffhq256ldm
    if [[ -s "$dir/model.ckpt" ]]; then echo "ffhq: $dir/model.ckpt already present"; return; fi
    mkdir -p "$dir"
    [[ -s "$dir/ffhq.zip" ]] || fetch https://ommer-lab.com/files/latent-diffusion/ffhq.zip "$dir/ffhq.zip"
    command -v unzip >/dev/null 2>&1 || { echo "error: need unzip" >&2; exit 1; }
    unzip -o "$dir/ffhq.zip" -d "$dir"
    [[ -s "$dir/model.ckpt" ]] || { echo "error: $dir/ffhq.zip did not contain model.ckpt" >&2; exit 1; }
    rm -f "$dir/ffhq.zip"
    echo "ffhq: $dir/model.ckpt"
}

get_imagenet() {
    local dir=checkpoints/imagenet256ldm
    if [[ -s "$dir/model.ckpt" ]]; then echo "imagenet: $dir/model.ckpt already present"; return; fi
    mkdir -p "$dir"
    fetch https://ommer-lab.com/files/latent-diffusion/nitro/cin/model.ckpt "$dir/model.ckpt"
    echo "imagenet: $dir/model.ckpt"
}

case "$which" in
    ffhq) get_ffhq ;;
    imagenet) get_imagenet ;;
    all) get_ffhq; get_imagenet ;;
    *) echo "usage: $0 [ffhq|imagenet|all]" >&2; exit 2 ;;
esac
