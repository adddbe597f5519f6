#!/usr/bin/env bash
# Create .venv (Python 3.10+), build the JupyterLab sidebar, and install the project with
# every extra the tests need. Idempotent: a second run only checks that all is there.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
export PIP_DISABLE_PIP_VERSION_CHECK=1
# A pinned CPU torch first: an unpinned one would pull a multi-GB CUDA build.
.venv/bin/python -m pip install -q "torch==2.13.0"
# The frontend first, so the package's build hook finds labextension/ built and skips.
# Without Node.js the Python side still installs; only the sidebar is missing.
bash scripts/build-frontend.sh --if-needed \
  || echo "setup: warning: the JupyterLab sidebar was not built (needs Node.js >= 20.19)" >&2
export PATH="$PWD/.venv/bin:$PATH"  # jlpm for the build hook's up-to-date check
.venv/bin/python -m pip install -q -e ".[models,data,eval,train,test]"
