"""quantlab compare, history and export on hand-made pytest-benchmark JSON runs.

The runs copy the shape of a real `pytest --benchmark-only --benchmark-json` file of the suite
(pytest-benchmark 5.3, trimmed machine_info), with the keys the plugin writes into extra_info.
"""

from __future__ import annotations

import copy
import json
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from quantlab.benchjson import load_run
from quantlab.cli import main
from quantlab.compare import Status, compare_runs

MACHINE = {"node": "vm", "processor": "", "machine": "x86_64", "python_implementation": "CPython",
           "python_version": "3.11.7", "system": "Linux", "cpu": {"arch": "X86_64", "brand_raw": "AMD EPYC",
                                                                  "count": 2, "flags": ["avx512_vnni"]}}
# the FP32 model's hash (quantlab.onnxmodel.model_sha256) as two exports would give it
YOLOV8, YOLO11 = "8" * 64, "b" * 64
SETUP = {"host": "0123456789abcdef", "cpu": "AMD EPYC", "threads": 1, "providers": ["CPUExecutionProvider"],
         "onnxruntime": "1.32.0", "python": "3.11.7"}


def _stats(median_ms: float, spread: float = 0.02) -> dict:
    """pytest-benchmark's stats (seconds) around a median, the quartiles `spread` of it either side."""
    m = median_ms / 1e3
    return {"min": m * 0.95, "max": m * 1.3, "mean": m * 1.01, "stddev": m * spread * 2, "rounds": 100,
            "median": m, "iqr": m * spread * 2, "q1": m * (1 - spread), "q3": m * (1 + spread), "iqr_outliers": 3,
            "stddev_outliers": 5, "outliers": "5;3", "ld15iqr": m * 0.95, "hd15iqr": m * 1.1, "ops": 1 / m,
            "total": m * 100, "iterations": 1}


def _bench(variant: str, *, speedup: float, interval: float | None = 0.03, median_ms: float, gated: bool,
           size: int, map50_95: float | None = 0.73, setup: dict | None = SETUP, old: bool = False,
           memory: int | None = None, model: str | None = YOLOV8) -> dict:
    """One quantlab benchmark; `interval` is the speedup's relative 95% half-width; old=True: an older plugin's."""
    info = {"variant": variant, "size_bytes": size, "size_ratio": size / 8_410_227, "map50": 0.93,
            "map50_95": map50_95, "map_drop": None if map50_95 is None else 0.737 - map50_95, "agreement": 0.99,
            "box_cosine": 0.9999, "score_cosine": 0.999, "top1_agreement": 0.99,
            "recipe": None if variant == "fp32" else {"name": variant}, "onnxruntime": "1.32.0", "threads": 1,
            "speedup": speedup}
    if not old:
        low, high = (1.0, 1.0) if variant == "fp32" else (speedup * (1 - interval), speedup * (1 + interval))
        info.update(speedup_low=low, speedup_high=high, gated=gated, setup=copy.deepcopy(setup), model_sha256=model)
        if memory is not None:
            info.update(memory_bytes=memory, memory_spread=0.01, memory_ratio=memory / 33_300_000)
    return {"group": "yolov8n_shapes_pruned.onnx", "name": f"test_latency[{variant}]",
            "fullname": f"quantlab/suite/test_benchmarks.py::test_latency[{variant}]", "params": {"variant": variant},
            "param": variant, "extra_info": info, "options": {"timer": "perf_counter", "min_rounds": 5},
            "stats": _stats(median_ms)}


def _run(speedup=1.9, interval=0.03, size=2_440_000, map50_95=0.734, median_ms=6.7, dynamic_ms=40.0,
         setup=SETUP, when="2026-11-01T10:00:00.000000+00:00", old=False, memory=24_300_000, model=YOLOV8) -> dict:
    """A run of fp32, auto (gated) and dynamic (contrast, gated false)."""
    return {"machine_info": copy.deepcopy(MACHINE),
            "commit_info": {"id": "abcdef1234567890", "time": when, "dirty": False, "project": "quantlab",
                            "branch": "main"},
            "datetime": when, "version": "5.3.1",
            "benchmarks": [
                _bench("fp32", speedup=1.0, median_ms=12.7, gated=False, size=8_410_227, map50_95=0.737,
                       setup=setup, old=old, model=model),
                _bench("auto", speedup=speedup, interval=interval, median_ms=median_ms, gated=True, size=size,
                       map50_95=map50_95, setup=setup, old=old, memory=memory, model=model),
                _bench("dynamic", speedup=0.33, median_ms=dynamic_ms, gated=False, size=2_280_000,
                       map50_95=0.735, setup=setup, old=old, model=model),
            ]}


