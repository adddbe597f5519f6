#!/usr/bin/env bash
# Build the JupyterLab extension: src/ + style/ + schema/ -> labextension/ (production).
#
#   bash scripts/build-frontend.sh              # install node deps (jlpm), build
#   bash scripts/build-frontend.sh --if-needed  # ... only when labextension/ is missing or stale
#
# Works offline except for the npm registry: the builder is @jupyter/builder (the old
# @jupyterlab/builder reaches GitHub). Needs Node >= 20.19 and JupyterLab >= 4.6 in .venv
# (for jlpm and jupyter-builder; installed here when missing). yarn's cache and global
# folder stay inside the repo (.yarn/).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"

IF_NEEDED=0
for arg in "$@"; do
  case "$arg" in
    --if-needed) IF_NEEDED=1 ;;
    *) echo "usage: $0 [--if-needed]" >&2; exit 2 ;;
  esac
done

stale() {
  local target=labextension/static/style.js
  [ -f "$target" ] || return 0
  [ -n "$(find src style schema package.json tsconfig.json -newer "$target" -print -quit 2>/dev/null)" ]
}

if [ "$IF_NEEDED" = 1 ] && ! stale; then
  echo "build-frontend: labextension/ is up to date"
  exit 0
fi

command -v node >/dev/null || { echo "build-frontend: node is required (>= 20.19)" >&2; exit 1; }
node -e 'const [a,b]=process.versions.node.split(".").map(Number); process.exit(a>20||(a===20&&b>=19)?0:1)' \
  || { echo "build-frontend: node $(node --version) is too old (need >= 20.19)" >&2; exit 1; }

PY="$ROOT/.venv/bin/python"
bash scripts/venv.sh
if [ ! -x "$ROOT/.venv/bin/jlpm" ] || [ ! -x "$ROOT/.venv/bin/jupyter-builder" ]; then
  PIP_DISABLE_PIP_VERSION_CHECK=1 "$PY" -m pip install -q "jupyterlab>=4.6,<5"
fi
export PATH="$ROOT/.venv/bin:$PATH"
export YARN_GLOBAL_FOLDER="$ROOT/.yarn/global"
export YARN_ENABLE_TELEMETRY=0

start=$(date +%s)
jlpm install
mid=$(date +%s)
jlpm build:prod
end=$(date +%s)
test -f labextension/static/style.js
echo "build-frontend: jlpm install $((mid - start)) s, build $((end - mid)) s -> labextension/"
