#!/usr/bin/env bash
# Sets up the venv (idempotent) and runs the test suite on the CPU, offline.
#   bash scripts/test.sh [pytest args...]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup.sh
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 PYTHONWARNINGS="ignore::SyntaxWarning"
exec .venv/bin/python -m pytest -q -p no:cacheprovider "$@"
