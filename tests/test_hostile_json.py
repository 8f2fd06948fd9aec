"""Odd and hostile pytest-benchmark JSON for compare, history and export, as a stranger's pull request
or a damaged CI artifact would bring it: each is refused in one line naming the file (exit 2), or
read correctly; never a traceback, never "No regression" from a file that could not be judged, and
nothing read from a file reaches the terminal, the Markdown or a CI log unescaped."""

from __future__ import annotations

import copy
import json
import os
import re
import signal
from contextlib import contextmanager
from pathlib import Path

import pytest

from quantlab.cli import main
from quantlab.jsonio import MAX_JSON_BYTES

SETUP = {"host": "0123456789abcdef", "cpu": "AMD EPYC", "threads": 1, "providers": ["CPUExecutionProvider"],
         "onnxruntime": "1.32.0", "python": "3.11.7"}


def _bench(variant: str, speedup: float, median_s: float, gated: bool, size: int) -> dict:
    low, high = (1.0, 1.0) if variant == "fp32" else (speedup * 0.97, speedup * 1.03)
    return {"name": f"test_latency[{variant}]", "extra_info": {
        "variant": variant, "speedup": speedup, "speedup_low": low, "speedup_high": high, "gated": gated,
        "size_bytes": size, "size_ratio": size / 8_410_227, "map50_95": 0.73, "setup": copy.deepcopy(SETUP)},
        "stats": {"median": median_s, "q1": median_s * 0.98, "q3": median_s * 1.02, "stddev": median_s * 0.04,
                  "rounds": 100, "ops": 1 / median_s}}


def _run(when: str = "2026-11-01T10:00:00+00:00") -> dict:
    return {"machine_info": {"cpu": {"brand_raw": "AMD EPYC"}}, "commit_info": {"id": "abcdef1234567890"},
            "datetime": when, "benchmarks": [_bench("fp32", 1.0, 0.0127, False, 8_410_227),
                                             _bench("auto", 1.9, 0.0067, True, 2_440_000)]}


def _set(path: str, value):
    """An edit of a run: the value at 'benchmarks.1.extra_info.speedup' (list indices as numbers) set."""
    def edit(run: dict) -> dict:
        *parents, last = path.split(".")
        node = run
        for key in parents:
            node = node[int(key)] if isinstance(node, list) else node[key]
        node[int(last) if isinstance(node, list) else last] = value
        return run
    return edit


def _text(edit) -> callable:
    """A writer of the edited run as JSON text."""
    return lambda path: path.write_text(json.dumps(edit(_run("2026-11-02T10:00:00+00:00"))))


def _raw(data: bytes) -> callable:
    return lambda path: path.write_bytes(data)


def _good_text() -> str:
    return json.dumps(_run("2026-11-02T10:00:00+00:00"))


def _replace(old: str, new: str) -> callable:
    """A writer of the good run's JSON text with `old` replaced once (for what json.dumps cannot write)."""
    def write(path: Path) -> None:
        text = _good_text()
        assert old in text
        path.write_text(text.replace(old, new, 1))
    return write


def _nested(depth: int) -> callable:
    """Lists `depth` deep in extra_info, under a key quantlab does not read."""
    return _replace('"map50_95": 0.73', '"map50_95": 0.73, "deep": ' + "[" * depth + "]" * depth)


def _sparse(size: int) -> callable:
    def write(path: Path) -> None:
        with open(path, "wb") as f:
            f.truncate(size)
    return write


def _fifo(path: Path) -> None:
    os.mkfifo(path)


def _symlink(target) -> callable:
    return lambda path: path.symlink_to(target(path) if callable(target) else target)