def _write(folder, name: str, run: dict):
    path = folder / name
    path.write_text(json.dumps(run))
    return path


def _compare(tmp_path, capsys, baseline: dict, candidate: dict) -> tuple[int, str]:
    code = main(["compare", str(_write(tmp_path, "base.json", baseline)), str(_write(tmp_path, "cand.json", candidate))])
    return code, capsys.readouterr().out


def _result(out: str, variant: str, metric: str) -> str:
    """The Result cell of one row of the Markdown table."""
    for line in out.splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if cells[:2] == [variant, metric]:
            return cells[-1]
    raise AssertionError(f"no row {variant} {metric} in:\n{out}")


OTHER_HOST = {**SETUP, "host": "fedcba9876543210"}


@pytest.mark.parametrize(
    ("candidate", "exit_code", "row_variant", "metric", "result"),
    [
        # a rerun of the same commit: the speedup moved, but inside overlapping intervals
        (_run(speedup=1.82), 0, "auto", "speedup", "ok"),
        # an INT8 25% slower (speedup / 1.25): the intervals are far apart
        (_run(speedup=1.9 / 1.25), 1, "auto", "speedup", "REGRESSION: speedup interval"),
        # an 8% loss that the +-3% intervals and the 5% floor do not separate (it takes 10.5%): not flagged
        (_run(speedup=1.9 * 0.92), 0, "auto", "speedup", "ok"),
        (_run(size=2_700_000), 1, "auto", "size_bytes", "REGRESSION: size_bytes grew by 10.7%"),
        (_run(map50_95=0.72), 1, "auto", "map50_95", "REGRESSION: map50_95 lost 0.0140"),
        # same setup dict: absolute latency is gated, and 35% slower is past the quartiles + 20%
        (_run(median_ms=6.7 * 1.35), 1, "auto", "median_ms", "REGRESSION: first quartile"),
        # same setup, 10% slower: inside the tolerance
        (_run(median_ms=6.7 * 1.10), 0, "auto", "median_ms", "ok"),
        # another host (another CI runner): absolute latency is never gated
        (_run(median_ms=6.7 * 1.35, setup=OTHER_HOST), 0, "auto", "median_ms",
         "not gated: other machine or setup (host differs)"),
        # a contrast variant (gated false) twice as slow on the same setup: shown, not gated
        (_run(dynamic_ms=80.0), 0, "dynamic", "median_ms", "not gated: contrast variant (gated false)"),
        # the speedup of a run on another CPU model is not like for like: the gate cannot judge it
        (_run(speedup=1.2, setup={**SETUP, "cpu": "Intel Xeon"}), 0, "auto", "speedup",
         "inconclusive: not like for like: cpu 'AMD EPYC' vs 'Intel Xeon'"),
        # nor one with other execution providers
        (_run(speedup=1.2, setup={**SETUP, "providers": ["CUDAExecutionProvider", "CPUExecutionProvider"]}), 0,
         "auto", "speedup", "inconclusive: not like for like: providers"),
        # session memory 20% larger: past 10% + the two runs' 1% spreads
        (_run(memory=int(24_300_000 * 1.2)), 1, "auto", "memory_bytes", "REGRESSION: session memory grew by 20.0%"),
        # 8% larger: inside 10% + spreads
        (_run(memory=int(24_300_000 * 1.08)), 0, "auto", "memory_bytes", "ok"),
        # another onnxruntime allocates differently: not like for like
        (_run(memory=int(24_300_000 * 1.2), setup={**SETUP, "onnxruntime": "1.31.1"}), 0, "auto", "memory_bytes",
         "inconclusive: not like for like"),
    ],
    ids=["rerun-within-noise", "int8-25pct-slower", "loss-inside-noise", "size-increase", "map-drop",
         "slower-same-setup", "slightly-slower-same-setup", "slower-other-host", "contrast-slower",
         "speedup-other-cpu", "speedup-other-providers", "memory-growth", "memory-within-tolerance",
         "memory-other-onnxruntime"],
)
def test_compare_gates_each_metric(tmp_path, capsys, candidate, exit_code, row_variant, metric, result):
    code, out = _compare(tmp_path, capsys, _run(), candidate)
    assert code == exit_code, out
    assert _result(out, row_variant, metric).startswith(result)
    assert "| Variant | Metric | Baseline | Candidate | Change | Tolerance | Result |" in out
    inconclusive = result.startswith("inconclusive")
    assert ("**No regression.**" in out) == (exit_code == 0 and not inconclusive)
    verdict = out.rstrip().splitlines()[-1]
    assert verdict.startswith("**Inconclusive:** ") == inconclusive
    assert ("could not be judged: not like for like" in verdict) == inconclusive


