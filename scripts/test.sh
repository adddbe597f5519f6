#!/usr/bin/env bash
# Command 2: install what the tests need and run them all, offline (no model or data
# downloads): the lint and type gates (ruff, mypy), the frontend's unit tests, the browser
# (Galata) tests, then pytest. A failed gate is reported at the end; the tests still run.
set -euo pipefail
cd "$(dirname "$0")/.."
t0=$(date +%s)
bash scripts/setup.sh
t1=$(date +%s)
gates=0
.venv/bin/ruff check jupyter_analyst tests benchmarks || gates=1
.venv/bin/ruff format --check jupyter_analyst tests benchmarks || gates=1
.venv/bin/mypy jupyter_analyst || gates=1
t2=$(date +%s)
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 PYDEVD_DISABLE_FILE_VALIDATION=1
(export PATH="$PWD/.venv/bin:$PATH" YARN_GLOBAL_FOLDER="$PWD/.yarn/global"; jlpm test)
t3=$(date +%s)
bash scripts/ui-test.sh
t4=$(date +%s)
status=0
.venv/bin/python -m pytest -p no:cacheprovider "$@" || status=$?
t5=$(date +%s)
echo "test.sh: setup $((t1 - t0)) s, ruff + mypy $((t2 - t1)) s (gates $([ $gates = 0 ] && echo ok || echo FAILED))," \
  "frontend unit tests $((t3 - t2)) s, UI tests $((t4 - t3)) s, pytest $((t5 - t4)) s (exit $status)"
[ "$status" = 0 ] || exit "$status"
exit $gates