REFUSED = [
    # (id, writer of the bad file, what the one line says after the file's name, or a tuple of what it may say)
    ("empty-file", _raw(b""), "not valid JSON (Expecting value at line 1 column 1)"),
    ("truncated", lambda p: p.write_text(_good_text()[:200]), "not valid JSON"),
    ("trailing-garbage", lambda p: p.write_text(_good_text() + "}"), "not valid JSON (Extra data"),
    ("a-list", _raw(b"[1, 2]"), "not a pytest-benchmark JSON (no 'benchmarks' list)"),
    ("a-number", _raw(b"42"), "no 'benchmarks' list"),
    ("a-string", _raw(b'"benchmarks"'), "no 'benchmarks' list"),
    ("null", _raw(b"null"), "no 'benchmarks' list"),
    # the case: a RecursionError traceback
    ("nested-100000-deep", _raw(b"[" * 100_000 + b"]" * 100_000), "nested deeper than 64 levels"),
    ("nested-100-deep-in-a-field", _nested(100), "nested deeper than 64 levels"),
    ("nested-one-past-the-bound", _nested(61), "nested deeper than 64 levels"),
    ("2-GiB-claimed", _sparse(2 << 30), "2048 MiB, larger than the 32 MiB quantlab reads"),
    ("just-over-the-bound", _sparse(MAX_JSON_BYTES + 1), "32 MiB, larger than the 32 MiB"),
    ("latin-1-bytes", lambda p: p.write_bytes(_good_text().replace("AMD EPYC", "AMD \xc9PYC").encode("latin-1")),
     "not UTF-8 text (byte 0xc9 at offset"),
    ("utf-16", lambda p: p.write_bytes(_good_text().encode("utf-16")), "not UTF-8 text (byte 0xff at offset 0)"),
    ("nan-speedup", _replace('"speedup": 1.9', '"speedup": NaN'), "extra_info 'speedup' is NaN, expected a finite"),
    ("1e999-median", _replace('"median": 0.0067', '"median": 1e999'), "stats 'median' is Infinity"),
    ("5000-digit-size", _replace('"size_bytes": 2440000', '"size_bytes": ' + "9" * 5000),
     "not readable as JSON (Exceeds the limit (4300 digits)"),
    ("400-digit-size", _replace('"size_bytes": 2440000', '"size_bytes": ' + "9" * 400),
     "'size_bytes' is an integer of 400 digits, expected a finite number"),
    ("a-million-and-one-objects", _replace('"map50_95": 0.73', '"map50_95": 0.73, "many": [' + "{}," * 10**6 + "{}]"),
     "holds over 1,000,000 objects and lists"),
    ("negative-infinity-speedup", _replace('"speedup": 1.9', '"speedup": -Infinity'), "'speedup' is -Infinity"),
    # parsers disagree on which copy wins: a gate must not pick one
    ("duplicate-key", _replace('"speedup": 1.9', '"speedup": 1.9, "speedup": 0.1'),
     "the key 'speedup' appears twice in one object"),
    ("variant-a-list", _text(_set("benchmarks.1.extra_info.variant", ["auto"])), "'variant' is a list"),
    ("variant-empty", _text(_set("benchmarks.1.extra_info.variant", "")), "'variant' is the string ''"),
    ("variant-10000-chars", _text(_set("benchmarks.1.extra_info.variant", "v" * 10_000)),
     "'variant' is 10000 characters long"),
    ("speedup-true", _text(_set("benchmarks.1.extra_info.speedup", True)), "'speedup' is true"),
    ("size-a-string", _text(_set("benchmarks.1.extra_info.size_bytes", "2 MB")), "'size_bytes' is the string '2 MB'"),
    ("median-negative", _text(_set("benchmarks.1.stats.median", -0.1)), "'median' is -0.1, expected a number above 0"),
    ("setup-threads-a-string", _text(_set("benchmarks.1.extra_info.setup.threads", "1")),
     "setup 'threads' is the string '1', expected a whole number"),
    ("setup-providers-a-string", _text(_set("benchmarks.1.extra_info.setup.providers", "CPU")),
     "setup 'providers' is the string 'CPU', expected a list of names"),
    ("setup-cpu-a-number", _text(_set("benchmarks.1.extra_info.setup.cpu", 7)), "setup 'cpu' is 7, expected a string"),
    ("variant-null", _text(_set("benchmarks.1.extra_info.variant", None)), "extra_info lacks quantlab's variant"),
    # the FP32 model's hash decides whether two runs are of one model: only hexdigest()'s form is read
    ("model-hash-a-number", _text(_set("benchmarks.1.extra_info.model_sha256", 7)),
     "extra_info 'model_sha256' is 7, expected the FP32 model's sha256 (64 lowercase hex digits)"),
    ("model-hash-63-digits", _text(_set("benchmarks.1.extra_info.model_sha256", "a" * 63)),
     "'model_sha256' is the string"),
    ("model-hash-not-hex", _text(_set("benchmarks.1.extra_info.model_sha256", "g" * 64)),
     "'model_sha256' is the string"),
    ("model-hash-upper-case", _text(_set("benchmarks.1.extra_info.model_sha256", "A" * 64)), "'model_sha256' is"),
    ("model-hash-with-a-newline", _text(_set("benchmarks.1.extra_info.model_sha256", "a" * 64 + "\n")),
     "'model_sha256' is the string"),
    ("two-models-in-one-run", _text(lambda r: _set("benchmarks.1.extra_info.model_sha256", "b" * 64)(
        _set("benchmarks.0.extra_info.model_sha256", "a" * 64)(r))),
     "benchmark 'test_latency[auto]': its FP32 model (sha256 bbbbbbbbbbbb) is not that of 'test_latency[fp32]'"),
    ("benchmarks-a-string", _text(_set("benchmarks", "[]")), "no 'benchmarks' list"),
    # an escape in a message is shown as text: the one line stays one line, and plain
    ("datetime-with-escapes", _text(_set("datetime", "\x1b]0;pwned\x07\nnow")),
     "'datetime' '\\x1b]0;pwned\\x07\\x0anow' is not an ISO 8601"),
    ("benchmark-name-with-escapes", _text(lambda r: _set("benchmarks.1.name", "\x1b[2J\r::add-mask::x")(
        _set("benchmarks.1.stats", None)(r))), "benchmark '\\x1b[2J\\x0d::add-mask::x': no 'stats'"),
    ("benchmark-name-a-megabyte", _text(lambda r: _set("benchmarks.1.name", "n" * 2**20)(
        _set("benchmarks.1.stats", None)(r))), "(1048516 more characters)': no 'stats'"),
    # named as a run (compare, export: a storage folder, and empty) or found in the storage (history)
    ("a-folder", lambda p: p.mkdir(), ("no benchmark JSON files", "is a folder; expected a pytest-benchmark JSON")),
    # must not hang: opened non-blocking, refused without reading
    ("a-fifo", _fifo, "not a regular file (a pipe, device or socket)"),
    ("a-link-to-dev-zero", _symlink("/dev/zero"), "not a regular file"),
    ("a-symlink-loop", _symlink(lambda p: p), "cannot be read (Too many levels of symbolic links)"),
    ("a-dangling-link", _symlink("/nonexistent/run.json"), "not found; expected a pytest-benchmark JSON"),
]


