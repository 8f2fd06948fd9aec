"""The project's own promises: the README's commands are what CI runs; the workflows lint clean."""

import json
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


@pytest.mark.skipif(shutil.which("actionlint") is None, reason="actionlint is not installed")
def test_workflows_lint_clean():
    workflows = sorted((ROOT / ".github" / "workflows").glob("*.yml"))
    result = subprocess.run(["actionlint", *map(str, workflows)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.slow
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
