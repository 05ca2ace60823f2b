#!/usr/bin/env bash
# The main job on a built-in default: sets up .venv (idempotent), generates a synthetic room and
# shows what was made (RGB, depth, labels, teacher-feature PCA) as a picture.
#   bash scripts/demo.sh [OUT_DIR]        (default: demo/room)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup.sh
OUT=${1:-demo/room}
export HF_HUB_OFFLINE=1 PYTHONWARNINGS="ignore::SyntaxWarning"
.venv/bin/python scripts/make_synthetic.py "$OUT" --num-views 32 --image-size 256 --seed 0 --overwrite
.venv/bin/python scripts/show_synthetic.py "$OUT" --out "$OUT/overview.png"
echo
echo "Generated a synthetic room in $OUT (nerfstudio layout: transforms.json, images/, depth/, labels/, features/)."
echo "Picture of it: $OUT/overview.png"
