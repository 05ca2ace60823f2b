#!/usr/bin/env bash
# The main job on a built-in default: sets up .venv (idempotent), generates a synthetic room, shows it
# as a picture, and reconstructs it with FF3R in one forward pass (`ns-train ff3r`, shipped weights).
#   bash scripts/demo.sh [OUT_DIR]        (default: demo; the room goes to OUT_DIR/room, the run to OUT_DIR/outputs)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup.sh
OUT=${1:-demo}
ROOM="$OUT/room"
WEIGHTS=ff3r_ns/weights/ff3r-small
export HF_HUB_OFFLINE=1 PYTHONWARNINGS="ignore::SyntaxWarning"

ROOM_ARGS=(--num-views 32 --image-size 256 --seed 0)
.venv/bin/python scripts/make_synthetic.py "$ROOM" "${ROOM_ARGS[@]}"
.venv/bin/python scripts/show_synthetic.py "$ROOM/overview.png" "${ROOM_ARGS[@]}"  # the same room, drawn
echo
echo "Generated a synthetic room in $ROOM (nerfstudio layout: transforms.json, images/, depth/, labels/, features/)."
echo "Picture of it: $ROOM/overview.png"
echo

if [ ! -f "$WEIGHTS/model.safetensors" ]; then
  echo "The shipped FF3R checkpoint is missing: $WEIGHTS/model.safetensors is not in this checkout yet."
  echo "The demo stops here. With a checkpoint of your own (a folder written by ns-train ff3r-train), run:"
  echo "  .venv/bin/ns-train ff3r --data $ROOM --pipeline.weights CHECKPOINT_FOLDER"
  exit 1
fi

.venv/bin/ns-train ff3r --data "$ROOM" --output-dir "$OUT/outputs" --experiment-name room --timestamp demo
RUN="$OUT/outputs/room/ff3r/demo"
echo
echo "Reconstruction: $RUN (config.yml, nerfstudio_models/ with the Gaussians, reconstruction.json with the"
echo "forward-pass time, Gaussian counts and the pose error of the predicted cameras)."
echo "Open it in the viewer (RGB, depth, semantic PCA, text queries), then browse to the URL it prints:"
echo "  .venv/bin/ns-viewer --load-config $RUN/config.yml"
echo "Metrics on the held-out views (PSNR/SSIM/LPIPS, mIoU, depth, poses):"
echo "  .venv/bin/ns-eval --load-config $RUN/config.yml --output-path $RUN/eval.json"
echo "A 3DGS PLY for other viewers, and per-Gaussian labels for text queries:"
echo "  .venv/bin/ns-export gaussian-splat --load-config $RUN/config.yml --output-dir $RUN/exports"
echo "  .venv/bin/python scripts/export_semantics.py --load-config $RUN/config.yml --queries 'chair;table;bed'"
