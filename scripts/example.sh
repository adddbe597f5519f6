#!/usr/bin/env bash
# Command 1: set up, then analyse an example dataset into a finished notebook (and HTML).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
mkdir -p out
.venv/bin/jupyter analyst run examples/penguins.csv \
  -q "How do body mass and bill size differ by species and sex?" \
  -o out/penguins_analysis.ipynb --overwrite "$@"
.venv/bin/jupyter analyst export out/penguins_analysis.ipynb --to html