@contextmanager
def _deadline(seconds: int):
    """Fail instead of hanging (a FIFO opened for reading blocks until a writer comes)."""
    def expire(signum, frame):
        raise TimeoutError(f"still running after {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def _storage(tmp_path: Path) -> tuple[Path, Path]:
    """A pytest-benchmark storage folder holding one good run; returns (folder, the good run)."""
    folder = tmp_path / ".benchmarks" / "Linux-CPython-3.11-64bit"
    folder.mkdir(parents=True)
    good = folder / "0001_good.json"
    good.write_text(json.dumps(_run()))
    return folder, good


def _argv(command: str, good: Path, bad: Path, tmp_path: Path) -> list[str]:
    return {"compare": ["compare", str(good), str(bad)], "history": ["history", str(tmp_path / ".benchmarks")],
            "export": ["export", str(bad), "--bigger-is-better", str(tmp_path / "out.json")]}[command]


@pytest.mark.parametrize("command", ["compare", "history", "export"])
@pytest.mark.parametrize(("write", "message"), [c[1:] for c in REFUSED], ids=[c[0] for c in REFUSED])
def test_a_hostile_run_is_refused_in_one_line_naming_it(tmp_path, capsys, command, write, message):
    folder, good = _storage(tmp_path)
    bad = folder / "0002_bad.json"
    write(bad)
    with _deadline(20):
        code = main(_argv(command, good, bad, tmp_path))
    out, err = capsys.readouterr()
    assert code == 2, err
    assert out == ""  # no table and no verdict from a run that could not be read
    assert err.startswith(f"quantlab: error: {bad}: ") and err.count("\n") == 1, err[:300]
    assert any(m in err for m in ((message,) if isinstance(message, str) else message)), err
    assert len(err) < 600 and not re.search(r"[\x00-\x08\x0b-\x1f\x7f]", err)  # short, and no raw control
    assert not (tmp_path / "out.json").exists()
    assert sorted(p.name for p in folder.iterdir()) == ["0001_good.json", "0002_bad.json"]  # nothing left behind


# Names and facts with terminal escapes, Markdown, HTML, bidi and zero-width characters, CI log commands
HOSTILE_TEXT = [
    ("ansi-and-osc", "\x1b[31mauto\x1b[0m\x1b]8;;http://x\x07link\x1b]8;;\x07"),
    ("markdown-table", "a|b`c`<img src=x onerror=alert(1)>[l](javascript:x)"),
    ("newline-then-workflow-command", "auto\n::set-output name=verdict::pass"),
    ("carriage-return", "auto\r::add-mask::secret"),
    ("legacy-workflow-command", "x ##[error]forged ##vso[task.complete result=Succeeded]"),
    ("rtl-override", "auto\u202egnp.exe"),
    ("zero-width", "au\u200bto\ufeff"),
    ("line-separator", "auto\u2028## heading"),
    ("undecodable-byte", "auto\udcff"),  # what json.loads makes of "\udcff"
]


def _shown_safely(text: str) -> None:
    """No raw control, format or separator character, no line that a CI runner reads as a command."""
    for line in text.splitlines():
        assert all(c.isprintable() for c in line), repr(line)
        assert not line.lstrip().startswith("::") and "##[" not in line and "##vso[" not in line, line


def _table_rows(markdown: str) -> list[str]:
    return [line for line in markdown.splitlines() if line.startswith("|")]


@pytest.mark.parametrize("name", [c[1] for c in HOSTILE_TEXT], ids=[c[0] for c in HOSTILE_TEXT])
def test_hostile_names_are_compared_and_shown_escaped(tmp_path, capsys, monkeypatch, name):
    # the variant's name, its benchmark's, the commit and the CPU all carry it; the CPUs differ so the
    # reason quotes both
    runs = []
    for index, cpu in enumerate(("AMD EPYC", f"AMD {name}")):
        run = _run(f"2026-11-0{index + 1}T10:00:00+00:00")
        run["commit_info"]["id"] = name
        run["benchmarks"][1]["name"] = name
        run["benchmarks"][1]["extra_info"]["variant"] = name
        run["benchmarks"][1]["extra_info"]["setup"]["cpu"] = cpu
        runs.append(tmp_path / f"{index}.json")
        runs[-1].write_text(json.dumps(run))
    monkeypatch.delenv("GITHUB_ACTIONS", raising=False)
    assert main(["compare", str(runs[0]), str(runs[1])]) == 0  # size and mAP compared; the speedup inconclusive
    assert main(["history", str(tmp_path)]) == 0
    out = tmp_path / "export.json"
    assert main(["export", str(runs[1]), "--bigger-is-better", str(out)]) == 0
    shown, err = capsys.readouterr()
    assert err == ""
    _shown_safely(shown)
    rows = _table_rows(shown)
    # every row keeps its cells: no escaped pipe ends a cell (compare's 7 columns, history's 2 + 2 variants)
    assert {len(re.findall(r"(?<!\\)\|", r)) for r in rows} == {8, 5}, rows
    assert "No regression" not in shown and "**Inconclusive:** 1 gated metric" in shown
    assert "not like for like: cpu" in shown
    for entry in json.loads(out.read_text()):
        _shown_safely(entry["name"] + "\n" + entry["extra"])
    # the warning for a GitHub Actions log: one workflow command, the names in it inert
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    assert main(["compare", str(runs[0]), str(runs[1])]) == 0
    warning = capsys.readouterr().err
    prefix = "::warning title=quantlab compare inconclusive::"
    assert warning.startswith(prefix) and warning.count("\n") == 1 and "\r" not in warning
    _shown_safely(warning[len(prefix):])


def test_the_same_run_as_baseline_and_candidate_is_no_regression(tmp_path, capsys):
    run = tmp_path / "run.json"
    run.write_text(json.dumps(_run()))
    assert main(["compare", str(run), str(run)]) == 0
    assert "**No regression.**" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("write", "exit_code"),
    [
        # NaN and Infinity where quantlab reads no number: pytest-benchmark writes them for some statistics
        (_replace('"ops": ', '"nan_ops": NaN, "ops": '), 0),
        # a UTF-8 byte order mark (Windows editors) is dropped
        (lambda p: p.write_bytes(b"\xef\xbb\xbf" + _good_text().encode()), 0),
        # a size too big for any model but a finite number: a regression, judged
        (_replace('"size_bytes": 2440000', '"size_bytes": 10000000000000000000000000'), 1),
        # fields of the wrong type that quantlab does not gate on are left as unknown
        (_text(_set("benchmarks.1.stats.rounds", "many")), 0),
        (_text(_set("machine_info.cpu", ["x86"])), 0),
        (_text(_set("commit_info.id", 12345)), 0),
        # 64 levels, the bound itself, is read (the run object, benchmarks, one benchmark, extra_info, 60 lists)
        (_nested(60), 0),
    ],
    ids=["nan-in-unread-stat", "utf-8-bom", "huge-finite-size", "rounds-a-string", "cpu-a-list", "commit-a-number",
         "nested-64-deep"],
)
def test_odd_but_readable_runs_are_judged(tmp_path, capsys, write, exit_code):
    folder, good = _storage(tmp_path)
    bad = folder / "0002_odd.json"
    write(bad)
    assert main(["compare", str(good), str(bad)]) == exit_code
    assert capsys.readouterr().err == ""