@pytest.mark.parametrize(
    ("half_width", "loss", "exit_code"),
    [
        (0.01, 0.09, 1),  # tight +-1% intervals: a 9% loss is real (it fires from 6.9%), a fixed 10% would miss it
        (0.01, 0.05, 0),  # but not a loss under the 5% floor
        (0.08, 0.15, 0),  # wide +-8% intervals: a 15% loss is inside the noise (it fires from 19.1%)
        (0.08, 0.25, 1),  # and a 25% one is not
    ],
    ids=["tight-9pct-loss", "tight-5pct-loss", "wide-15pct-loss", "wide-25pct-loss"],
)
def test_the_speedup_tolerance_follows_the_measured_intervals(tmp_path, capsys, half_width, loss, exit_code):
    code, out = _compare(tmp_path, capsys, _run(interval=half_width), _run(speedup=1.9 * (1 - loss), interval=half_width))
    assert code == exit_code, out
    fires_at = 1 - (1 - half_width) * 0.95 / (1 + half_width)
    assert f"| -{fires_at:.1%} (measured) |" in out  # the Tolerance column says where it fires


@given(speedup=st.floats(1.1, 4.0), half_width=st.floats(0.002, 0.05), jitter=st.floats(-1.0, 1.0))
def test_25pct_slower_int8_is_flagged_and_reruns_within_their_intervals_are_not(speedup, half_width, jitter):
    """With measured intervals up to +-5%: a 25% slower INT8 always fails; a rerun whose point
    estimate lies inside the baseline's interval never does."""
    base = _loaded(_run(speedup=speedup, interval=half_width))
    slower = _loaded(_run(speedup=speedup / 1.25, interval=half_width))
    rerun = _loaded(_run(speedup=speedup * (1 + jitter * half_width), interval=half_width))
    assert _speedup_status(compare_runs(base, slower)) is Status.REGRESSION
    assert _speedup_status(compare_runs(base, rerun)) is Status.OK


def _loaded(run: dict):
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as folder:
        return load_run(_write(Path(folder), "run.json", run))


def _speedup_status(comparison) -> Status:
    return next(r.status for r in comparison.rows if r.variant == "auto" and r.metric == "speedup")


def test_old_runs_without_interval_or_setup_get_a_conservative_tolerance_and_say_so(tmp_path, capsys):
    # the measured false alarm: two runs of one commit, sequential-median speedups 1.958 and 1.597
    code, out = _compare(tmp_path, capsys, _run(speedup=1.958, old=True), _run(speedup=1.597, old=True))
    assert code == 0, out
    assert _result(out, "auto", "speedup") == "ok"
    assert "no measured speedup interval" in out and "assumed +-10% per run" in out
    assert "(assumed noise)" in out
    # absolute latency: no setup, so the same machine is not provable
    assert _result(out, "auto", "median_ms").startswith("not gated: no 'setup' in the baseline and candidate")
    # a loss far beyond the assumed noise still fails
    code, out = _compare(tmp_path, capsys, _run(speedup=1.958, old=True), _run(speedup=1.1, old=True))
    assert code == 1 and _result(out, "auto", "speedup").startswith("REGRESSION")


