#!/usr/bin/env bash
# Create .venv (with pip) unless a working one is there. Python: $PYTHON, else python3.
# Debian/Ubuntu ship venv's ensurepip apart (pythonX.Y-venv): when `-m venv` fails for
# that, the package is installed (apt) and the venv made again.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
works() { [ -x .venv/bin/python ] && .venv/bin/python -m pip --version >/dev/null 2>&1; }
works && exit 0
command -v "$PY" >/dev/null || { echo "venv: $PY not found (Python 3.10+ is needed)" >&2; exit 1; }
rm -rf .venv  # missing, or half made (no pip) by an earlier failed attempt
if ! "$PY" -m venv .venv; then
  rm -rf .venv
  pkg=$("$PY" -c 'import sys; print("python%d.%d-venv" % sys.version_info[:2])')
  echo "venv: '$PY -m venv' failed; installing $pkg" >&2
  bash scripts/apt-install.sh "$pkg"
  "$PY" -m venv .venv
fi
works || { echo "venv: .venv has no working pip" >&2; exit 1; }
