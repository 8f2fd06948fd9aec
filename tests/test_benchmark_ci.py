"""The benchmark history's surroundings: pytest-benchmark's CLI in the project root, the declared
floor of onnxruntime, and the workflows that compare runs."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
WORKFLOWS = ROOT / ".github" / "workflows"
CONSTRAINTS = ROOT / "constraints" / "ort-1.17.txt"


def test_pytest_benchmark_compare_runs_in_the_project_root(tmp_path):
    """pytest-benchmark's CLI builds a pytest config from our pytest.ini; `filterwarnings = error`
    must not turn pytest's assert-rewrite warning about hypothesis (imported by its plugin before
    pytest can rewrite it) into a crash."""
    cli = Path(sys.executable).with_name("pytest-benchmark")
    if not cli.exists():
        pytest.skip("pytest-benchmark's command is not installed beside this Python")
    run = {"machine_info": {"node": "vm", "machine": "x86_64", "cpu": {"brand_raw": "Test CPU"}},
           "commit_info": {"id": "abc"}, "datetime": "2026-11-01T10:00:00+00:00", "version": "5.3.1",
           "benchmarks": [{"group": None, "name": "test_latency[fp32]", "fullname": "t.py::test_latency[fp32]",
                           "params": None, "param": None, "extra_info": {}, "options": {},
                           "stats": {"min": 0.01, "max": 0.02, "mean": 0.012, "stddev": 0.001, "rounds": 10,
                                     "median": 0.012, "iqr": 0.001, "q1": 0.0115, "q3": 0.0125, "iqr_outliers": 0,
                                     "stddev_outliers": 0, "outliers": "0;0", "ld15iqr": 0.01, "hd15iqr": 0.02,
                                     "ops": 83.3, "total": 0.12, "iterations": 1}}]}
    saved = tmp_path / "run.json"
    saved.write_text(json.dumps(run))
    result = subprocess.run([str(cli), "compare", str(saved)], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "test_latency[fp32]" in result.stdout


def _floor_in_pyproject() -> str:
    text = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    return re.search(r'"onnxruntime>=([0-9.]+)"', text).group(1)


def test_the_oldest_onnxruntime_installs_from_a_declared_constraints_file():
    pins = {line.split("#")[0].strip() for line in CONSTRAINTS.read_text(encoding="utf-8").splitlines()} - {""}
    ort_pin = next(p for p in pins if p.startswith("onnxruntime=="))
    # the file pins the floor pyproject.toml admits, not some other version
    assert ort_pin.removeprefix("onnxruntime==").startswith(_floor_in_pyproject() + ".")
    assert "numpy<2" in pins  # onnxruntime 1.17's wheels do not import under numpy 2
    relative = CONSTRAINTS.relative_to(ROOT).as_posix()
    assert f"-c {relative}" in (ROOT / "README.md").read_text(encoding="utf-8")
    tests_yml = yaml.safe_load((WORKFLOWS / "tests.yml").read_text(encoding="utf-8"))
    include = tests_yml["jobs"]["pytest"]["strategy"]["matrix"]["include"]
    assert {"python": "3.11", "constraints": relative} in include
    install = next(s["run"] for s in tests_yml["jobs"]["pytest"]["steps"] if s.get("name") == "Install")
    assert "-c {0}" in install and "numpy<2" not in install  # the pins live in the file, not in the workflow


def _benchmark_steps() -> dict[str, dict]:
    workflow = yaml.safe_load((WORKFLOWS / "benchmark.yml").read_text(encoding="utf-8"))
    return {step.get("name", step.get("uses")): step for step in workflow["jobs"]["benchmark"]["steps"]}


def test_the_benchmark_workflow_compares_even_when_the_speed_gate_failed():
    steps = _benchmark_steps()
    names = list(steps)
    after_bench = names[names.index("Benchmark (same-run speed gate)") + 1:]
    for name in ("Find the baseline saved from main", "Compare with the baseline", "Export for github-action-benchmark",
                 "Upload this run's benchmark JSON, comparison and export"):
        assert name in after_bench
        assert "!cancelled()" in steps[name]["if"], name  # not the implicit success()
    compare = steps["Compare with the baseline"]["run"]
    assert 'quantlab compare baseline/candidate.json candidate.json > comparison.md' in compare
    assert compare.index('>> "$GITHUB_STEP_SUMMARY"') < compare.index('exit "$status"')  # table first, then fail


def test_a_missing_baseline_is_a_visible_warning_and_the_baseline_outlives_a_cache():
    steps = _benchmark_steps()
    find = steps["Find the baseline saved from main"]["run"]
    assert "::warning title=No benchmark baseline::" in find and "No benchmark baseline" in find.split("else", 1)[1]
    assert '>> "$GITHUB_STEP_SUMMARY"' in find.split("else", 1)[1]
    assert "gh run download" in find and "--status success" in find
    assert not any("actions/cache" in s.get("uses", "") for s in steps.values())
    save = steps["Save the baseline (main only)"]
    assert save["uses"].startswith("actions/upload-artifact@") and "refs/heads/main" in save["if"]
    assert save["if"].startswith("${{ success()")  # a run whose gates failed never becomes the baseline


def test_workflows_use_the_plugins_prefixed_options():
    for path in WORKFLOWS.glob("*.yml"):
        runs = " ".join(s.get("run", "") for job in yaml.safe_load(path.read_text())["jobs"].values()
                        for s in job["steps"])
        assert not re.search(r"(?<![\w-])--(threads|model|recipes|providers|data|calib)\b", runs), path.name


def _noise_check():
    import importlib.util

    spec = importlib.util.spec_from_file_location("noise_check", ROOT / "tools" / "noise_check.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _suite_run(variants: dict[str, float]) -> dict:
    """A minimal saved run: {variant: speedup}, +-2% intervals, one setup."""
    setup = {"host": "0123456789abcdef", "cpu": "CPU", "threads": 1, "providers": ["CPUExecutionProvider"],
             "onnxruntime": "1.32.0", "python": "3.11.7"}
    return {"machine_info": {}, "commit_info": {"id": "abc"}, "datetime": "2026-11-01T10:00:00+00:00",
            "benchmarks": [{"name": f"test_latency[{name}]",
                            "extra_info": {"variant": name, "speedup": s, "speedup_low": s * 0.98,
                                           "speedup_high": s * 1.02, "size_bytes": 1000, "gated": name != "fp32",
                                           "setup": setup},
                            "stats": {"median": 0.012 / s, "q1": 0.0118 / s, "q3": 0.0122 / s}}
                           for name, s in variants.items()]}


def test_noise_check_relabels_a_slower_recipe_and_reads_the_comparison(tmp_path):
    """The lead's script, without running a benchmark: its relabelling and its reading of the table."""
    noise_check = _noise_check()
    base, slow = tmp_path / "base.json", tmp_path / "slow.json"
    base.write_text(json.dumps(_suite_run({"fp32": 1.0, "auto": 1.9})))
    slow.write_text(json.dumps(_suite_run({"fp32": 1.0, "s8s8": 0.8})))
    cand = noise_check.relabel(slow, "s8s8", "auto")
    args = type("Args", (), {"python": sys.executable})()
    code, regressions = noise_check.compare(args, base, cand)
    assert code == 1 and ("auto", "speedup") in regressions and ("auto", "median_ms") in regressions
    assert round(noise_check.slowdown(base, cand), 3) == round(1.9 / 0.8, 3)
    assert noise_check.compare(args, base, base) == (0, [])
