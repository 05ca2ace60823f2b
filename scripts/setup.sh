#!/usr/bin/env bash
# Sets up ff3r-ns in a project-local virtual environment (.venv), idempotently: a second run
# reuses the venv and only re-installs when pyproject.toml or this script changed.
#
#   bash scripts/setup.sh            # then .venv/bin/ns-train --help lists ff3r and ff3r-train
#
# Order matters (see ../shared/NERFSTUDIO.md): torch first (the build this machine keeps on disk),
# then nerfstudio 1.1.5, then the newer timm / open_clip that DINOv2 and CLIP need (nerfstudio pins
# timm 0.6.7 but never imports it), then this package without re-resolving dependencies.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

PYTHON=${PYTHON:-python3}
VENV=.venv
STAMP="$VENV/.ff3r-setup"
want=$(cat pyproject.toml scripts/setup.sh | sha256sum | cut -d' ' -f1)

# Debian packages that nerfstudio's commands need (apt-get when root, a warning otherwise):
# ns-export imports open3d, which needs libusb; ns-render writes its videos with ffmpeg.
declare -A DEB_WHY=([libusb-1.0-0]="ns-export (through open3d)" [ffmpeg]="ns-render videos")
missing=()
ldconfig -p 2>/dev/null | grep -q 'libusb-1.0.so.0' || missing+=(libusb-1.0-0)
command -v ffmpeg >/dev/null || missing+=(ffmpeg)
for pkg in "${missing[@]}"; do
  if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
    echo "[setup] installing $pkg (needed by ${DEB_WHY[$pkg]})"
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$pkg" >/dev/null) \
      || echo "[setup] warning: could not install $pkg; ${DEB_WHY[$pkg]} will fail until it is installed"
  else
    echo "[setup] warning: install the Debian package $pkg for ${DEB_WHY[$pkg]} (needs root)"
  fi
done

if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ] && "$VENV/bin/python" -c "import ff3r_ns, nerfstudio, gsplat" 2>/dev/null; then
  echo "[setup] .venv is up to date"
  exit 0
fi

start=$SECONDS
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
PIP=("$VENV/bin/python" -m pip install -q)

case "$(uname -m)" in
  aarch64|arm64) TORCH=(torch==2.9.1 torchvision==0.24.1) ;;   # CPU build for Arm (tool library's env entry)
  *) TORCH=(torch==2.14.1 torchvision==0.29.1) ;;             # the build kept on this machine's disk
esac
echo "[setup] 1/4 torch (${TORCH[*]})"
"${PIP[@]}" "${TORCH[@]}"
echo "[setup] 2/4 nerfstudio 1.1.5"
"${PIP[@]}" nerfstudio==1.1.5 "${TORCH[@]}"
echo "[setup] 3/4 gsplat, timm, open_clip, lpips, torchmetrics, test tools"
"${PIP[@]}" "${TORCH[@]}" gsplat==1.5.3 'timm>=1.0.17' 'open_clip_torch>=3.0' lpips torchmetrics rich \
  jaxtyping tyro safetensors plyfile pytest
echo "[setup] 4/4 ff3r_ns (editable, registers the ns-train methods and dataparsers)"
"${PIP[@]}" --no-deps -e .

"$VENV/bin/python" -c "import ff3r_ns, nerfstudio, gsplat, timm, open_clip" 
echo "$want" > "$STAMP"
echo "[setup] done in $((SECONDS - start)) s; venv size $(du -sh "$VENV" | cut -f1)"
