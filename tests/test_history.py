"""quantlab history and compare as JSON (validated against their schemas), the trend chart (PNG and HTML), and
each target's runs (CPU model, threads, providers) kept apart in history and in the spread compare learns.

The runs are the hand-made pytest-benchmark JSON files of tests/test_compare.py.
"""

from __future__ import annotations

import copy
import json
import sys

import jsonschema
import pytest
from test_compare import SETUP, _result, _run, _write

from quantlab.benchjson import saved_runs
from quantlab.cli import main
from quantlab.compare import SCHEMA_PATH as COMPARE_SCHEMA
from quantlab.history import SCHEMA_PATH as HISTORY_SCHEMA
from quantlab.history import render_history

SCHEMAS = {"compare": json.loads(COMPARE_SCHEMA.read_text()), "history": json.loads(HISTORY_SCHEMA.read_text())}
ARM = {**SETUP, "cpu": "Neoverse-N2", "host": "a1b2c3d4e5f60718"}
HOSTILE = '<script>alert("x")</script> & $x$ \x1b[31m'


def _day(day: int, hour: int = 10) -> str:
    return f"2026-11-{day:02d}T{hour:02d}:00:00.000000+00:00"


def _renamed(run: dict, old: str, new: str) -> dict:
    run = copy.deepcopy(run)
    for bench in run["benchmarks"]:
        if bench["extra_info"]["variant"] == old:
            bench["extra_info"]["variant"] = new
    return run


def _interleaved(folder, x86_speedups, arm_speedups, **run):
    """Runs of two CPUs saved into one folder, alternating: x86 at 10:00, ARM at 11:00 of each day."""
    storage = folder / ".benchmarks" / "Linux-CPython-3.11-64bit"
    storage.mkdir(parents=True)
    for day, (x86, arm) in enumerate(zip(x86_speedups, arm_speedups), start=1):
        _write(storage, f"{day:04d}_x86.json", _run(speedup=x86, when=_day(day, 10), **run))
        _write(storage, f"{day:04d}_arm.json", _run(speedup=arm, setup=ARM, when=_day(day, 11), **run))
    return folder / ".benchmarks"


def _json_out(capsys) -> dict:
    return json.loads(capsys.readouterr().out)


@pytest.mark.parametrize(("candidate", "options", "exit_code", "verdict", "status"), [
    (_run(speedup=1.85), [], 0, "no regression", "ok"),  # a rerun inside the intervals
    (_run(speedup=1.9 / 1.25), [], 1, "regression", "regression"),  # 25% slower INT8
    # another CPU model: the speedup cannot be judged, exit 0, or 1 when asked to fail on it
    (_run(speedup=1.0, setup={**SETUP, "cpu": "Intel Xeon"}), [], 0, "inconclusive", "inconclusive"),
    (_run(speedup=1.0, setup={**SETUP, "cpu": "Intel Xeon"}), ["--fail-on-inconclusive"], 1, "inconclusive",
     "inconclusive"),
], ids=["ok", "regression", "inconclusive", "fail-on-inconclusive"])
def test_compare_json_follows_its_schema_and_says_the_exit_status(tmp_path, capsys, candidate, options, exit_code,
                                                                   verdict, status):
    code = main(["compare", str(_write(tmp_path, "base.json", _run())), str(_write(tmp_path, "cand.json", candidate)),
                 "--json", *options])
    document = _json_out(capsys)
    jsonschema.validate(document, SCHEMAS["compare"])
    assert code == document["exit_code"] == exit_code and document["verdict"] == verdict
    speedup = next(r for r in document["rows"] if (r["variant"], r["metric"]) == ("auto", "speedup"))
    assert speedup["status"] == status
    assert speedup["candidate"]["value"] == candidate["benchmarks"][1]["extra_info"]["speedup"]
    assert speedup["baseline"]["low"] < 1.9 < speedup["baseline"]["high"]
    assert document["baseline"]["target"] == {"cpu": "AMD EPYC", "threads": 1, "providers": ["CPUExecutionProvider"]}
    for drop in (lambda d: d.pop("exit_code"), lambda d: d["rows"][0].pop("status"),
                 lambda d: d["baseline"].pop("model_sha256")):
        broken = copy.deepcopy(document)
        drop(broken)
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(broken, SCHEMAS["compare"])


