#!/usr/bin/env bash
# Command 2: install what the tests need and run them all, offline (no model or data
# downloads): the frontend's unit tests, the browser (Galata) tests, then pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
t0=$(date +%s)
bash scripts/setup.sh
t1=$(date +%s)
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 PYDEVD_DISABLE_FILE_VALIDATION=1
(export PATH="$PWD/.venv/bin:$PATH" YARN_GLOBAL_FOLDER="$PWD/.yarn/global"; jlpm test)
t2=$(date +%s)
bash scripts/ui-test.sh
t3=$(date +%s)
status=0
.venv/bin/python -m pytest -p no:cacheprovider "$@" || status=$?
t4=$(date +%s)
echo "test.sh: setup $((t1 - t0)) s, frontend unit tests $((t2 - t1)) s, UI tests $((t3 - t2)) s," \
  "pytest $((t4 - t3)) s (exit $status)"
exit $status
