#!/usr/bin/env bash
# Create .venv (Python 3.10+), build the JupyterLab sidebar, and install the project with
# every extra the tests need. Idempotent: a second run only checks that all is there.
set -euo pipefail
cd "$(dirname "$0")/.."
t0=$(date +%s)
bash scripts/venv.sh
export PIP_DISABLE_PIP_VERSION_CHECK=1
# A pinned torch first, so the extras below do not pick another one (an unpinned torch
# pulls a multi-GB CUDA build). Where the machine offers the CPU build of this version,
# pip takes it; elsewhere it takes the registry's build of the same version.
TORCH="torch==2.13.0"
if ! .venv/bin/python -c "import importlib.metadata as m, sys; sys.exit(m.version('torch').split('+')[0] != '${TORCH#torch==}')" 2>/dev/null; then
  .venv/bin/python -m pip install -q "$TORCH"
fi
t1=$(date +%s)
# The frontend first, so the package's build hook finds labextension/ built and skips.
# Without Node.js the Python side still installs; only the sidebar is missing.
bash scripts/build-frontend.sh --if-needed \
  || echo "setup: warning: the JupyterLab sidebar was not built (needs Node.js >= 20.19)" >&2
export PATH="$PWD/.venv/bin:$PATH"  # jlpm for the build hook's up-to-date check
t2=$(date +%s)
.venv/bin/python -m pip install -q -e ".[models,data,eval,train,test]"
echo "setup: venv + torch $((t1 - t0)) s, frontend $((t2 - t1)) s, project + extras $(($(date +%s) - t2)) s"
