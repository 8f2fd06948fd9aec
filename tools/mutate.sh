#!/usr/bin/env bash
# Mutation testing of preprocess, detections (every task), metrics, gates, bench, datasets, parity, description,
# evaluate, images, head and the settings both faces read (settings, variant, suite/settings, suite/options)
# against their fast tests (-m "not slow and not quantlab"), with mutmut (configured in pyproject.toml
# [tool.mutmut]). Not part of tools/test.sh: it runs the covering tests once per mutant, about 3100 mutants
# (tens of minutes on 2 cores; parity and description alone, 845 mutants, took about 20). The suite's option
# tests read configs in process (pytester.parseconfig), which imports the plugin from mutmut's copy.
# Results stay in mutants/ (git-ignored): `.venv/bin/mutmut results`, `mutmut show NAME`.
# Usage: bash tools/mutate.sh [--max-children N]   (default: one child per CPU)
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
.venv/bin/python -m pip install --quiet -e '.[test,mutation]'
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
rm -rf mutants  # mutmut reuses earlier results; a fresh run scores the current code and tests
.venv/bin/mutmut run "$@"
.venv/bin/mutmut export-cicd-stats
.venv/bin/python - <<'PY'
import json

stats = json.load(open("mutants/mutmut-cicd-stats.json"))
scored = stats["killed"] + stats["survived"] + stats.get("timeout", 0)
print(f"mutation score: {stats['killed'] + stats.get('timeout', 0)}/{scored} killed "
      f"({100 * (stats['killed'] + stats.get('timeout', 0)) / scored:.1f}%), {stats['survived']} survived, "
      f"{stats.get('no_tests', 0)} not covered by the selected tests")
PY
