"""The GitHub Action (action.yml over quantlab/action.py), run here with a fake GitHub: the environment files
a runner gives a step, a pull_request event, and a fake `gh` on PATH that keeps the PR's comments in a file."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from quantlab import action

ROOT = Path(__file__).resolve().parents[1]
REPO = "team/app"

# `gh api` as the action calls it: GET a page of comments, POST a comment, PATCH one; each call logged
FAKE_GH = textwrap.dedent("""\
    #!PYTHON
    import json, os, sys
    state_path = os.environ["FAKE_GH_STATE"]
    state = json.load(open(state_path))
    args = sys.argv[1:]
    state["calls"].append(args)
    method = args[args.index("--method") + 1] if "--method" in args else "GET"
    path = next(a for a in args[1:] if a.startswith("repos/"))
    if state.get("deny"):
        print("gh: Resource not accessible by integration (HTTP 403)", file=sys.stderr)
        json.dump(state, open(state_path, "w"))
        sys.exit(1)
    if method == "GET":
        page = int(path.rsplit("page=", 1)[1])
        print(json.dumps(state["comments"][(page - 1) * 100:page * 100]))
    elif method == "POST":
        comment = {"id": 1000 + len(state["comments"]), "body": json.load(sys.stdin)["body"],
                   "user": {"login": "github-actions[bot]", "type": "Bot"}}
        state["comments"].append(comment)
        print(json.dumps(comment))
    else:
        comment_id = int(path.rsplit("/", 1)[1])
        comment = next(c for c in state["comments"] if c["id"] == comment_id)
        comment["body"] = json.load(sys.stdin)["body"]
        print(json.dumps(comment))
    json.dump(state, open(state_path, "w"))
