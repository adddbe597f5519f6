#!/usr/bin/env bash
# Command 2: install what the tests need and run them all (offline: no model or data downloads).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 PYDEVD_DISABLE_FILE_VALIDATION=1
.venv/bin/python -m pytest -p no:cacheprovider "$@"
