"""The project's own promises: the README's commands are what CI runs; the workflows lint clean."""

import re
import shutil
import subprocess
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