""").replace("PYTHON", sys.executable, 1)


def _pull_request_event(head_repo: str | None = REPO) -> dict:
    return {"pull_request": {"number": 7, "head": {"repo": {"full_name": head_repo} if head_repo else None},
                             "base": {"repo": {"full_name": REPO}}}}


class FakeGitHub:
    """A runner's environment for one step, and the pull request's comments as `gh` left them."""

    def __init__(self, folder: Path, event: dict, comments: list[dict] | None = None, deny: bool = False):
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "bin").mkdir(exist_ok=True)
        gh = folder / "bin" / "gh"
        gh.write_text(FAKE_GH)
        gh.chmod(0o755)
        self.state = folder / "gh.json"
        self.state.write_text(json.dumps({"comments": comments or [], "calls": [], "deny": deny}))
        (folder / "event.json").write_text(json.dumps(event))
        self.summary, self.output = folder / "summary.md", folder / "output.txt"
        for path in (self.summary, self.output):
            path.write_text("")

    def env(self, **inputs: str) -> dict[str, str]:
        return {**os.environ, "PATH": f"{self.folder / 'bin'}{os.pathsep}{os.environ['PATH']}",
                "FAKE_GH_STATE": str(self.state), "GITHUB_ACTIONS": "true", "GITHUB_REPOSITORY": REPO,
                "GITHUB_EVENT_NAME": "pull_request", "GITHUB_EVENT_PATH": str(self.folder / "event.json"),
                "GITHUB_STEP_SUMMARY": str(self.summary), "GITHUB_OUTPUT": str(self.output),
                "PYTHONPATH": str(ROOT), **inputs}

    @property
    def comments(self) -> list[dict]:
        return json.loads(self.state.read_text())["comments"]

    @property
    def outputs(self) -> dict[str, str]:
        return dict(line.split("=", 1) for line in self.output.read_text().splitlines())


def _report(folder: Path, suite_exit: int | None, ab_exit: int | None = None, ab_table: str = "") -> Path:
    """A report folder as `run` leaves it, without running anything: state.json (and ab.md)."""
    folder.mkdir(parents=True, exist_ok=True)
    state = {"model": "models/m.onnx", "baseline": "origin/main:models/m.onnx" if ab_exit is not None else None,
             "suite_exit": suite_exit}
    if ab_exit is not None:
        state["ab_exit"] = ab_exit
        (folder / "ab").mkdir(exist_ok=True)
        (folder / "ab" / "ab.md").write_text(ab_table)
    (folder / "state.json").write_text(json.dumps(state))
    return folder


@pytest.mark.parametrize(("suite_exit", "ab_exit", "verdict"), [
    (0, None, action.PASS),  # gates held, no baseline
    (0, 0, action.PASS),  # gates held, no worse than the baseline
    (1, None, action.GATES_FAILED),  # a budget broken
    (0, 1, action.REGRESSION),  # gates held, slower than the baseline on this runner
    (1, 1, action.REGRESSION),  # the A/B regression is the verdict named
    (4, None, action.ERROR),  # pytest's usage error: a bad --quantlab-* setting
    (5, None, action.ERROR),  # nothing collected: the plugin did not run
    (0, 2, action.ERROR),  # quantlab ab could not read an input
    (None, None, action.ERROR),  # run wrote no state
], ids=["pass", "pass-ab", "gates-failed", "regression", "both", "usage", "no-tests", "ab-bad-input", "no-run"])
def test_verdict_from_the_exit_statuses(suite_exit, ab_exit, verdict):
    state = {"suite_exit": suite_exit} | ({} if ab_exit is None else {"ab_exit": ab_exit})
    assert action.verdict(state) == verdict


@pytest.mark.parametrize(("head_repo", "fork"), [
    (REPO, False),  # a branch of this repository
    ("someone/app", True),  # a fork
    (None, True),  # a fork since deleted: GitHub sends head.repo null
], ids=["same-repo", "fork", "deleted-fork"])
def test_fork_detection(head_repo, fork):
    assert action.is_fork(_pull_request_event(head_repo)["pull_request"]) is fork


@pytest.mark.parametrize(("comments", "found"), [
    ([], None),
    ([{"id": 1, "body": "LGTM", "user": {"type": "User"}},
      {"id": 2, "body": action.MARKER + "\n## quantlab", "user": {"type": "Bot"}}], 2),
    ([{"id": 3, "body": "> " + action.MARKER, "user": {"type": "Bot"}}], None),  # quoted, not opening
    ([{"id": 4, "body": action.MARKER + "\nforged", "user": {"type": "User"}}], None),  # a person's comment
], ids=["none", "ours", "quoted", "by-a-person"])
def test_the_comment_is_found_by_its_marker(comments, found):
    assert action.find_comment(comments) == found


def test_inputs_come_from_the_environment_and_budgets_become_suite_options(tmp_path):
    inputs = action.Inputs.from_env({"INPUT_MODEL": "m.onnx", "INPUT_IMAGES": "imgs", "INPUT_MAX_MAP_DROP": "0.02",
                                     "INPUT_PYTEST_ARGS": "--quantlab-num-calib 32"})
    command = action.pytest_command(inputs, tmp_path)
    assert command[command.index("--quantlab-model") + 1] == "m.onnx"
    assert command[command.index("--quantlab-calib") + 1] == "imgs" and "--quantlab-data" not in command
    assert command[command.index("--quantlab-max-map-drop") + 1] == "0.02"
    assert "--quantlab-max-size-ratio" not in command  # not given: the suite's default
    assert command[-2:] == ["--quantlab-num-calib", "32"]
    ab = action.ab_command(action.Inputs("m.onnx", data="d.yaml", baseline="main:m.onnx"), tmp_path)
    assert ab[ab.index("--baseline") + 1] == "main:m.onnx" and ab[ab.index("--data") + 1] == "d.yaml"
    assert ab[ab.index("--runs") + 1] == "200" and inputs.ab_runs == "200"  # the default, where not given


@pytest.mark.parametrize("env", [{}, {"INPUT_MODEL": "m.onnx"}, {"INPUT_MODEL": "m.onnx", "INPUT_DATA": "d.yaml",
                                                                   "INPUT_IMAGES": "imgs"}],
                         ids=["no-model", "no-images", "both-images"])
def test_inputs_refuse_a_missing_model_or_an_ambiguous_data_set(env):
    with pytest.raises(SystemExit, match="quantlab action: "):
        action.Inputs.from_env(env)


def test_the_summary_names_the_verdict_and_shows_the_ab_table(tmp_path):
    ab_table = "| Variant | Metric |\n|---|---|\n| int8 | median latency |\n\n**1 regression(s)**: slower."
    summary = action.render_summary(_report(tmp_path, 0, 1, ab_table), "https://example.org/artifacts/9")
    assert summary.startswith(action.MARKER + "\n")
    assert "**Regression**" in summary and "### A/B against origin/main:models/m.onnx" in summary
    assert ab_table in summary
    assert "[the quantlab artifact](https://example.org/artifacts/9)" in summary


def _benchmark_run(path: Path) -> Path:
    """A pytest-benchmark JSON as the suite saves it, reduced: FP32, a gated auto and a contrast dynamic."""
    setup = {"host": "0123456789abcdef", "cpu": "CPU", "threads": 1, "providers": ["CPUExecutionProvider"],
             "onnxruntime": "1.22.0", "python": "3.12.1"}
    variants = {"fp32": (1.0, 8_400_000, 1.0, 0.74), "auto": (1.6, 2_440_000, 0.29, 0.735),
                "dynamic": (1.1, 2_280_000, 0.27, 0.73)}
    path.write_text(json.dumps({
        "machine_info": {}, "commit_info": {"id": "abc"}, "datetime": "2026-11-01T10:00:00+00:00",
        "benchmarks": [{"name": f"test_latency[{name}]",
                        "extra_info": {"variant": name, "speedup": s, "speedup_low": s * 0.95, "speedup_high": s * 1.05,
                                       "size_bytes": size, "size_ratio": ratio, "map50_95": map50_95,
                                       "gated": name == "auto", "setup": setup},
                        "stats": {"median": 0.02 / s, "q1": 0.019 / s, "q3": 0.021 / s}}
                       for name, (s, size, ratio, map50_95) in variants.items()]}))
    return path


def test_the_variants_table_and_the_speedup_output_come_from_the_benchmark_json(tmp_path):
    report = _report(tmp_path / "report", 0)
    _benchmark_run(report / "benchmark.json")
    summary = action.render_summary(report)
    assert "| auto | yes | 2.44 | 0.290 | 0.735 | 1.60 [1.52, 1.68] |" in summary
    assert "| dynamic | no | 2.28 | 0.270 | 0.730 | 1.10 [1.04, 1.16] |" in summary
    assert action.outputs(report)["speedup"] == "1.6000"  # the gated variant's, not FP32's nor the contrast's
    assert action.write_chart(report / "benchmark.json", report / "chart.png")
    assert (report / "chart.png").read_bytes()[:4] == b"\x89PNG"


def test_the_summary_shows_why_quantlab_ab_wrote_no_table(tmp_path):
    report = _report(tmp_path, 0)
    (report / "state.json").write_text(json.dumps({"model": "m.onnx", "baseline": "main:m.onnx", "suite_exit": 0,
                                                   "ab_exit": 2}))
    (report / "ab.log").write_text("$ quantlab ab\nquantlab: error: main:m.onnx: git cannot show it\n")
    summary = action.render_summary(report)
    assert "**Error**" in summary
    assert "quantlab ab wrote no table: quantlab: error: main:m.onnx: git cannot show it." in summary


def test_the_summary_lists_the_failed_gates_from_pytests_junit(tmp_path):
    report = _report(tmp_path, 1)
    (report / "pytest.xml").write_text(
        '<testsuites><testsuite><testcase name="test_size_ratio_within_budget[auto]">'
        '<failure message="auto: size_ratio 0.291 is above the maximum 0.1 (--quantlab-max-size-ratio)&#10;more"/>'
        '</testcase><testcase name="test_output_parity_with_fp32[auto]"/></testsuite></testsuites>')
    summary = action.render_summary(report)
    assert "**Gates failed**" in summary
    assert ("- `test_size_ratio_within_budget[auto]`: auto: size_ratio 0.291 is above the maximum 0.1 "
            "(--quantlab-max-size-ratio)\n") in summary
    assert "parity" not in summary and "more" not in summary


def test_one_comment_updated_not_duplicated(tmp_path):
    github = FakeGitHub(tmp_path / "gh", _pull_request_event(),
                        comments=[{"id": 1, "body": "LGTM", "user": {"login": "ann", "type": "User"}}])
    report = _report(tmp_path / "report", 0)
    assert action.publish(report, env=github.env()) == 0
    first = github.comments
    assert len(first) == 2 and first[1]["body"].startswith(action.MARKER) and "**Pass**" in first[1]["body"]
    _report(tmp_path / "report", 1)
    assert action.publish(report, env=github.env()) == 1
    assert [c["id"] for c in github.comments] == [1, first[1]["id"]]
    assert "**Gates failed**" in github.comments[1]["body"]
    assert github.comments[0]["body"] == "LGTM"


def test_the_earlier_comment_is_found_past_the_first_page(tmp_path):
    people = [{"id": i, "body": f"comment {i}", "user": {"login": "ann", "type": "User"}} for i in range(150)]
    ours = {"id": 500, "body": action.MARKER + "\nold", "user": {"login": "github-actions[bot]", "type": "Bot"}}
    github = FakeGitHub(tmp_path / "gh", _pull_request_event(), comments=[*people, ours])
    assert action.publish(_report(tmp_path / "report", 0), env=github.env()) == 0
    assert len(github.comments) == 151 and "**Pass**" in github.comments[-1]["body"]


def test_a_runner_without_gh_is_a_warning_not_a_failure(tmp_path, capsys):
    github = FakeGitHub(tmp_path / "gh", _pull_request_event())
    env = {**github.env(), "PATH": str(tmp_path / "empty")}
    assert action.publish(_report(tmp_path / "report", 0), env=env) == 0
    warning = "::warning title=quantlab::no pull-request comment (gh: No such file or directory)"
    assert warning in capsys.readouterr().out


def test_no_comment_for_a_fork_nor_outside_a_pull_request(tmp_path):
    report = _report(tmp_path / "report", 0)
    for name, event in {"fork": _pull_request_event("someone/app"), "push": {"ref": "refs/heads/main"}}.items():
        github = FakeGitHub(tmp_path / name, event)
        assert action.publish(report, env=github.env()) == 0
        assert json.loads(github.state.read_text())["calls"] == [], name
        assert "**Pass**" in github.summary.read_text()  # the summary all the same


def test_comment_false_posts_nothing(tmp_path):
    github = FakeGitHub(tmp_path / "gh", _pull_request_event())
    assert action.publish(_report(tmp_path / "report", 0), env=github.env(INPUT_COMMENT="false")) == 0
    assert json.loads(github.state.read_text())["calls"] == [] and "**Pass**" in github.summary.read_text()


def test_a_token_that_may_not_comment_is_a_warning_not_a_failure(tmp_path, capsys):
    github = FakeGitHub(tmp_path / "gh", _pull_request_event(), deny=True)
    assert action.publish(_report(tmp_path / "report", 0), env=github.env()) == 0
    assert "::warning title=quantlab::no pull-request comment (gh: Resource not accessible by integration (HTTP " \
           "403)): the workflow needs `permissions: pull-requests: write`" in capsys.readouterr().out


def test_outputs_and_exit_code_say_the_verdict(tmp_path):
    github = FakeGitHub(tmp_path / "gh", {})
    report = _report(tmp_path / "report", 0, 1, "table")
    (report / "ab" / "ab.json").write_text(json.dumps({"candidate_speedup": {"ratio": 0.9012345}}))
    assert action.publish(report, env=github.env()) == 1
    assert github.outputs["verdict"] == "regression" and github.outputs["exit-code"] == "1"
    assert github.outputs["ab-speedup"] == "0.9012"


def test_a_run_that_stopped_before_writing_is_an_error(tmp_path):
    github = FakeGitHub(tmp_path / "gh", {})
    (tmp_path / "empty").mkdir()
    assert action.publish(tmp_path / "empty", env=github.env()) == 2
    assert github.outputs["verdict"] == "error" and "**Error**" in github.summary.read_text()


def test_a_benchmark_file_without_quantlab_runs_is_a_warning_and_no_table(tmp_path, capsys):
    report = _report(tmp_path / "report", 1)
    (report / "benchmark.json").write_text(json.dumps({"benchmarks": []}))
    summary = action.render_summary(report)
    assert "No benchmark was timed" in summary and "::warning title=quantlab::" in capsys.readouterr().out
    assert action.write_chart(report / "benchmark.json", report / "chart.png") is False


def test_a_shallow_checkout_fetches_the_baselines_branch(tmp_path, monkeypatch):
    """actions/checkout fetches one commit: `origin/main:m.onnx` must still name a model."""
    origin = tmp_path / "origin"
    origin.mkdir()
    _git(origin, "init", "-q", "-b", "main")
    (origin / "m.onnx").write_bytes(b"baseline")
    _git(origin, "add", ".")
    _git(origin, "commit", "-qm", "baseline")
    _git(origin, "checkout", "-q", "-b", "pr")
    (origin / "m.onnx").write_bytes(b"candidate")
    _git(origin, "commit", "-qam", "candidate")
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", "--depth=1", "--branch", "pr", "--single-branch", origin.as_uri(),
                    str(clone)], check=True)
    monkeypatch.chdir(clone)
    show = ["git", "show", "origin/main:m.onnx"]
    assert subprocess.run(show, capture_output=True).returncode != 0
    action.fetch_revision("origin/main:m.onnx")
    assert subprocess.run(show, capture_output=True).stdout == b"baseline"


def test_a_bad_model_is_an_error_and_an_earlier_runs_results_are_not_shown(tmp_path, monkeypatch):
    """run on a model that does not exist: pytest stops with its usage error, quantlab ab with its bad-input
    exit; the stale table of an earlier run in the same folder is gone."""
    report = _report(tmp_path / "report", 0, 0, "| stale A/B table |")
    (report / "benchmark.json").write_text("stale")
    monkeypatch.chdir(tmp_path)
    state = action.run(action.Inputs("missing.onnx", data="missing.yaml", baseline="also-missing.onnx"), report)
    assert (state["suite_exit"], state["ab_exit"]) == (4, 2)
    assert not (report / "benchmark.json").exists() and not (report / "ab" / "ab.md").exists()
    summary = action.render_summary(report)
    assert "**Error**" in summary and "stale" not in summary and "quantlab ab wrote no table: " in summary


def _action_metadata() -> dict:
    return yaml.safe_load((ROOT / "action.yml").read_text(encoding="utf-8"))


def test_action_yml_is_a_composite_action_whose_expressions_name_its_own_inputs():
    """actionlint lints workflows, not action metadata: the structure is checked here."""
    meta = _action_metadata()
    assert meta["runs"]["using"] == "composite" and meta["inputs"]["model"]["required"] is True
    text = (ROOT / "action.yml").read_text(encoding="utf-8")
    used = set(re.findall(r"\binputs\.([\w-]+)", text))
    assert used <= set(meta["inputs"]), used - set(meta["inputs"])
    step_ids = {s.get("id") for s in meta["runs"]["steps"]}
    assert {m.group(1) for m in re.finditer(r"steps\.([\w-]+)\.outputs", text)} <= step_ids
    for step in meta["runs"]["steps"]:
        assert "uses" in step or step.get("shell") == "bash", step  # a composite run step must name its shell
        assert "${{" not in step.get("run", ""), step["run"]  # inputs reach scripts through env, never pasted


def test_every_budget_and_input_the_script_reads_is_declared():
    meta = _action_metadata()
    read = set(re.findall(r'value\("([\w-]+)"\)', (ROOT / "quantlab" / "action.py").read_text(encoding="utf-8")))
    read |= set(action.BUDGET_INPUTS)
    assert read <= set(meta["inputs"]), read - set(meta["inputs"])
    env = {k for s in meta["runs"]["steps"] for k in s.get("env", {})}
    assert {"INPUT_" + name.upper().replace("-", "_") for name in read} <= env


def test_the_action_installs_its_own_checkout_never_a_look_alike():
    install = next(s["run"] for s in _action_metadata()["runs"]["steps"] if s.get("name") == "Install quantlab")
    assert '"$ACTION_PATH[test,chart]"' in install
    assert re.findall(r'pip install "([\w-]+)\[', install) == ["quantlab-yolo"]


def _git(repo: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@example.org", *args],
                   check=True, capture_output=True)


def _has_ab() -> bool:
    return subprocess.run([sys.executable, "-m", "quantlab", "ab", "--help"], capture_output=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}).returncode == 0


@pytest.mark.slow
@pytest.mark.usefixtures("outside_xdist")
def test_the_walk_from_an_empty_repository(tmp_path):
    """A new user's repository: their model and data committed, the action's two steps run as action.yml runs
    them on a pull request; the summary, the outputs, the A/B verdict (where quantlab ab exists) and one comment,
    updated on the second run."""
    from quantlab.demo import DEMO_MODEL
    from quantlab.demo.shapes import write_dataset

    repo = tmp_path / "app"
    (repo / "models").mkdir(parents=True)
    shutil.copyfile(DEMO_MODEL, repo / "models" / "m.onnx")
    data = write_dataset(repo / "data", sizes={"train": 1, "val": 24, "calib": 32})
    _git(repo, "init", "-q", "-b", "main")
    _git(repo, "add", ".")
    _git(repo, "commit", "-qm", "model")
    github = FakeGitHub(tmp_path / "github", _pull_request_event())
    inputs = {"INPUT_MODEL": "models/m.onnx", "INPUT_DATA": str(data.relative_to(repo)),
              "INPUT_PYTEST_ARGS": "--quantlab-num-calib 32 -p no:cacheprovider", "INPUT_AB_RUNS": "100"}
    if _has_ab():
        inputs["INPUT_BASELINE"] = "main:models/m.onnx"
    report = tmp_path / "report"
    for _ in range(2):
        run = subprocess.run([sys.executable, "-m", "quantlab.action", "run", "--out", str(report)], cwd=repo,
                             env=github.env(**inputs), capture_output=True, text=True, timeout=900)
        assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
        publish = subprocess.run([sys.executable, "-m", "quantlab.action", "publish", "--out", str(report),
                                  "--artifact-url", "https://example.org/a/1"], cwd=repo, env=github.env(**inputs),
                                 capture_output=True, text=True, timeout=120)
        assert publish.returncode == 0, publish.stdout[-3000:] + publish.stderr[-3000:]
    summary = github.summary.read_text()
    assert summary.count(action.MARKER) == 2 and "**Pass**: every gate held" in summary
    assert re.search(r"\| auto \| yes \| [0-9.]+ \| 0\.[0-9]{3} \| 0\.[0-9]{3} \| [0-9.]+ \[", summary)
    assert float(github.outputs["speedup"]) > 0 and github.outputs["verdict"] == "pass"
    assert (report / "benchmark.json").is_file() and (report / "chart.png").read_bytes()[:4] == b"\x89PNG"
    if "INPUT_BASELINE" in inputs:  # the same model on both sides: no regression
        assert "### A/B against main:models/m.onnx" in summary and "No regression" in summary
        assert float(github.outputs["ab-speedup"]) > 0
    comments = github.comments
    assert len(comments) == 1 and summary.endswith(comments[0]["body"])