def test_an_old_baseline_against_a_new_candidate_uses_the_measured_interval_where_there_is_one(tmp_path, capsys):
    # 1.9 -> 1.57 (-17%): the baseline's assumed +-10% and the candidate's measured +-3% separate;
    # had the candidate been given the assumed +-10% too, they would not
    code, out = _compare(tmp_path, capsys, _run(speedup=1.9, old=True), _run(speedup=1.57))
    assert code == 1 and _result(out, "auto", "speedup").startswith("REGRESSION")
    notes = [line for line in out.splitlines() if line.startswith("- ")]
    assert len(notes) == 1 and notes[0].startswith("- base.json: no measured speedup interval")


@pytest.mark.parametrize(
    ("missing", "index", "exit_code", "result"),
    [("auto", 1, 1, "REGRESSION: variant missing from the candidate run"),
     ("dynamic", 2, 0, "not gated: contrast variant missing from the candidate run")],
    ids=["gated-variant-missing", "contrast-variant-missing"],
)
def test_a_variant_missing_from_the_candidate(tmp_path, capsys, missing, index, exit_code, result):
    cand = _run()
    del cand["benchmarks"][index]
    code, out = _compare(tmp_path, capsys, _run(), cand)
    assert code == exit_code and _result(out, missing, "present") == result


def test_runs_with_no_gated_metric_in_common_are_not_called_free_of_regressions(tmp_path, capsys):
    # was: exit 0 and "No regression." although nothing was compared (every variant gated false)
    base = _run()
    base["benchmarks"][1]["extra_info"]["gated"] = False
    code = main(["compare", str(_write(tmp_path, "base.json", base)), str(_write(tmp_path, "cand.json", _run()))])
    out, err = capsys.readouterr()
    assert code == 2 and "No regression" not in out and "Nothing compared" in out
    assert "cand.json: none of its gated metrics can be compared" in err


def test_benchmarks_without_quantlab_metrics_beside_quantlab_ones_are_left_out_and_counted(tmp_path, capsys):
    cand = _run()
    cand["benchmarks"].append({"name": "test_my_parser", "extra_info": {}, "stats": _stats(0.5)})
    code, out = _compare(tmp_path, capsys, _run(), cand)
    assert code == 0 and "cand.json: 1 benchmark(s) without quantlab metrics left out." in out
    assert "test_my_parser" not in out


def _without(path: str):
    """A run with one key removed: path 'benchmarks.1.stats.median' (list indices as numbers)."""
    def edit(run):
        *parents, last = path.split(".")
        node = run
        for key in parents:
            node = node[int(key)] if isinstance(node, list) else node[key]
        del node[int(last) if isinstance(node, list) else last]
    return edit


def _setting(path: str, value):
    def edit(run):
        *parents, last = path.split(".")
        node = run
        for key in parents:
            node = node[int(key)] if isinstance(node, list) else node[key]
        node[int(last) if isinstance(node, list) else last] = value
    return edit


def _plain_pytest_benchmark(run):
    """A pytest-benchmark JSON of some other project: no quantlab keys at all."""
    for bench in run["benchmarks"]:
        bench["extra_info"] = {}


