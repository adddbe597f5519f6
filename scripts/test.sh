#!/usr/bin/env bash
# Command 2: install what the tests need and run them all, offline (no model or data
# downloads): the frontend's unit tests, the browser (Galata) tests, then pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 PYDEVD_DISABLE_FILE_VALIDATION=1
(export PATH="$PWD/.venv/bin:$PATH" YARN_GLOBAL_FOLDER="$PWD/.yarn/global"; jlpm test)
bash scripts/ui-test.sh
.venv/bin/python -m pytest -p no:cacheprovider "$@"
