#!/usr/bin/env bash
# Download DAPS's 100-image test sets (the images its published tables were computed on) to the folders that
# configs/data/test-{ffhq,imagenet}.yaml read: dataset/test-ffhq and dataset/test-imagenet.
# Usage: bash scripts/download_test_sets.sh [ffhq|imagenet|all]   (default: all; safe to re-run)
# The files live on Google Drive (links from DAPS's README); gdown fetches them: pip install gdown
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
which="${1:-all}"
PYTHON="${PYTHON:-python}"
declare -A DRIVE_ID=([ffhq]=1IzbnLWPpuIw6Z2E4IKrRByh6ihDE5QLO [imagenet]=1pqVO-LYrRRL4bVxUidvy-Eb22edpuFCs)

get() {  # get ffhq|imagenet
    local set="test-$1" zip="dataset/test-$1.zip"
    local count
    count=$(find "dataset/$set" -maxdepth 1 -type f 2>/dev/null | wc -l)
    if [[ $count -ge 100 ]]; then echo "$set: dataset/$set already holds $count images"; return; fi
    "$PYTHON" -c "import gdown" 2>/dev/null || { echo "error: gdown is missing: pip install gdown" >&2; exit 1; }
    command -v unzip >/dev/null 2>&1 || { echo "error: need unzip" >&2; exit 1; }
    mkdir -p dataset
    # to a .part name first, so an interrupted download never looks finished
    "$PYTHON" -m gdown "https://drive.google.com/uc?id=${DRIVE_ID[$1]}" -O "$zip.part"
    mv "$zip.part" "$zip"
    unzip -q -o "$zip" -d dataset
    rm -f "$zip"
    count=$(find "dataset/$set" -maxdepth 1 -type f 2>/dev/null | wc -l)
    [[ $count -eq 100 ]] || { echo "error: dataset/$set holds $count files after unzipping, not 100" >&2; exit 1; }
    echo "$set: dataset/$set (100 images)"
}

case "$which" in
    ffhq|imagenet) get "$which" ;;
    all) get ffhq; get imagenet ;;
    *) echo "usage: $0 [ffhq|imagenet|all]" >&2; exit 2 ;;
esac
