"""The GitHub Action's steps (action.yml at the repository root), runnable anywhere with a fake GitHub.

`python -m quantlab.action run --out DIR` runs the suite on the user's model (pytest -m quantlab, with the
benchmarks timed into DIR/benchmark.json) and, given a baseline, `quantlab ab` against it on this runner;
it keeps each command's exit status in DIR/state.json and never fails itself. `python -m quantlab.action
publish --out DIR` reads DIR back and writes the job summary ($GITHUB_STEP_SUMMARY), the step outputs
($GITHUB_OUTPUT) and one pull-request comment (found again by MARKER, edited rather than duplicated; none
for a pull request from a fork), then exits with the verdict's code: 0 pass, 1 a failed gate or an A/B
regression, 2 a run that could not judge (bad input, a crash).

The inputs come from the environment, as action.yml sets them from `with:` (INPUT_MODEL, INPUT_DATA, ...):
never pasted into a shell line, so a value cannot run as a command.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

from quantlab.ab import is_revision
from quantlab.plotting import pyplot_or_none
from quantlab.textsafe import for_markdown, for_terminal, workflow_command

MARKER = "<!-- quantlab -->"  # the first line of the comment this action owns on a pull request
PASS, GATES_FAILED, REGRESSION, ERROR = "pass", "gates-failed", "regression", "error"
EXIT_CODES = {PASS: 0, GATES_FAILED: 1, REGRESSION: 1, ERROR: 2}
# the budgets the action passes on to the suite: action input -> pytest option
RUN_OUTPUTS = ("state.json", "benchmark.json", "pytest.xml", "pytest.log", "ab", "ab.log", "chart.png", "summary.md")
BUDGET_INPUTS = {"max-size-ratio": "--quantlab-max-size-ratio", "max-map-drop": "--quantlab-max-map-drop",
                 "min-speedup": "--quantlab-min-speedup"}


@dataclass(frozen=True)
class Inputs:
    """The action's `with:` values, as strings ('' where not given)."""

    model: str
    data: str = ""
    images: str = ""
    baseline: str = ""
    budgets: tuple[tuple[str, str], ...] = ()  # (pytest option, value)
    pytest_args: str = ""
    ab_runs: str = "200"  # timed runs per model; quantlab ab's docs: 200 or more for a 10% loss on a shared runner

    @classmethod
    def from_env(cls, env=os.environ) -> Inputs:
        def value(name: str) -> str:
            return env.get("INPUT_" + name.upper().replace("-", "_"), "").strip()

        if not value("model"):
            raise SystemExit("quantlab action: the input `model` is required (the FP32 .onnx file to gate)")
        if bool(value("data")) == bool(value("images")):
            raise SystemExit("quantlab action: give exactly one of the inputs `data` (a data.yaml, labelled) "
                             "and `images` (a folder of unlabelled images)")
        budgets = tuple((option, value(name)) for name, option in BUDGET_INPUTS.items() if value(name))
        return cls(value("model"), value("data"), value("images"), value("baseline"), budgets, value("pytest-args"),
                   value("ab-runs") or cls.ab_runs)


def pytest_command(inputs: Inputs, out: Path) -> list[str]:
    """The suite on the user's model: gates, and the benchmarks timed into out/benchmark.json."""
    images = ["--quantlab-data", inputs.data] if inputs.data else ["--quantlab-calib", inputs.images]
    budgets = [part for option, value in inputs.budgets for part in (option, value)]
    return [sys.executable, "-m", "pytest", "-p", "quantlab", "-m", "quantlab", "--quantlab-model", inputs.model,
            *images, *budgets, f"--benchmark-json={out / 'benchmark.json'}",
            f"--junitxml={out / 'pytest.xml'}", *_split(inputs.pytest_args)]


def _split(args: str) -> list[str]:
    """The pytest-args input as a shell would split it; an unbalanced quote is the user's mistake, in one line."""
    try:
        return shlex.split(args)
    except ValueError as exc:
        raise SystemExit(f"quantlab action: pytest-args: {exc}: {for_terminal(args)}") from None


def ab_command(inputs: Inputs, out: Path) -> list[str]:
    """`quantlab ab`: the baseline and the user's model timed interleaved on this runner."""
    images = ["--data", inputs.data] if inputs.data else ["--images", inputs.images]
    return [sys.executable, "-m", "quantlab", "ab", "--baseline", inputs.baseline, "--candidate", inputs.model,
            *images, "--runs", inputs.ab_runs, "--out", str(out / "ab")]