def test_compare_json_with_nothing_gated_in_common_still_parses_and_exits_2(tmp_path, capsys):
    baseline = _run()
    for bench in baseline["benchmarks"]:
        bench["extra_info"]["gated"] = False
    code = main(["compare", str(_write(tmp_path, "b.json", baseline)), str(_write(tmp_path, "c.json", _run())),
                 "--json"])
    captured = capsys.readouterr()
    document = json.loads(captured.out)
    jsonschema.validate(document, SCHEMAS["compare"])
    assert code == document["exit_code"] == 2 and document["verdict"] == "nothing compared"
    assert "quantlab: error:" in captured.err


def test_json_output_keeps_odd_names_exact_and_parseable(tmp_path, capsys):
    """A variant named with quotes, markup, a dollar pair and a terminal escape: JSON quotes it, nothing else."""
    base, cand = (_renamed(_run(speedup=s), "auto", HOSTILE) for s in (1.9, 1.8))
    assert main(["compare", str(_write(tmp_path, "b.json", base)), str(_write(tmp_path, "c.json", cand)),
                 "--json"]) == 0
    out = capsys.readouterr().out
    assert out.isascii() and "\x1b" not in out
    assert HOSTILE in {r["variant"] for r in json.loads(out)["rows"]}
    folder = tmp_path / "runs"
    folder.mkdir()
    _write(folder, "1.json", base)
    assert main(["history", str(folder), "--json"]) == 0
    document = _json_out(capsys)
    jsonschema.validate(document, SCHEMAS["history"])
    assert HOSTILE in [v["name"] for v in document["targets"][0]["variants"]]


def test_history_json_has_one_block_per_target_and_their_latest_runs_side_by_side(tmp_path, capsys):
    folder = _interleaved(tmp_path, [1.9, 1.95, 2.0], [1.3, 1.25, 1.2])
    assert main(["history", str(folder), "--json"]) == 0
    document = _json_out(capsys)
    jsonschema.validate(document, SCHEMAS["history"])
    x86, arm = document["targets"]
    assert [x86["target"]["cpu"], arm["target"]["cpu"]] == ["AMD EPYC", "Neoverse-N2"]
    for block, cpu, speedups in ((x86, "AMD EPYC", [1.9, 1.95, 2.0]), (arm, "Neoverse-N2", [1.3, 1.25, 1.2])):
        assert {run["setup"]["cpu"] for run in block["runs"]} == {cpu}  # never another CPU's run in the series
        assert [run["when"] for run in block["runs"]] == sorted(run["when"] for run in block["runs"])
        auto = next(v for v in block["variants"] if v["name"] == "auto")
        assert [p["speedup"] for p in auto["points"]] == speedups
    side = next(row for row in document["side_by_side"] if row["variant"] == "auto")
    assert [p["speedup"] for p in side["latest"]] == [2.0, 1.2]
    broken = copy.deepcopy(document)
    broken["targets"][0]["variants"][0]["points"][0].pop("speedup")
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, SCHEMAS["history"])


def test_history_markdown_has_a_section_per_target_and_a_side_by_side_table(tmp_path):
    runs = saved_runs(_interleaved(tmp_path, [1.9, 2.0], [1.3, 1.2]))
    text = render_history(runs)
    sections = text.split("### ")
    assert [s.splitlines()[0] for s in sections[1:]] == [
        "AMD EPYC, 1 thread, CPUExecutionProvider", "Neoverse-N2, 1 thread, CPUExecutionProvider",
        "Targets side by side (latest run of each: speedup / size ratio / mAP50-95)"]
    assert "| 1.9 [1.84, 1.96] /" in sections[1] and "| 1.3 [" not in sections[1]
    assert "| 1.3 [1.26, 1.34] /" in sections[2] and "| 1.9 [" not in sections[2]
    assert "| auto | 2 [1.94, 2.06] / 0.29 / 0.734 | 1.2 [1.16, 1.24] / 0.29 / 0.734 |" in sections[3]