def test_a_symlink_loop_of_folders_in_the_storage_is_not_followed(tmp_path, capsys):
    folder, _ = _storage(tmp_path)
    (folder / "0002_next.json").write_text(json.dumps(_run("2026-11-02T10:00:00+00:00")))
    (folder / "loop").symlink_to(folder, target_is_directory=True)
    with _deadline(20):
        assert main(["history", str(tmp_path / ".benchmarks")]) == 0
    assert len(_table_rows(capsys.readouterr().out)) == 2 + 2  # header, rule, one row per run: each once


def test_ten_thousand_tiny_json_files_are_refused_at_the_first_quickly(tmp_path, capsys):
    folder = tmp_path / "storage"
    folder.mkdir()
    for index in range(10_000):
        (folder / f"{index:05d}.json").write_bytes(b"{}")
    with _deadline(60):
        assert main(["history", str(folder)]) == 2
    err = capsys.readouterr().err
    assert re.match(rf"quantlab: error: {re.escape(str(folder))}/\d{{5}}\.json: not a pytest-benchmark JSON", err)


def test_a_storage_folder_without_runs_is_refused(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main(["history", str(tmp_path / "empty")]) == 2
    assert "no benchmark JSON files" in capsys.readouterr().err


def test_a_run_file_named_with_a_newline_and_a_workflow_command_is_named_on_one_escaped_line(tmp_path, capsys):
    missing = tmp_path / "run\n::set-output name=verdict::pass\x1b[2J.json"
    assert main(["compare", str(missing), str(missing)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "run\\x0a::set-output name=verdict::pass\\x1b[2J.json: not found" in err
    _shown_safely(err)


def _report(name: str) -> dict:
    """A report as build_report makes it, every string a model, a machine or a file could supply set to `name`."""
    variant = {"metric": "bbox", "name": name, "runtime": name, "size_bytes": 2_440_000, "latency_ms": {"median": 6.7},
               "fps": 149.0, "gmac_per_s": 3.1, "size_ratio": 0.29, "speedup": 1.9, "map50": 0.93, "map50_95": 0.73, "map_drop": 0.001,
               "agreement": 0.99,
               "parity": {"output0": {"boxes": {"cosine": 0.99}, "scores": {"cosine": 0.99}}}, "box_cosine": 0.99,
               "score_cosine": 0.99, "task_cosine": None, "memory": None, "quantize_seconds": 4.0,
               "gated": True, "failures": [f"{name}: size ratio over budget"], "verdict": f"{name} is 1.9x faster"}
    return {"machine": {"cpu": name, "arch": name, "flags": [name], "cores": 2, "threads": 1, "onnxruntime": name,
                        "provider": name, "runtimes": {name: name}},
            "model": {"path": name, "task": {"task": "detect", "end_to_end": False, "classes": 4}, "input_hw": [640, 640],
                      "macs": 437_000_000},
            "evaluation": {"images": 4, "labelled": True}, "variants": [variant],
            "fastest_accurate": {"name": name, "speedup": 1.9, "map_drop": 0.001},
            "budgets": {"max_size_ratio": 0.3, "max_map_drop": 0.01, "min_agreement": 0.95, "min_speedup": 1.3}}


@pytest.mark.parametrize("name", [c[1] for c in HOSTILE_TEXT], ids=[c[0] for c in HOSTILE_TEXT])
def test_the_report_markdown_escapes_every_name(name):
    from quantlab.report import render_markdown

    markdown = render_markdown(_report(name))
    _shown_safely(markdown)
    markdown.encode("utf-8")  # written as UTF-8: an undecodable byte is shown, not kept
    assert {len(re.findall(r"(?<!\\)\|", r)) for r in _table_rows(markdown)} == {18}  # 17 columns each row
