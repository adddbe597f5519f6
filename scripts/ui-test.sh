#!/usr/bin/env bash
# Browser tests of the JupyterLab sidebar (ui-tests/, Galata + Playwright + system chromium)
# against a real `jupyter lab` running the server extension with the baseline analyst.
#
#   bash scripts/ui-test.sh [playwright args...]      e.g. -g "stops a run"
#
# From a clean clone: installs chromium (apt) if missing, the Python package (.venv), the
# frontend build and the test's node deps, checks that JupyterLab sees the extension, then
# runs the tests. Screenshots land in ui-tests/test-results/, the report in
# ui-tests/playwright-report/.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"
export PIP_DISABLE_PIP_VERSION_CHECK=1
t0=$(date +%s)

# 1. the browser (Debian's chromium; playwright's own browser download is never used)
CHROMIUM="${CHROMIUM:-/usr/bin/chromium}"
# fonts-liberation: chromium only recommends it, and apt-install.sh skips recommends.
if [ ! -x "$CHROMIUM" ]; then
  bash scripts/apt-install.sh chromium fonts-liberation
fi
"$CHROMIUM" --version
export CHROMIUM

# 2. Python: the project (server extension) and JupyterLab with collaboration (live docs)
PY="$ROOT/.venv/bin/python"
if [ ! -x "$PY" ]; then
  bash scripts/setup.sh
fi
if ! "$PY" -c "import jupyterlab, jupyter_server_ydoc, jupyter_analyst.server.app" 2>/dev/null; then
  "$PY" -m pip install -q -e . "jupyterlab>=4.6,<5" "jupyter-collaboration>=4"
fi

# 3. the frontend
bash scripts/build-frontend.sh --if-needed
export PATH="$ROOT/.venv/bin:$PATH"  # jlpm: the package's build hook looks for it even to skip

# 4. the labextension JupyterLab loads must be this build (pip copies it into share/)
built=$("$PY" -c "import json; print(json.load(open('labextension/package.json'))['jupyterlab']['_build']['load'])")
installed=$("$PY" - <<'PY'
import json, sys
from pathlib import Path
p = Path(sys.prefix) / "share/jupyter/labextensions/jupyter-analyst/package.json"
print(json.loads(p.read_text())["jupyterlab"]["_build"]["load"] if p.exists() else "")
PY
)
if [ "$built" != "$installed" ]; then
  echo "ui-test: installing the package so JupyterLab gets this build of the extension"
  "$PY" -c "import hatch_jupyter_builder, hatchling, editables" 2>/dev/null \
    || "$PY" -m pip install -q "hatchling>=1.21" "hatch-jupyter-builder>=0.5" editables
  # no build isolation: the build hook sees the fresh labextension/ and skips the build
  "$PY" -m pip install -q --no-deps --no-build-isolation -e .
fi
if ! "$ROOT/.venv/bin/jupyter" labextension list 2>&1 | grep -q "jupyter-analyst.*enabled.*OK"; then
  "$ROOT/.venv/bin/jupyter" labextension list >&2 || true
  echo "ui-test: JupyterLab does not list the jupyter-analyst extension as enabled" >&2
  exit 1
fi

# 5. the tests' node deps (no browser download)
export YARN_GLOBAL_FOLDER="$ROOT/.yarn/global" YARN_ENABLE_TELEMETRY=0
export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1
(cd ui-tests && jlpm install)
t1=$(date +%s)

# 6. run; the Jupyter server's files (runtime, file ids, config) stay in ui-tests/.state
STATE="$ROOT/ui-tests/.state"
mkdir -p "$STATE"
export XDG_DATA_HOME="$STATE/data" JUPYTER_CONFIG_DIR="$STATE/config" IPYTHONDIR="$STATE/ipython"
export MPLCONFIGDIR="$STATE/matplotlib"
export JUPYTERLAB_GALATA_ROOT_DIR="$(mktemp -d "${TMPDIR:-/tmp}/jupyter-analyst-ui-XXXXXX")"
export JUPYTER="$ROOT/.venv/bin/jupyter" PYTHON="$PY"
status=0
(cd ui-tests && jlpm playwright test "$@") || status=$?
t2=$(date +%s)
if [ "$status" = 0 ]; then
  rm -rf "$JUPYTERLAB_GALATA_ROOT_DIR"
else
  echo "ui-test: the server root is kept for debugging: $JUPYTERLAB_GALATA_ROOT_DIR"
fi
echo "ui-test: setup $((t1 - t0)) s, tests $((t2 - t1)) s; screenshots in ui-tests/test-results/"
exit $status
