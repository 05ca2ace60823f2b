#!/usr/bin/env bash
# Geometry-only pose arms side by side on one GPU, in one device call:
#
#   [INIT=CHECKPOINT] [STUDY_ARGS="..."] bash scripts/pose_study_gpu.sh OUT_DIR SECONDS NAME=ARM[@POINTS_WEIGHT]...
#
# e.g.  bash scripts/pose_study_gpu.sh $OUT/study 300 pose=pose pts1=pose+points@1 pts10=pose+points@10
#
# Renders the rooms once with every core (in $ROOMS, default /tmp/pose-rooms: deterministic, so a later call renders the same
# ones), then runs one scripts/pose_study.py process per arm with --time-limit SECONDS and --save; STUDY_ARGS are
# extra pose_study.py arguments shared by every arm (they come after the defaults below and override them), INIT
# starts every arm from saved weights (a continuation). What comes back (a device call returns at most 8 files of
# 16 MiB): OUT_DIR/results.tar.gz (each arm's pose_study.json, .png and log) and the arm with the lowest final
# held-out L_p as float16 in pieces: `cat OUT_DIR/best.safetensors.part* > model.safetensors`, beside
# OUT_DIR/config.json and OUT_DIR/best.txt (which arm).
set -u
cd "$(dirname "${BASH_SOURCE[0]}")/.."
if [ -d .whl ] && ! python3 -c "import open_clip, lpips" 2>/dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/ff3r-site .whl/*.whl
    export PYTHONPATH="/tmp/ff3r-site${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
out=${1:?usage: pose_study_gpu.sh OUT_DIR SECONDS NAME=ARM[@POINTS_WEIGHT]...}
seconds=${2:?usage: pose_study_gpu.sh OUT_DIR SECONDS NAME=ARM[@POINTS_WEIGHT]...}
shift 2
[ $# -gt 0 ] || { echo "name at least one arm, e.g. pose=pose" >&2; exit 2; }
rooms=${ROOMS:-/tmp/pose-rooms}
common=(--preset small --size 224 --rooms 64 --eval-rooms 8 --frames 64 --views 4 --min-gap 8 --max-gap 24
        --batch 16 --eval-every 250 --eval-samples 32 --threads 4 --rooms-dir "$rooms" ${STUDY_ARGS:-})
[ -n "${INIT:-}" ] && common+=(--init "$INIT")
mkdir -p "$out"
start=$SECONDS
OMP_NUM_THREADS=1 python3 scripts/pose_study.py "$out/render" "${common[@]}" --workers "$(nproc)" --render-only >"$out/render.log" 2>&1 \
    || { cat "$out/render.log"; exit 1; }
echo "rooms rendered in $((SECONDS - start)) s"
names=()
for spec in "$@"; do
    name=${spec%%=*} arm=${spec#*=} weight=1.0
    [[ $arm == *@* ]] && weight=${arm#*@} arm=${arm%@*}
    names+=("$name")
    mkdir -p "$out/$name"
    python3 scripts/pose_study.py "$out/$name" "${common[@]}" --arms "$arm" --points-weight "$weight" \
        --time-limit "$seconds" --save >"$out/$name/log.txt" 2>&1 &
done
wait
for name in "${names[@]}"; do echo "== $name"; grep -v "━" "$out/$name/log.txt" | tail -4; done
# The best arm by its last held-out L_p, as float16 pieces small enough to come back.
python3 - "$out" "${names[@]}" <<'EOF'
import json, sys
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

out, names = Path(sys.argv[1]), sys.argv[2:]
final = {}
for name in names:
    path = out / name / "pose_study.json"
    if path.is_file():
        ((arm, history),) = json.loads(path.read_text())["arms"].items()
        final[name] = (history[-1]["pose_loss"], arm)
if not final:
    sys.exit("no arm finished")
best = min(final, key=lambda n: final[n][0])
folder = out / best / final[best][1].replace("+", "-")
state = {k: v.half() if v.is_floating_point() else v for k, v in load_file(folder / "model.safetensors").items()}
save_file(state, str(out / "best.safetensors"))
(out / "config.json").write_text((folder / "config.json").read_text())
(out / "best.txt").write_text(f"{best} ({final[best][1]}): final held-out L_p {final[best][0]:.5f}\n")
print("best:", (out / "best.txt").read_text().strip())
EOF
status=$?  # no arm finished: the logs still come back, and the call fails
[ $status = 0 ] && (cd "$out" && split -b 15M -d best.safetensors best.safetensors.part && rm best.safetensors)
tar -czf "$out/results.tar.gz" -C "$out" $(cd "$out" && ls -d render.log */pose_study.json */pose_study.png */log.txt 2>/dev/null)
for name in "${names[@]}"; do rm -rf "${out:?}/$name"; done
rm -rf "$out/render" "$out/render.log"
ls -la "$out"
exit $status