def fetch_revision(baseline: str) -> None:
    """Fetch the baseline's revision when this shallow checkout lacks it (actions/checkout fetches one commit):
    `origin/main:m.onnx` fetches main into origin/main, `SHA:m.onnx` that commit."""
    if not is_revision(baseline):
        return
    rev = baseline.partition(":")[0]
    if rev.startswith("-"):  # never an option of git fetch; quantlab ab refuses it in one line
        return
    if _git("rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}").returncode == 0:
        return
    branch = rev.removeprefix("origin/")
    refspec = f"+refs/heads/{branch}:refs/remotes/origin/{branch}" if rev.startswith("origin/") else rev
    _git("fetch", "--no-tags", "--depth=1", "origin", refspec)


def _git(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["git", *args], capture_output=True, text=True)


def run(inputs: Inputs, out: Path) -> dict:
    """Run the suite, then the A/B check; out/state.json keeps what each returned."""
    out.mkdir(parents=True, exist_ok=True)
    for stale in RUN_OUTPUTS:  # an earlier run's, which this one might not replace
        shutil.rmtree(out / stale) if (out / stale).is_dir() else (out / stale).unlink(missing_ok=True)
    state = {"model": inputs.model, "baseline": inputs.baseline or None}
    with open(out / "pytest.log", "w", encoding="utf-8") as log:
        state["suite_exit"] = _tee(pytest_command(inputs, out), log)
    if inputs.baseline:
        fetch_revision(inputs.baseline)
        with open(out / "ab.log", "w", encoding="utf-8") as log:
            state["ab_exit"] = _tee(ab_command(inputs, out), log)
    (out / "state.json").write_text(json.dumps(state, indent=2), encoding="utf-8")
    write_chart(out / "benchmark.json", out / "chart.png")
    return state


def _tee(command: list[str], sink) -> int:
    """Run command, its output both in this step's log and in `sink`; its exit status."""
    print("$ " + shlex.join(command), flush=True)
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          errors="replace") as process:
        for line in process.stdout:
            sys.stdout.write(line)
            sink.write(line)
    return process.returncode


def verdict(state: dict) -> str:
    """pass, gates-failed, regression or error, from the suite's and quantlab ab's exit statuses."""
    suite, ab = state.get("suite_exit"), state.get("ab_exit")
    if suite not in (0, 1) or ab not in (None, 0, 1):
        return ERROR
    if ab == 1:
        return REGRESSION
    return GATES_FAILED if suite == 1 else PASS


VERDICT_LINES = {PASS: "**Pass**: every gate held{ab}.",
                 GATES_FAILED: "**Gates failed**: the quantized model is over a budget (below).",
                 REGRESSION: "**Regression**: the model is worse than the baseline on this runner (A/B below).",
                 ERROR: "**Error**: the run could not judge the model (see the log)."}


def failed_gates(junit: Path) -> list[tuple[str, str]]:
    """(test id, first line of its message) of each failed or erroring test in pytest's JUnit XML."""
    if not junit.is_file():
        return []
    failed = []
    for case in ET.parse(junit).iter("testcase"):
        problem = case.find("failure") if case.find("failure") is not None else case.find("error")
        if problem is not None:
            message = (problem.get("message") or problem.text or "").strip().splitlines()
            failed.append((case.get("name", "?"), message[0] if message else ""))
    return failed


def suite_variants(benchmark_json: Path) -> list:
    """The quantlab benchmarks of the suite's timed run (quantlab.benchjson.VariantResult); none where the run
    wrote no file or one without them (the suite stopped before timing)."""
    from quantlab.benchjson import load_run
    from quantlab.errors import QuantlabError

    if not benchmark_json.is_file():
        return []
    try:
        return list(load_run(benchmark_json).variants.values())
    except QuantlabError as error:
        print(workflow_command("warning", "quantlab", error), flush=True)
        return []


def variants_table(benchmark_json: Path) -> str:
    """One row per variant of the suite's timed run: gated, size, mAP50-95, speedup over FP32 [95%]."""
    variants = suite_variants(benchmark_json)
    if not variants:
        return ""
    lines = ["| Variant | Gated | Size (MB) | Size ratio | mAP50-95 | Speedup over FP32 [95%] |",
             "|---|---|---|---|---|---|"]
    for v in variants:
        interval = f" [{v.speedup_low:.2f}, {v.speedup_high:.2f}]" if v.has_interval else ""
        lines.append(f"| {for_markdown(v.variant)} | {'yes' if v.gated else 'no'} | {v.size_bytes / 1e6:.2f} "
                     f"| {_num(v.metrics.get('size_ratio'))} | {_num(v.metrics.get('map50_95'))} "
                     f"| {v.speedup:.2f}{interval} |")
    return "\n".join(lines)