MALFORMED = [
    # (id, edit of a good run, what the message must say)
    ("no-quantlab-metrics", _plain_pytest_benchmark, "no quantlab metrics in any of its 3 benchmark(s)"),
    ("no-benchmarks", _setting("benchmarks", []), "no quantlab metrics in any of its 0 benchmark(s)"),
    ("benchmarks-not-a-list", _setting("benchmarks", {}), "no 'benchmarks' list"),
    ("missing-stats", _without("benchmarks.1.stats"), "'test_latency[auto]': no 'stats'"),
    ("stats-not-an-object", _setting("benchmarks.1.stats", [1, 2]), "'stats' is a list"),
    ("stats-without-median", _without("benchmarks.1.stats.median"), "'stats' has no 'median'"),
    # the 2449% 'regression' of the old compare was read from a median of 0
    ("median-zero", _setting("benchmarks.1.stats.median", 0), "stats 'median' is 0, expected a number above 0"),
    ("median-a-string", _setting("benchmarks.1.stats.median", "fast"), "stats 'median' is the string 'fast'"),
    ("extra-info-without-speedup", _without("benchmarks.1.extra_info.speedup"), "extra_info lacks quantlab's speedup"),
    ("extra-info-not-an-object", _setting("benchmarks.1.extra_info", "auto"), "'extra_info' is the string 'auto'"),
    ("speedup-infinite", _setting("benchmarks.1.extra_info.speedup", math.inf), "'speedup' is Infinity"),
    ("size-negative", _setting("benchmarks.1.extra_info.size_bytes", -1), "'size_bytes' is -1, expected a number above 0"),
    ("map-a-list", _setting("benchmarks.1.extra_info.map50_95", [0.7]), "'map50_95' is a list"),
    ("half-an-interval", _without("benchmarks.1.extra_info.speedup_high"), "only one of speedup_low and speedup_high"),
    ("interval-inverted", _setting("benchmarks.1.extra_info.speedup_low", 9.0), "is empty (low above high)"),
    ("gated-a-string", _setting("benchmarks.1.extra_info.gated", "yes"), "'gated' is the string 'yes'"),
    ("setup-not-an-object", _setting("benchmarks.1.extra_info.setup", "ci"), "'setup' is the string 'ci'"),
    ("benchmark-not-an-object", _setting("benchmarks.1", 42), "benchmarks[1] is 42, expected an object"),
    ("two-benchmarks-of-one-variant", _setting("benchmarks.2.extra_info.variant", "auto"),
     "a second benchmark of variant 'auto'"),
    ("machine-info-not-an-object", _setting("machine_info", "x86_64"), "'machine_info' is the string 'x86_64'"),
    ("commit-info-not-an-object", _setting("commit_info", ["abc"]), "'commit_info' is a list"),
    ("missing-datetime", _without("datetime"), "no 'datetime'"),
    ("bad-datetime", _setting("datetime", "yesterday"), "'datetime' 'yesterday' is not an ISO 8601"),
    ("datetime-a-number", _setting("datetime", 1732780800), "'datetime' is 1732780800, expected an ISO 8601"),
]


@pytest.mark.parametrize("command", ["compare", "history", "export"])
@pytest.mark.parametrize(("edit", "message"), [c[1:] for c in MALFORMED], ids=[c[0] for c in MALFORMED])
def test_malformed_benchmark_json_is_refused_naming_the_file_and_what_is_missing(
        tmp_path, capsys, command, edit, message):
    storage = tmp_path / ".benchmarks" / "Linux-CPython-3.11-64bit"
    storage.mkdir(parents=True)
    good = _write(storage, "0001_good.json", _run())
    bad_run = _run(when="2026-11-02T10:00:00+00:00")
    edit(bad_run)
    bad = _write(storage, "0002_bad.json", bad_run)
    argv = {"compare": ["compare", str(good), str(bad)], "history": ["history", str(tmp_path / ".benchmarks")],
            "export": ["export", str(bad), "--bigger-is-better", str(tmp_path / "out.json")]}[command]
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert captured.out == ""  # no table, no verdict: the run was refused, neither passed nor failed
    assert captured.err.startswith(f"quantlab: error: {bad}") and captured.err.count("\n") == 1
    assert message in captured.err
    assert not (tmp_path / "out.json").exists()


def test_an_unreadable_baseline_fails_loudly(tmp_path, capsys):
    base = tmp_path / "base.json"
    base.write_text("{not json")
    assert main(["compare", str(base), str(_write(tmp_path, "c.json", _run()))]) == 2
    err = capsys.readouterr().err
    assert str(base) in err and "not valid JSON" in err and err.count("\n") == 1


