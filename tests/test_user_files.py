"""Never destroy or contaminate a user's files: no output over an input, folders filled only when
new, empty or quantlab's own, and a failed or interrupted command leaves every previous output whole."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from quantlab.atomicio import MARKER, atomic_write_bytes, staged_folder
from quantlab.cli import main
from quantlab.errors import ExitCode, OutputError


def _names(folder):
    """What a folder holds, less the empty lock file one writer at a time leaves beside an output folder."""
    return sorted(p.name for p in folder.iterdir() if not p.name.endswith(".quantlab-lock"))


def _link(kind, model, tmp_path):
    """The same file as `model` under another name: the path itself, a symlink, or a hard link."""
    if kind == "same-path":
        return model
    link = tmp_path / f"{kind}.onnx"
    (os.symlink if kind == "symlink" else os.link)(model, link)
    return link


@pytest.mark.parametrize("kind", ["same-path", "symlink", "hard-link"])
@pytest.mark.parametrize("command", [
    lambda m, out, calib: ["quantize", m, "--calib", calib, "-o", out],
    lambda m, out, calib: ["tune", m, "--images", calib, "-o", out, "--out", out.parent / "tune-out"],
    lambda m, out, calib: ["eval", m, "--reference", m, "--images", calib, "--json", out],
    lambda m, out, calib: ["bench", m, "--json", out],
], ids=["quantize-o", "tune-o", "eval-json", "bench-json"])
def test_an_output_that_is_an_input_is_refused_before_any_work(tmp_path, model_copy, demo_data, capsys, command,
                                                              kind):
    """Was: `tune M.onnx -o M.onnx` replaced the FP32 model; `--json` wrote over a model (exit 0)."""
    model = model_copy()
    before = model.read_bytes()
    output = _link(kind, model, tmp_path)
    args = command(model, output, demo_data.parent / "images" / "calib")
    assert main([str(a) for a in args]) == ExitCode.USAGE
    err = capsys.readouterr().err
    assert "this output is the input" in err and str(model) in err
    assert model.read_bytes() == before


def test_an_output_folder_holding_an_input_is_refused(tmp_path, model_copy, demo_data, capsys):
    model = model_copy(folder="results")
    code = main(["run", "--model", str(model), "--data", str(demo_data), "--out", str(model.parent)])
    assert code == ExitCode.USAGE and "holds the input" in capsys.readouterr().err
    assert model.is_file()


def test_demo_data_refuses_a_folder_with_the_users_files(tmp_path, capsys):
    """Was: 200 generated images next to the user's photo, which then joined the validation split."""
    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "holiday.jpg").write_bytes(b"the user's photo")
    assert main(["demo-data", str(folder), "--splits", "val"]) == ExitCode.USAGE
    assert "holds files quantlab did not write" in capsys.readouterr().err
    assert [p.name for p in folder.iterdir()] == ["holiday.jpg"]


def test_demo_data_replaces_a_folder_it_wrote_whole(tmp_path, capsys):
    folder = tmp_path / "demo"
    assert main(["demo-data", str(folder), "--splits", "val"]) == ExitCode.OK
    assert main(["demo-data", str(folder), "--splits", "calib"]) == ExitCode.OK
    assert sorted(p.name for p in (folder / "images").iterdir()) == ["calib"]
    assert (folder / MARKER).is_file() and _names(tmp_path) == ["demo"]


def test_a_file_added_to_a_folder_quantlab_wrote_is_never_deleted(tmp_path, capsys):
    """Was: the marker alone made the folder replaceable, and a user's notes in it were deleted."""
    folder = tmp_path / "demo"
    assert main(["demo-data", str(folder), "--splits", "val"]) == ExitCode.OK
    (folder / "images" / "val" / "my_photo.jpg").write_bytes(b"the user's")
    assert main(["demo-data", str(folder), "--splits", "calib"]) == ExitCode.USAGE
    assert "images/val/my_photo.jpg" in capsys.readouterr().err
    assert (folder / "images" / "val" / "my_photo.jpg").read_bytes() == b"the user's"


@pytest.mark.parametrize("make", [
    lambda t: (t / "dev", os.mkfifo(t / "dev"))[0],  # a pipe: renaming over it would replace it
    lambda t: (t / "link", os.symlink("/dev/null", t / "link"))[0],  # through a link to a device
], ids=["fifo", "symlink-to-dev-null"])
def test_a_destination_that_is_not_a_regular_file_is_refused(tmp_path, demo_model, capsys, make):
    target = make(tmp_path)
    assert main(["bench", str(demo_model), "--runs", "1", "--json", str(target)]) == ExitCode.USAGE
    assert "not a regular file" in capsys.readouterr().err
    assert not target.is_file()


def test_the_current_folder_is_never_the_output_folder(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["demo-data", ".", "--splits", "val"]) == ExitCode.USAGE
    assert "is the current folder" in capsys.readouterr().err and list(tmp_path.iterdir()) == []


def test_a_symlinked_output_folder_is_followed(tmp_path, capsys):
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    assert main(["demo-data", str(tmp_path / "link"), "--splits", "val"]) == ExitCode.OK
    assert (tmp_path / "link").is_symlink() and (tmp_path / "real" / "data.yaml").is_file()