def _num(value) -> str:
    return "-" if value is None else f"{value:.3f}"


def read_state(out: Path) -> dict:
    """What `run` kept in out/state.json; where it wrote none (it stopped on bad inputs), a state that
    judges nothing, so the verdict is error."""
    path = out / "state.json"
    if not path.is_file():
        return {"model": "(no run: see the log of the step before)", "baseline": None, "suite_exit": None}
    return json.loads(path.read_text(encoding="utf-8"))


def render_summary(out: Path, artifact_url: str = "") -> str:
    """The job summary and the PR comment: MARKER, the verdict, the suite's table and failures, the A/B table."""
    state = read_state(out)
    parts = [MARKER, f"## quantlab: {for_markdown(state['model'])}", "", VERDICT_LINES[verdict(state)].format(
        ab=" and the model is no worse than the baseline" if state.get("ab_exit") == 0 else "")]
    table = variants_table(out / "benchmark.json")
    parts += ["", "### Gates", "", table or "No benchmark was timed: the suite stopped early (see the log)."]
    failures = failed_gates(out / "pytest.xml")
    if failures:
        parts += ["", "Failed:"] + [f"- `{for_terminal(name)}`: {for_markdown(message)}" for name, message in failures]
    if state.get("baseline"):
        parts += ["", f"### A/B against {for_markdown(state['baseline'])}", "", _ab_table(out)]
    if artifact_url:
        parts += ["", "The report folder (benchmark.json for history, pytest.xml, ab/, the speedup chart chart.png): "
                      f"[the quantlab artifact]({artifact_url})."]
    return "\n".join(parts) + "\n"


def _ab_table(out: Path) -> str:
    """The table quantlab ab wrote (ab/ab.md), or, where it wrote none, the last line it printed: its error."""
    table = out / "ab" / "ab.md"
    if table.is_file():
        return table.read_text(encoding="utf-8").strip()
    log = (out / "ab.log").read_text(encoding="utf-8").strip().splitlines() if (out / "ab.log").is_file() else []
    return f"quantlab ab wrote no table: {for_markdown(log[-1]) if log else 'it printed nothing'}."


def outputs(out: Path) -> dict[str, str]:
    """The step outputs: verdict, exit-code, speedup (the first gated variant's over FP32), ab-speedup."""
    state = read_state(out)
    result = {"verdict": verdict(state), "exit-code": str(EXIT_CODES[verdict(state)]), "speedup": "",
              "ab-speedup": "", "report-dir": str(out)}
    gated = [v for v in suite_variants(out / "benchmark.json") if v.gated]
    result["speedup"] = f"{gated[0].speedup:.4f}" if gated else ""
    if (out / "ab" / "ab.json").is_file():
        ab = json.loads((out / "ab" / "ab.json").read_text(encoding="utf-8"))
        result["ab-speedup"] = f"{ab['candidate_speedup']['ratio']:.4f}"
    return result


def write_chart(benchmark_json: Path, path: Path) -> bool:
    """Each variant's speedup over FP32 with its 95% interval, as a PNG; False without matplotlib or a run."""
    plt = pyplot_or_none()
    if plt is None:
        return False
    variants = suite_variants(benchmark_json)
    if not variants:
        return False
    fig, ax = plt.subplots(figsize=(6, 3.5))
    errors = [[v.speedup - (v.speedup_low or v.speedup) for v in variants],
              [(v.speedup_high or v.speedup) - v.speedup for v in variants]]
    ax.bar([v.variant for v in variants], [v.speedup for v in variants], yerr=errors, capsize=4,
           color=["tab:blue" if v.gated else "tab:gray" for v in variants])
    ax.axhline(1.0, color="black", linewidth=0.8)
    ax.set_ylabel("speedup over FP32 (95% interval)")
    fig.tight_layout()
    fig.savefig(path, format="png")
    plt.close(fig)
    return True


def pull_request(event: dict) -> dict | None:
    """The event's pull request, or None when the run is not for one."""
    pr = event.get("pull_request")
    return pr if isinstance(pr, dict) and "number" in pr else None


def is_fork(pr: dict) -> bool:
    """Whether the pull request comes from another repository (a fork, or one since deleted): its workflow
    runs with a read-only token, and it gets no comment from us."""
    head = (pr.get("head") or {}).get("repo") or {}
    base = (pr.get("base") or {}).get("repo") or {}
    return not head.get("full_name") or head.get("full_name") != base.get("full_name")