def test_storage_folder_compares_its_two_newest_runs_and_shows_history(tmp_path, capsys):
    storage = tmp_path / ".benchmarks" / "Linux-CPython-3.11-64bit"
    storage.mkdir(parents=True)
    # file names out of date order: the datetime inside decides
    _write(storage, "0003_a.json", _run(when="2026-11-01T10:00:00+00:00"))
    _write(storage, "0001_b.json", _run(when="2026-11-02T10:00:00+00:00"))
    _write(storage, "0002_c.json", _run(speedup=1.4, when="2026-11-03T10:00:00+00:00"))
    assert main(["compare", str(tmp_path / ".benchmarks")]) == 1
    assert "0001_b.json -> 0002_c.json" in capsys.readouterr().out
    assert main(["history", str(tmp_path / ".benchmarks")]) == 0
    history = capsys.readouterr().out.splitlines()
    assert history[0] == ("| Date | Commit | fp32 speedup / MB / mAP50-95 | auto speedup / MB / mAP50-95 "
                          "| dynamic speedup / MB / mAP50-95 |")
    assert len(history) == 5 and history[2].startswith("| 2026-11-01T10:00:00 | abcdef12 |")
    assert "| 1.4 [1.36, 1.44] / 2.44 / 0.734 |" in history[4]


def test_one_saved_run_is_not_enough_to_compare(tmp_path, capsys):
    _write(tmp_path, "only.json", _run())
    assert main(["compare", str(tmp_path)]) == 2
    assert "need two saved runs to compare, found 1" in capsys.readouterr().err


def test_export_writes_github_action_benchmark_custom_json(tmp_path, capsys):
    run = _write(tmp_path, "run.json", _run())
    bigger, smaller = tmp_path / "bigger.json", tmp_path / "smaller.json"
    assert main(["export", str(run), "--bigger-is-better", str(bigger), "--smaller-is-better", str(smaller)]) == 0
    bigger_entries, smaller_entries = json.loads(bigger.read_text()), json.loads(smaller.read_text())
    for entry in bigger_entries + smaller_entries:  # the action's custom format
        assert {"name", "unit", "value"} <= entry.keys() <= {"name", "unit", "value", "range", "extra"}
        assert isinstance(entry["name"], str) and isinstance(entry["value"], (int, float))
    by_name = {e["name"]: e for e in bigger_entries}
    assert by_name["auto speedup over FP32"]["value"] == 1.9 and by_name["auto speedup over FP32"]["unit"] == "x"
    assert by_name["auto speedup over FP32"]["range"] == "1.8430 to 1.9570 (95%)"
    assert by_name["auto mAP50-95"]["value"] == 0.734 and "fp32 speedup over FP32" not in by_name
    assert "gated" in by_name["auto mAP50-95"]["extra"] and "cpu AMD EPYC" in by_name["auto mAP50-95"]["extra"]
    # smaller is better: the size ratio, FP32's (always 1) left out
    assert [e["name"] for e in smaller_entries] == ["auto size ratio to FP32", "dynamic size ratio to FP32"]
    assert smaller_entries[0]["value"] == round(2_440_000 / 8_410_227, 4)


def test_export_needs_an_output(tmp_path, capsys):
    assert main(["export", str(_write(tmp_path, "run.json", _run()))]) == 2
    assert "--bigger-is-better FILE and/or --smaller-is-better FILE" in capsys.readouterr().err


@pytest.mark.parametrize("map50_95", [5.0, -1.0], ids=["above-1", "below-0"])
def test_a_map_no_run_can_hold_is_refused_not_judged(tmp_path, capsys, map50_95):
    """Was: 5.0 compared as "No regression" (exit 0), -1.0 as a regression (exit 1)."""
    code = main(["compare", str(_write(tmp_path, "base.json", _run())),
                 str(_write(tmp_path, "cand.json", _run(map50_95=map50_95)))])
    err = capsys.readouterr().err
    assert code == 2 and "'map50_95' is" in err and "outside [0, 1]" in err


