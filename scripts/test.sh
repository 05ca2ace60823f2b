#!/usr/bin/env bash
# Sets up the venv (idempotent) and runs the test suite on the CPU, offline.
#   bash scripts/test.sh [pytest args...]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup.sh
# The viewer test drives the real web viewer in headless Chromium (Debian's package); it skips without it.
if ! command -v chromium >/dev/null 2>&1 && command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
  echo "[test] installing chromium for the viewer test"
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
    || echo "[test] warning: could not install chromium; the viewer test will be skipped"
fi
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 PYTHONWARNINGS="ignore::SyntaxWarning"
exec .venv/bin/python -m pytest -q -p no:cacheprovider "$@"