def find_comment(comments: list[dict]) -> int | None:
    """The id of this action's earlier comment: a bot's comment that opens with MARKER (a person's comment
    quoting the marker is never edited)."""
    for comment in comments:
        if (comment.get("body") or "").startswith(MARKER) and (comment.get("user") or {}).get("type") == "Bot":
            return comment["id"]
    return None


def _gh(env, *args: str, body: str | None = None) -> subprocess.CompletedProcess:
    """`gh api ARGS` (GH_TOKEN from env), the body sent as JSON on stdin; a missing gh is a failed call."""
    stdin = None if body is None else json.dumps({"body": body})
    try:
        return subprocess.run(["gh", "api", *args], input=stdin, capture_output=True, text=True, env=env)
    except OSError as error:
        return subprocess.CompletedProcess(["gh"], 127, "", f"gh: {error.strerror}")


def post_comment(repo: str, number: int, body: str, env=os.environ) -> str:
    """Edit this action's comment on the pull request, or create it; what was done, in words."""
    comments, page = [], 1
    while True:
        listed = _gh(env, f"repos/{repo}/issues/{number}/comments?per_page=100&page={page}")
        if listed.returncode != 0:
            return _no_comment(listed)
        batch = json.loads(listed.stdout or "[]")
        comments += batch
        if len(batch) < 100:
            break
        page += 1
    existing = find_comment(comments)
    if existing is None:
        done = _gh(env, "--method", "POST", f"repos/{repo}/issues/{number}/comments", "--input", "-", body=body)
    else:
        done = _gh(env, "--method", "PATCH", f"repos/{repo}/issues/comments/{existing}", "--input", "-", body=body)
    if done.returncode != 0:
        return _no_comment(done)
    return f"{'updated' if existing else 'posted'} the comment on pull request #{number}"


def _no_comment(result: subprocess.CompletedProcess) -> str:
    why = for_terminal((result.stderr or result.stdout or "gh failed").strip().splitlines()[-1])
    print(workflow_command("warning", "quantlab", f"no pull-request comment ({why}): the workflow needs "
                           "`permissions: pull-requests: write`"), flush=True)
    return f"no comment: {why}"


def publish(out: Path, artifact_url: str = "", env=os.environ) -> int:
    """Write the job summary, the step outputs and the PR comment; the verdict's exit code."""
    body = render_summary(out, artifact_url)
    (out / "summary.md").write_text(body, encoding="utf-8")
    if env.get("GITHUB_STEP_SUMMARY"):
        with open(env["GITHUB_STEP_SUMMARY"], "a", encoding="utf-8") as summary:
            summary.write(body)
    values = outputs(out)
    if env.get("GITHUB_OUTPUT"):
        with open(env["GITHUB_OUTPUT"], "a", encoding="utf-8") as sink:
            sink.writelines(f"{name}={value}\n" for name, value in values.items())
    print(comment(body, env), flush=True)
    if values["verdict"] == ERROR:
        print("::error title=quantlab::the run could not judge the model: see the log above", flush=True)
    return int(values["exit-code"])


def comment(body: str, env=os.environ) -> str:
    """Post or update the PR comment where this run may: a pull request, not from a fork, comments on."""
    if env.get("INPUT_COMMENT", "true").strip().lower() == "false":
        return "no comment: the input `comment` is false"
    event_path = env.get("GITHUB_EVENT_PATH")
    event = json.loads(Path(event_path).read_text(encoding="utf-8")) if event_path else {}
    pr = pull_request(event)
    if pr is None:
        return "no comment: this run is not for a pull request"
    if is_fork(pr):
        return "no comment: the pull request comes from a fork (its token is read-only; no secrets for forks)"
    return post_comment(env["GITHUB_REPOSITORY"], pr["number"], body, env)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m quantlab.action", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="step", required=True)
    sub.add_parser("run", help="run the suite (and quantlab ab, given INPUT_BASELINE)").add_argument(
        "--out", required=True, type=Path, help="the report folder")
    step = sub.add_parser("publish", help="job summary, step outputs and PR comment; exit with the verdict")
    step.add_argument("--out", required=True, type=Path, help="the report folder `run` wrote")
    step.add_argument("--artifact-url", default="", help="where the report folder was uploaded")
    args = parser.parse_args(argv)
    if args.step == "run":
        run(Inputs.from_env(), args.out)
        return 0
    return publish(args.out, args.artifact_url)


if __name__ == "__main__":
    sys.exit(main())
