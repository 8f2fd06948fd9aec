"""quantlab compare and history on hand-made pytest-benchmark JSON runs."""

import copy
import json

import pytest

from quantlab.cli import main

MACHINE = {"cpu": {"brand_raw": "Test CPU"}, "processor": "x86_64", "machine": "x86_64",
           "python_implementation": "CPython", "python_version": "3.11.7"}


def _run(speedup=2.0, size=3_000_000, map50_95=0.70, median_s=0.006, machine=MACHINE, when="2026-11-01T10:00:00"):
    def bench(variant, speed, size_bytes, m, median):
        return {"name": f"test_latency[{variant}]", "stats": {"median": median},
                "extra_info": {"variant": variant, "speedup": speed, "size_bytes": size_bytes, "map50_95": m,
                               "agreement": 0.99, "score_cosine": 0.999}}
    return {"machine_info": machine, "commit_info": {"id": "abcdef1234567"}, "datetime": when, "version": "5.3.1",
            "benchmarks": [bench("fp32", 1.0, 10_000_000, 0.71, 0.012), bench("auto", speedup, size, map50_95, median_s)]}


def _write(tmp_path, name, run):
    path = tmp_path / name
    path.write_text(json.dumps(run))
    return path


@pytest.mark.parametrize(
    ("candidate", "exit_code", "expected"),
    [
        (_run(), 0, "No regression"),
        (_run(speedup=1.6), 1, "speedup worse by 20.0%"),  # a 20% speedup loss
        (_run(size=3_300_000), 1, "size_bytes worse by 10.0%"),
        (_run(map50_95=0.68), 1, "map50_95 worse by 0.0200"),
        (_run(median_s=0.009), 1, "median_ms worse by 50.0%"),  # same machine: absolute latency gated
        (_run(median_s=0.009, machine={**MACHINE, "cpu": {"brand_raw": "Other CPU"}}), 0, "shown, not gated"),
    ],
    ids=["clean", "speedup-loss", "size-increase", "map-drop", "slower-same-machine", "slower-other-machine"],
)
def test_compare_flags_each_regression(tmp_path, capsys, candidate, exit_code, expected):
    base = _write(tmp_path, "base.json", _run())
    cand = _write(tmp_path, "cand.json", candidate)
    assert main(["compare", str(base), str(cand)]) == exit_code
    out = capsys.readouterr().out
    assert expected in out and "| Variant | Metric |" in out


def test_a_variant_missing_from_the_candidate_is_a_regression(tmp_path, capsys):
    cand = _run()
    cand["benchmarks"] = cand["benchmarks"][:1]
    assert main(["compare", str(_write(tmp_path, "b.json", _run())), str(_write(tmp_path, "c.json", cand))]) == 1
    assert "variant missing" in capsys.readouterr().out


@pytest.mark.parametrize("content", ["{not json", json.dumps({"benchmarks": "nope"})], ids=["corrupt", "not-benchmark"])
def test_an_unreadable_baseline_fails_loudly(tmp_path, capsys, content):
    base = tmp_path / "base.json"
    base.write_text(content)
    assert main(["compare", str(base), str(_write(tmp_path, "c.json", _run()))]) == 2
    err = capsys.readouterr().err
    assert str(base) in err and err.count("\n") == 1


def test_storage_folder_compares_its_two_newest_runs_and_shows_history(tmp_path, capsys):
    storage = tmp_path / ".benchmarks" / "Linux-CPython-3.11-64bit"
    storage.mkdir(parents=True)
    _write(storage, "0001_a.json", _run(when="2026-11-01T10:00:00"))
    _write(storage, "0002_b.json", _run(when="2026-11-02T10:00:00"))
    _write(storage, "0003_c.json", copy.deepcopy(_run(speedup=1.5, when="2026-11-03T10:00:00")))
    assert main(["compare", str(tmp_path / ".benchmarks")]) == 1
    assert "`0002_b.json` -> `0003_c.json`" in capsys.readouterr().out
    assert main(["history", str(tmp_path / ".benchmarks")]) == 0
    history = capsys.readouterr().out.splitlines()
    assert len(history) == 5 and history[2].startswith("| 2026-11-01T10:00:00 | abcdef12 |") and "1.5 /" in history[4]