def _snapshot(folder):
    return {p.relative_to(folder): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.slow
def test_a_run_that_fails_after_building_leaves_the_previous_output_whole(tmp_path, demo_model, demo_data, capsys,
                                                                           val_subset):
    """Was: the old models were replaced and the old report described models that were gone."""
    out = tmp_path / "quantlab-out"
    out.mkdir()
    (out / "report.json").write_text('{"previous": true}')
    (out / "yolov8n_shapes_pruned.auto.onnx").write_bytes(b"the previous model")
    (out / MARKER).write_text(json.dumps({"files": ["report.json", "yolov8n_shapes_pruned.auto.onnx"]}))
    before = _snapshot(out)
    broken = val_subset(tmp_path / "broken", 4)
    (broken / "labels" / "val_00002.txt").write_bytes(b"\xff\xfe not text")
    (broken / "data.yaml").write_text(json.dumps({"val": "images", "names": ["circle", "rectangle", "triangle",
                                                                              "star"]}))
    code = main(["run", "--data", str(broken / "data.yaml"), "--calib", str(demo_data.parent / "images" / "calib"),
                 "--model", str(demo_model), "--no-contrast", "--num-calib", "8", "--runs", "2", "--out", str(out)])
    assert code == ExitCode.USAGE and "val_00002.txt" in capsys.readouterr().err
    assert _snapshot(out) == before
    assert _names(tmp_path) == ["broken", "quantlab-out"]  # no staging left


def test_a_staged_folder_is_swapped_in_only_when_complete(tmp_path):
    out = tmp_path / "out"
    with staged_folder(out, "test") as stage:
        (stage / "a.txt").write_text("first")
    with pytest.raises(KeyboardInterrupt), staged_folder(out, "test") as stage:
        (stage / "a.txt").write_text("second")
        raise KeyboardInterrupt
    assert (out / "a.txt").read_text() == "first"
    with staged_folder(out, "test") as stage:
        (stage / "b.txt").write_text("third")
    assert sorted(p.name for p in out.iterdir()) == [MARKER, "b.txt"]
    assert _names(tmp_path) == ["out"]


def test_a_folder_of_user_files_is_never_staged_over(tmp_path):
    (tmp_path / "mine.txt").write_text("user data")
    with pytest.raises(OutputError, match="did not write"), staged_folder(tmp_path, "test"):
        pass
    assert [p.name for p in tmp_path.iterdir()] == ["mine.txt"]


def test_outputs_are_readable_as_the_umask_allows(tmp_path):
    """Was: every output mode 0600, unreadable to a serving process running as another user."""
    previous = os.umask(0o022)
    try:
        atomic_write_bytes(tmp_path / "model.onnx", b"bytes")
        with staged_folder(tmp_path / "run", "test") as stage:
            atomic_write_bytes(stage / "report.json", b"{}")
    finally:
        os.umask(previous)
    assert (tmp_path / "model.onnx").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "run").stat().st_mode & 0o777 == 0o755
    assert (tmp_path / "run" / "report.json").stat().st_mode & 0o777 == 0o644


def _hangup_as_a_terminal_would():
    """The child's SIGHUP at its default: a test run under nohup (as a CI job may be) passes SIGHUP ignored to
    its children, and quantlab rightly keeps an ignored SIGHUP ignored (the next test)."""
    signal.signal(signal.SIGHUP, signal.SIG_DFL)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP], ids=["SIGTERM", "SIGHUP"])
def test_a_signal_during_quantize_cleans_up_and_says_so(tmp_path, demo_model, demo_data, signum):
    """Was: no message, 8-25 MB of quantlab-* / ort.quant.* staging left in the temp folder (SIGTERM); SIGHUP
    (a terminal closed, ssh dropped) killed quantlab outright and left it there."""
    temp = tmp_path / "tmp"
    temp.mkdir()
    output = tmp_path / "int8.onnx"
    process = subprocess.Popen(
        [sys.executable, "-m", "quantlab", "quantize", str(demo_model), "--calib",
         str(demo_data.parent / "images" / "calib"), "-o", str(output)],
        env={**os.environ, "TMPDIR": str(temp)}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        preexec_fn=_hangup_as_a_terminal_would)
    deadline = time.monotonic() + 60
    while not any(temp.glob("quantlab-*")) and time.monotonic() < deadline:  # staging exists: quantizing now
        time.sleep(0.05)
    process.send_signal(signum)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 128 + signum, err
    assert f"interrupted by {signal.Signals(signum).name}" in err and "Traceback" not in err
    left = [p.name for p in temp.iterdir() if p.is_dir() or p.name.startswith(("quantlab", "ort", "tmp"))]
    assert left == [] and not output.exists()  # (a .ses file some runtimes keep there is not ours)


def test_a_hangup_ignored_on_purpose_stays_ignored():
    """`nohup quantlab run ...`: closing the terminal must not stop the run that nohup protects."""
    from quantlab.cli import _catch_cleanup_signals

    previous = signal.signal(signal.SIGHUP, signal.SIG_IGN)
    try:
        replaced = _catch_cleanup_signals()
        assert signal.getsignal(signal.SIGHUP) is signal.SIG_IGN and signal.SIGHUP not in replaced
        for signum, handler in replaced.items():
            signal.signal(signum, handler)
    finally:
        signal.signal(signal.SIGHUP, previous)