def test_a_halved_speedup_on_another_cpu_model_is_inconclusive_never_no_regression(tmp_path, capsys, monkeypatch):
    """The issue's case: ubuntu-latest gave the candidate another CPU model and the speedup went 2.0 -> 1.0."""
    monkeypatch.delenv("GITHUB_ACTIONS", raising=False)
    base, cand = _run(speedup=2.0), _run(speedup=1.0, setup={**SETUP, "cpu": "Intel Xeon"})
    code, out = _compare(tmp_path, capsys, base, cand)
    assert code == 0 and "No regression" not in out
    assert _result(out, "auto", "speedup") == "inconclusive: not like for like: cpu 'AMD EPYC' vs 'Intel Xeon'"
    assert out.rstrip().splitlines()[-1] == ("**Inconclusive:** 1 gated metric could not be judged: not like for "
                                             "like: cpu 'AMD EPYC' vs 'Intel Xeon' (auto speedup).")
    # under GitHub Actions: a warning annotation on stderr, the table unchanged on stdout
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    argv = ["compare", str(tmp_path / "base.json"), str(tmp_path / "cand.json")]
    assert main(argv) == 0
    captured = capsys.readouterr()
    assert captured.out == out
    assert captured.err == ("::warning title=quantlab compare inconclusive::1 gated metric could not be judged: not "
                            "like for like: cpu 'AMD EPYC' vs 'Intel Xeon' (auto speedup)\n")
    # and a gate that must judge fails
    assert main([*argv, "--fail-on-inconclusive"]) == 1
    capsys.readouterr()
    # a judged comparison neither warns nor fails under the option
    _write(tmp_path, "cand.json", _run(speedup=1.95))
    assert main([*argv, "--fail-on-inconclusive"]) == 0
    captured = capsys.readouterr()
    assert captured.err == "" and "**No regression.**" in captured.out


