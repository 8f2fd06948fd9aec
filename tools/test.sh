#!/usr/bin/env bash
# The README's test command: set up .venv if needed, then run `pytest` (functional gates and
# unit tests) and `pytest --benchmark-only` (latency, with its same-run speed gate).
# Extra arguments go to both pytest runs, e.g. `bash tools/test.sh --quantlab-model my.onnx --quantlab-data data.yaml`.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e '.[test,chart]'
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
.venv/bin/python -m pytest "$@"
mkdir -p .benchmarks
.venv/bin/python -m pytest --benchmark-only --benchmark-json=.benchmarks/latest.json "$@"