def test_the_speedup_spread_compare_learns_never_mixes_two_cpus(tmp_path, capsys):
    """ARM runs that swing by 40% interleaved with steady x86 runs: the x86 candidate's 12% loss is judged on
    the x86 history alone (+-1%), so it is a regression; the ARM swings would have hidden it."""
    folder = _interleaved(tmp_path, [2.0, 2.02, 1.98, 2.0], [1.0, 1.4, 1.0, 1.4], interval=0.01)
    # the baseline, the folder's newest run: an x86 one
    _write(next(folder.iterdir()), "0005_x86.json", _run(speedup=2.0, interval=0.01, when=_day(5)))
    candidate = _write(tmp_path, "cand.json", _run(speedup=2.0 * 0.88, interval=0.01, when=_day(9)))
    assert main(["compare", str(folder), str(candidate)]) == 1
    out = capsys.readouterr().out
    assert _result(out, "auto", "speedup").startswith("REGRESSION") and "(history of 5 runs: +-1.0%)" in out


def test_the_chart_and_the_page_are_written_with_every_name_escaped(tmp_path, capsys):
    folder = _interleaved(tmp_path, [1.9, 2.0], [1.3, 1.2])
    for path in folder.rglob("*_arm.json"):  # a hostile name, in the ARM runs only
        path.write_text(json.dumps(_renamed(json.loads(path.read_text()), "dynamic", HOSTILE)))
    png, page = tmp_path / "out" / "trend.png", tmp_path / "out" / "trend.html"
    assert main(["history", str(folder), "--chart", str(png), "--html", str(page)]) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    text = page.read_text(encoding="utf-8")
    assert text.count('src="data:image/png;base64,iVBORw0KGgo') == 1  # the chart inline: the page opens offline
    assert "<script" not in text and "<link" not in text and "http" not in text  # no script, nothing fetched
    for name in ("fp32", "auto", "dynamic"):
        assert f"<th>{name}</th>" in text
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; $x$ \\x1b[31m" in text
    assert "<h2>Neoverse-N2, 1 thread, CPUExecutionProvider</h2>" in text
    assert sorted(p.name for p in png.parent.iterdir()) == ["trend.html", "trend.png"]  # no temp file left


def test_a_chart_without_matplotlib_names_the_extra_before_any_output(tmp_path, capsys, monkeypatch):
    folder = _interleaved(tmp_path, [1.9], [1.3])
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib raises ImportError
    assert main(["history", str(folder), "--html", str(tmp_path / "t.html")]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and not (tmp_path / "t.html").exists()
    assert captured.err.strip() == ("quantlab: error: the trend chart needs matplotlib, the chart extra: "
                                    "pip install 'quantlab-yolo[chart]'")


def test_compare_of_a_matrix_folder_takes_the_newest_run_on_the_candidate_s_target(tmp_path, capsys):
    """Was: the newest two runs, whatever their CPUs: a matrix's ARM run against its x86 twin, 'not like for
    like', and a 25% ARM regression never judged."""
    folder = _interleaved(tmp_path, [1.9, 1.9, 1.9], [1.3, 1.3, 1.3 / 1.25])  # the last ARM run 25% slower
    assert main(["compare", str(folder), "--json"]) == 1
    document = _json_out(capsys)
    assert document["baseline"]["target"]["cpu"] == document["candidate"]["target"]["cpu"] == "Neoverse-N2"
    assert document["verdict"] == "regression"
    # a folder with no earlier run of the candidate's target: the newest of all, and compare says why it can't judge
    lone = tmp_path / "lone" / ".benchmarks" / "Linux"
    lone.mkdir(parents=True)
    _write(lone, "1_x86.json", _run(speedup=1.9, when=_day(1, 10)))
    _write(lone, "2_arm.json", _run(speedup=1.0, setup=ARM, when=_day(1, 11)))
    assert main(["compare", str(tmp_path / "lone"), "--json"]) == 0
    assert _json_out(capsys)["verdict"] == "inconclusive"
