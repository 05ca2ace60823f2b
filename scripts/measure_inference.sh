#!/usr/bin/env bash
# The measurements behind docs/benchmarks/inference-large.json, in one GPU call (about 6 minutes on an H100,
# 8 more with AVENUES=1):
#
#   [AVENUES=1] [STEPS="precision ff3r ..."] bash scripts/measure_inference.sh OUT_DIR [VGGT_REF] [SCENE]
#
# STEPS runs only the named steps (the names below; AVENUES's steps included when named).
# OUT_DIR, VGGT_REF and SCENE are absolute or relative to the repository root. VGGT_REF is a folder holding VGGT's `vggt` package (default .ref), SCENE a real scene with at least 8 views
# (default .ref/views/tum). Every step prints its rows into OUT_DIR/log.txt and writes its JSON into OUT_DIR;
# a step that fails or runs out of time is logged and the next one runs, most important first. Then
#   python scripts/inference_table.py OUT_DIR
# gathers them into docs/benchmarks/inference-large.json.
#
# On the lent GPU (torch, timm, einops and huggingface_hub there; open_clip not): carry .ref and .whl, the latter
# filled here with `pip download --no-deps ... -d .whl open_clip_torch==3.3.0 ftfy wcwidth` (Python 3.12 wheels).
set -u
cd "$(dirname "${BASH_SOURCE[0]}")/.."
if [ -d .whl ] && ! python3 -c "import open_clip" 2>/dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/ff3r-site .whl/*.whl
    export PYTHONPATH="/tmp/ff3r-site${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"  # the scripts import ff3r_ns from the checkout
out=${1:?usage: measure_inference.sh OUT_DIR [VGGT_REF] [SCENE]}
ref=${2:-.ref}
scene=${3:-.ref/views/tum}
mkdir -p "$out"
log="$out/log.txt"

step() {  # step SECONDS NAME COMMAND...: run COMMAND with a time limit, its output into the log
    local limit=$1 name=$2
    shift 2
    if [ -n "${STEPS:-}" ] && [[ " $STEPS " != *" $name "* ]]; then return; fi
    echo "=== $name: $*" >>"$log"
    local start=$SECONDS
    timeout "$limit" "$@" >>"$log" 2>&1
    echo "=== $name: exit $? after $((SECONDS - start)) s" >>"$log"
}

nvidia-smi --query-gpu=name,memory.total --format=csv >>"$log" 2>&1
ff3r="python3 scripts/benchmark.py --preset large --size 448 --out-dir $out"
vggt="$ff3r --reference-vggt $ref"
step 80 precision python3 scripts/measure_precision.py --reference-vggt "$ref" --scene "$scene" --views 8 --out "$out/precision-8.json"
# The same with every parameter moved by its whole spread: heads whose outputs vary more across pixels.
step 80 precision-strong python3 scripts/measure_precision.py --reference-vggt "$ref" --scene "$scene" --views 8 \
    --perturb 1.0 --out "$out/precision-8-strong.json"
# Speed at 16 and 64 views with the kernel profile (torch's attention backend choice: cuDNN's flash kernel on sm90).
step 60 ff3r $ff3r --views 16 64 --profile --kernels 25
step 45 vggt $vggt --views 16 64 --kernels 25
# Scale: 128 and 256 views, one timed run each.
step 100 ff3r-scale $ff3r --views 128 256 --repeats 1 --label large-scale
step 80 vggt-scale $vggt --views 128 256 --repeats 1 --label vggt1b-scale
# Avenues (AVENUES=1): compiled transformer blocks; FlashAttention-2 first instead of cuDNN, both sides.
[ "${AVENUES:-0}" = 1 ] || [ -n "${STEPS:-}" ] || { echo "=== done" >>"$log"; exit 0; }
step 20 attention-impls python3 -c "import torch.nn.attention as a; print('flash attention impls:', a.list_flash_attention_impls())"
step 120 ff3r-compiled $ff3r --views 64 --compile
step 40 ff3r-flash $ff3r --views 64 --sdpa flash
step 40 vggt-flash $vggt --views 64 --sdpa flash
echo "=== done" >>"$log"