def test_the_warning_is_one_workflow_command_whatever_the_file_holds(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    cand = _run(setup={**SETUP, "cpu": "100% \n::error::pwned"})
    assert _compare(tmp_path, capsys, _run(), cand)[0] == 0
    main(["compare", str(tmp_path / "base.json"), str(tmp_path / "cand.json")])
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("::warning title=quantlab compare inconclusive::")
    assert "'100%25 \\n::error::pwned'" in err  # % encoded as the runner reads it; the newline shown, not obeyed


def test_a_regression_beside_an_inconclusive_metric_still_fails_and_says_both(tmp_path, capsys):
    code, out = _compare(tmp_path, capsys, _run(), _run(size=2_700_000, setup={**SETUP, "threads": 2}))
    assert code == 1 and _result(out, "auto", "size_bytes").startswith("REGRESSION")
    assert out.rstrip().splitlines()[-1].startswith("**1 regression(s)**; 1 gated metric could not be judged: "
                                                    "not like for like: threads 1 vs 2 (auto speedup)")


def test_an_accuracy_metric_one_run_lacks_is_inconclusive(tmp_path, capsys):
    code, out = _compare(tmp_path, capsys, _run(), _run(map50_95=None))
    assert code == 0 and "No regression" not in out
    assert _result(out, "auto", "map50_95").startswith("inconclusive: only the baseline has it")


def test_a_changed_fp32_model_is_said_and_its_numbers_are_not_judged(tmp_path, capsys):
    """A yolo11 baseline against a yolov8 candidate: was "No regression" with no word that the models differ."""
    base = _run(model=YOLO11, speedup=2.4, size=2_900_000, map50_95=0.76)
    cand = _run(model=YOLOV8, speedup=1.5, size=2_440_000, map50_95=0.70)  # a regression, were it one model
    code, out = _compare(tmp_path, capsys, base, cand)
    assert code == 0 and "No regression" not in out and "REGRESSION" not in out
    assert f"- The FP32 model changed (sha256 {YOLO11[:12]} in base.json, {YOLOV8[:12]} in cand.json)" in out
    for metric in ("speedup", "size_bytes", "map50_95", "agreement", "score_cosine", "memory_bytes", "median_ms"):
        assert _result(out, "auto", metric) == "inconclusive: the FP32 model changed", metric
    assert _result(out, "dynamic", "speedup").startswith("not gated")  # contrasts stay shown, not gated
    assert out.rstrip().splitlines()[-1].startswith("**Inconclusive:** 7 gated metrics could not be judged: "
                                                    "the FP32 model changed (auto speedup, auto size_bytes")
    # the same model on both sides: judged as before
    code, out = _compare(tmp_path, capsys, _run(model=YOLO11), _run(model=YOLO11, speedup=1.5))
    assert code == 1 and "model changed" not in out


def test_a_run_that_does_not_record_its_model_is_judged_as_before(tmp_path, capsys):
    code, out = _compare(tmp_path, capsys, _run(model=None), _run(model=YOLO11, speedup=1.5))
    assert code == 1 and "model changed" not in out


def _storage(tmp_path, speedups, **run):
    """A storage folder of runs one day apart, the last one the candidate."""
    folder = tmp_path / "storage"
    folder.mkdir(parents=True)
    for day, speedup in enumerate(speedups, start=1):
        _write(folder, f"{day:04d}_run.json", _run(speedup=speedup, when=f"2026-11-{day:02d}T10:00:00+00:00",
                                                   **run))
    return folder


# the measured pair (two runs of one commit on a loaded 2-core machine: 2.050 [2.039, 2.061] and
# 1.728 [1.720, 1.782], a 15.7% "regression") after earlier runs of that commit that spread as widely
SAME_COMMIT = [1.95, 1.78, 2.01, 1.86, 2.050]


def test_the_speedup_tolerance_is_learnt_from_the_history_of_the_same_setup(tmp_path, capsys):
    folder = _storage(tmp_path, [*SAME_COMMIT, 1.728], interval=0.005)
    assert main(["compare", str(folder)]) == 0
    out = capsys.readouterr().out
    spread = (2.050 - 1.78) / 2 / 1.95
    assert _result(out, "auto", "speedup") == "ok" and f"(history of 5 runs: +-{spread:.1%}) |" in out
    assert "Speedup history" not in out
    # the same two runs as files, without their history: the in-run intervals alone call it a regression
    code, out = _compare(tmp_path, capsys, _run(speedup=2.050, interval=0.005), _run(speedup=1.728, interval=0.005))
    assert code == 1 and _result(out, "auto", "speedup").startswith("REGRESSION")
    # a real loss beyond the history's spread is still flagged
    assert main(["compare", str(_storage(tmp_path / "slow", [*SAME_COMMIT, 2.050 / 1.6], interval=0.005))]) == 1
    result = _result(capsys.readouterr().out, "auto", "speedup")
    assert result.startswith("REGRESSION: speedup interval")
    assert result.endswith("(both widened to the history's spread)")


def test_only_the_last_runs_count_and_the_candidate_is_not_its_own_history(tmp_path, capsys):
    # an old outlier (1.0) ages out of the last 3 runs; the candidate (1.4) never widens its own tolerance
    folder = _storage(tmp_path, [1.0, 2.0, 2.02, 1.98, 1.4], interval=0.005)
    assert main(["compare", str(folder), "--history-runs", "3"]) == 1
    out = capsys.readouterr().out
    assert _result(out, "auto", "speedup").startswith("REGRESSION") and "(history of 3 runs: +-1.0%)" in out


@pytest.mark.parametrize(
    ("earlier", "runs"),
    [
        # (edit of the runs before the baseline, how many of the earlier runs are like it)
        ({}, 2),  # two runs like the baseline (the baseline itself included): one short
        ({"setup": OTHER_HOST}, 1),  # another host's runs are another setup
        ({"model": YOLO11}, 1),  # another FP32 model's runs are another model's spread
    ],
    ids=["too-few-runs", "other-setup", "other-model"],
)
def test_without_enough_history_of_the_setup_the_in_run_interval_is_used_and_said(tmp_path, capsys, earlier, runs):
    folder = tmp_path / "storage"
    folder.mkdir()
    speedups = [1.6] if not earlier else [1.6, 2.2, 1.7]
    for day, speedup in enumerate(speedups, start=1):
        _write(folder, f"{day:04d}.json", _run(speedup=speedup, when=f"2026-11-{day:02d}T10:00:00+00:00", **earlier))
    _write(folder, "0008.json", _run(speedup=2.0, when="2026-11-08T10:00:00+00:00"))
    _write(folder, "0009.json", _run(speedup=1.85, when="2026-11-09T10:00:00+00:00"))
    assert main(["compare", str(folder)]) == 0
    out = capsys.readouterr().out
    assert "(measured) |" in out and "history of" not in out
    assert (f"- Speedup history: auto ({runs}) earlier run(s) of the same setup and FP32 model, fewer than the 3 "
            "needed to learn the run-to-run spread; the speedup tolerance is the in-run interval alone") in out
