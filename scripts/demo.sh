#!/usr/bin/env bash
# The main job on a built-in default: sets up .venv (idempotent), generates a synthetic room, shows it
# as a picture, reconstructs it with FF3R in one forward pass (`ns-train ff3r`, shipped weights), scores the
# held-out views (ns-eval), draws them (scripts/demo_figure.py) and renders a short video (ns-render).
#   bash scripts/demo.sh [OUT_DIR]        (default: demo; the room goes to OUT_DIR/room, the run to OUT_DIR/outputs)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup.sh
OUT=${1:-demo}
ROOM="$OUT/room"
WEIGHTS=ff3r_ns/weights/ff3r-small
export HF_HUB_OFFLINE=1 PYTHONWARNINGS="ignore::SyntaxWarning"

ROOM_ARGS=(--num-views 32 --image-size 256 --seed 0 --trajectory loop --fov 70)  # the rooms the shipped model saw
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

# 10 pose-refinement steps per held-out view in ns-eval (stored in config.yml): ns-eval then takes about 4 min
# for the 4 held-out views on two CPU cores, the default 100 about ten times that; on a GPU leave the default.
.venv/bin/ns-train ff3r --data "$ROOM" --output-dir "$OUT/outputs" --experiment-name room --timestamp demo \
  --pipeline.eval-pose-steps 10
RUN="$OUT/outputs/room/ff3r/demo"
# What it made: metrics on the held-out views, a picture of a few of them, a short video.
.venv/bin/ns-eval --load-config "$RUN/config.yml" --output-path "$RUN/eval.json"
.venv/bin/python scripts/demo_figure.py --load-config "$RUN/config.yml" --eval-json "$RUN/eval.json" \
  --output "$RUN/result.png"
.venv/bin/ns-render interpolate --load-config "$RUN/config.yml" --output-path "$RUN/interpolate.mp4" \
  --frame-rate 12 --interpolation-steps 6 --rendered-output-names rgb depth
echo
echo "Reconstruction: $RUN (config.yml, nerfstudio_models/ with the Gaussians, reconstruction.json with the"
echo "forward-pass time, Gaussian counts and the pose error of the predicted cameras)."
echo "Held-out metrics (PSNR/SSIM/LPIPS, mIoU, depth, poses): $RUN/eval.json"
echo "Picture of held-out views (photo, render, depth, segmentation, labels, relevancy): $RUN/result.png"
echo "Video between the held-out views, RGB beside depth: $RUN/interpolate.mp4"
echo "Open it in the viewer (RGB, depth, semantic PCA, text queries), then browse to the URL it prints:"
echo "  .venv/bin/ns-viewer --load-config $RUN/config.yml"
echo "A 3DGS PLY for other viewers, and per-Gaussian labels for text queries:"
echo "  .venv/bin/ns-export gaussian-splat --load-config $RUN/config.yml --output-dir $RUN/exports"
echo "  .venv/bin/python scripts/export_semantics.py --load-config $RUN/config.yml --queries 'chair;table;bed'"
