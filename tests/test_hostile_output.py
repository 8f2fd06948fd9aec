"""Odd and hostile output folders: each is filled whole, or refused in one line naming it, with the
previous folder and every file a user wrote left exactly as they were, and nothing left behind.

Mount points are real (tmpfs and bind mounts, as root); where mounting is not permitted those cases
are skipped with the reason. A cross-device rename is simulated once (os.rename raising EXDEV for a
path that leaves the destination), since two file systems cannot be made without mounting.
"""

import errno
import json
import os
import re
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest

from quantlab.atomicio import MARKER, staged_folder, temp_folder
from quantlab.cli import main
from quantlab.errors import ExitCode, OutputError, OutputWarning

WORKING = re.compile(r"\..*(staging|previous)-[a-z0-9_]{8}$")  # a staging or previous folder, beside or inside


# --- what a case is made of ---------------------------------------------------------------------------------


def _folder(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def _quantlab_output(folder: Path, files=None) -> Path:
    """A folder as quantlab leaves it: files and a marker listing them."""
    files = files or {"old.txt": "the previous result", "old/deep.txt": "deep"}
    for name, text in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(text)
    (folder / MARKER).write_text(json.dumps({"command": "test", "files": sorted(files)}))
    return folder


def _write_result(stage: Path, big_bytes: int = 0) -> None:
    """What a command writes: a file, a file in a subfolder, and optionally a big one."""
    (stage / "report.md").write_text("| new | result |\n")
    (stage / "models").mkdir()
    (stage / "models" / "m.onnx").write_bytes(b"model bytes")
    if big_bytes:
        (stage / "big.bin").write_bytes(b"\0" * big_bytes)


def _snapshot(root: Path) -> dict:
    """Every file, folder and link under `root` with its content, less locks and working folders."""
    found = {}
    for path in sorted(root.rglob("*")):
        relative = path.relative_to(root)
        if any(WORKING.match(part) for part in relative.parts) or path.name.endswith("quantlab-lock"):
            continue
        if path.is_symlink():
            found[relative] = f"-> {os.readlink(path)}"
        elif path.is_dir():
            found[relative] = "<dir>"
        elif path.is_file():
            found[relative] = path.read_bytes()
    return found


def _leftovers(root: Path) -> list[str]:
    return [str(p.relative_to(root)) for p in root.rglob("*") if WORKING.match(p.name)]


@pytest.fixture(scope="session")
def can_mount(tmp_path_factory):
    """Whether this process may mount (root in a container that allows it); the reason when not."""
    probe = tmp_path_factory.mktemp("mount-probe")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(probe)], capture_output=True,
                          text=True)
    if done.returncode != 0:
        return done.stderr.strip() or "mount failed"
    subprocess.run(["umount", str(probe)], check=True)
    return None


@pytest.fixture
def mount(can_mount):
    """mount(target, *options): a tmpfs (or with "--bind", SOURCE, a bind mount) at target, undone after."""
    if can_mount is not None:
        pytest.skip(f"mounting is not permitted here: {can_mount}")
    mounted = []

    def do(target: Path, *args: str) -> Path:
        target.mkdir(parents=True, exist_ok=True)
        command = ["mount", *args, str(target)] if "--bind" in args else \
            ["mount", "-t", "tmpfs", *args, "tmpfs", str(target)]
        subprocess.run(command, check=True, capture_output=True)
        mounted.append(target)
        return target

    yield do
    for target in reversed(mounted):
        subprocess.run(["umount", "-l", str(target)], check=False)


def _other_device(monkeypatch, destination: Path) -> None:
    """os.rename raises EXDEV for a rename into or out of `destination`, as across two file systems."""
    real_rename = os.rename

    def rename(source, target):
        def inside(p):
            return Path(p) == destination or destination in Path(p).parents

        if inside(source) != inside(target):
            raise OSError(errno.EXDEV, os.strerror(errno.EXDEV), str(source), None, str(target))
        return real_rename(source, target)

    monkeypatch.setattr(os, "rename", rename)


# --- the cases ----------------------------------------------------------------------------------------------
# setup(tmp, mount, monkeypatch) -> the output path given; during(stage, destination) runs while the command
# works; outcome: None (filled whole), or (exception, regex) with the folder left as it was; warns: the
# OutputWarnings expected, one regex each, in order (None: no warning at all).


def _dangling(t, m, mp):
    (t / "out").symlink_to(t / "target")
    return t / "out"


def _symlink_to_quantlab_output(t, m, mp):
    _quantlab_output(t / "real")
    (t / "out").symlink_to(t / "real")
    return t / "out"


def _loop(t, m, mp):
    (t / "out").symlink_to(t / "loop")
    (t / "loop").symlink_to(t / "out")
    return t / "out"


def _stale_staging(t, m, mp):
    _quantlab_output(t / "out")
    (t / ".out.staging-k1ll3d00").mkdir()
    (t / ".out.staging-k1ll3d00" / "half.onnx").write_bytes(b"half a model")
    return t / "out"


def _killed_mid_swap(t, m, mp):
    """Killed between moving the previous folder aside and renaming the new one in."""
    _quantlab_output(_folder(t / ".out.previous-k1ll3d00" / "old"))
    (t / ".out.staging-k1ll3d01").mkdir()
    return t / "out"


def _killed_after_swap(t, m, mp):
    _quantlab_output(t / "out")
    _quantlab_output(_folder(t / ".out.previous-k1ll3d00" / "old"))
    return t / "out"


def _killed_mid_swap_then_user_made_it(t, m, mp):
    _killed_mid_swap(t, m, mp)
    (t / "out").mkdir()
    (t / "out" / "mine.txt").write_text("the user's")
    return t / "out"


def _killed_mid_swap_then_empty_folder(t, m, mp):
    _killed_mid_swap(t, m, mp)
    (t / "out").mkdir()
    return t / "out"


def _killed_mid_fill_of_a_mount(t, m, mp):
    """A mount point killed mid-fill: old files moved aside, one new file moved in, the new marker not."""
    out = m(t / "out")
    stage, previous = out / ".quantlab-staging-k1ll3d00", out / ".quantlab-previous-k1ll3d00"
    _quantlab_output(_folder(previous))
    _write_result(_folder(stage))
    (stage / MARKER).write_text(json.dumps({"files": ["models/m.onnx", "report.md"]}))
    os.rename(stage / "report.md", out / "report.md")
    return out


def _lookalikes(t, m, mp):
    """Folders named like another destination's staging: never touched."""
    for name in (".out2.staging-abcd1234", ".out.staging-notrandom", ".out.staging-abcd1234.bak"):
        (t / name).mkdir()
        (t / name / "keep.txt").write_text("not this run's")
    return t / "out"


def _mount_point(t, m, mp):
    return m(t / "out", "-o", "size=1m")


def _mount_with_output(t, m, mp):
    return _quantlab_output(m(t / "out", "-o", "size=1m"))


def _mount_with_user_file(t, m, mp):
    out = m(t / "out", "-o", "size=1m")
    (out / "mine.txt").write_text("the user's")
    return out


def _full_mount(t, m, mp):
    return _quantlab_output(m(t / "out", "-o", "size=64k"))


def _read_only_mount(t, m, mp):
    out = _quantlab_output(m(t / "out", "-o", "size=64k"))
    subprocess.run(["mount", "-o", "remount,ro", str(out)], check=True)
    return out


def _mount_in_read_only_parent(t, m, mp):
    """`docker run --read-only -v $PWD/out:/out`: nothing can be made beside the mount point."""
    root = m(t / "root", "-o", "size=64k")
    (root / "out").mkdir()
    subprocess.run(["mount", "-o", "remount,ro", str(root)], check=True)
    return _quantlab_output(m(root / "out", "-o", "size=1m"))


def _read_only_parent(t, m, mp):
    m(t / "ro", "-o", "size=64k,ro")
    return t / "ro" / "out"


def _bind_mount(t, m, mp):
    """A same-file-system bind mount: os.path.ismount misses it, and renaming it fails (EBUSY)."""
    _quantlab_output(_folder(t / "source"))
    return m(t / "out", "--bind", str(t / "source"))


def _ismount_missed_full_mount(t, m, mp):
    """A mount point the staging ignored (ismount said no): the swap meets EBUSY and copies, onto a full disk."""
    out = _quantlab_output(m(t / "out", "-o", "size=64k"))
    mp.setattr(os.path, "ismount", lambda path: False)
    return out


def _exdev_new(t, m, mp):
    _other_device(mp, t / "out")
    return t / "out"


def _exdev_replacing(t, m, mp):
    _other_device(mp, t / "out")
    return _quantlab_output(_folder(t / "out"))


def _add(relative, content="the user's"):
    def during(stage, destination):
        (destination / relative).parent.mkdir(parents=True, exist_ok=True)
        (destination / relative).write_text(content)
    return during


def _add_link(stage, destination):
    (destination / "latest").symlink_to("/etc")


def _drop_marker(stage, destination):
    (destination / MARKER).unlink()


def _second_writer(stage, destination):
    with pytest.raises(OutputError, match="another quantlab is writing this folder now"):
        with staged_folder(destination, "second"):
            pytest.fail("a second writer got in")


def _interrupt(stage, destination):
    raise KeyboardInterrupt


def _disk_full(stage, destination):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(stage / "models" / "m.onnx"))


def _new(t, m, mp):
    return t / "out"


def _existing(t, m, mp):
    return _quantlab_output(_folder(t / "out"))


def _users_folder(t, m, mp):
    (_folder(t / "out") / "holiday.jpg").write_bytes(b"the user's photo")
    return t / "out"


def _corrupt_marker(t, m, mp):
    (_existing(t, m, mp) / MARKER).write_text("{not json")
    return t / "out"


def _file_at(name):
    def setup(t, m, mp):
        (t / name).write_text("a file")
        return t / name
    return setup


REFUSED = OutputError
CASES = [
    # -- where the output path leads
    ("new-folder", _new, None, None, None),
    ("empty-folder", lambda t, m, mp: _folder(t / "out"), None, None, None),
    ("quantlab-output-replaced", _existing, None, None, None),
    ("missing-parents", lambda t, m, mp: t / "a" / "b" / "c" / "out", None, None, None),
    ("trailing-slash", lambda t, m, mp: str(t / "out") + "/", None, None, None),
    ("dot-dot-in-path", lambda t, m, mp: _folder(t / "x") / ".." / "out", None, None, None),
    ("spaces", lambda t, m, mp: t / "my results  2024", None, None, None),
    ("unicode", lambda t, m, mp: t / "résultats 結果 🚀", None, None, None),
    ("newline-in-name", lambda t, m, mp: t / "two\nlines", None, None, None),
    ("leading-dash", lambda t, m, mp: t / "-rf", None, None, None),
    ("symlink-to-quantlab-output", _symlink_to_quantlab_output, None, None, None),
    ("dangling-symlink", _dangling, None, None, None),
    ("symlink-loop", _loop, None, (REFUSED, "a symlink loop"), None),
    ("a-file", _file_at("out"), None, (REFUSED, "exists and is not a folder"), None),
    ("under-a-file", lambda t, m, mp: _file_at("f")(t, m, mp) / "out", None, (REFUSED, "is a file, not a folder"),
     None),
    ("a-fifo", lambda t, m, mp: (os.mkfifo(t / "p"), t / "p")[1], None, (REFUSED, "exists and is not a folder"),
     None),
    ("name-too-long", lambda t, m, mp: t / ("n" * 240), None, (REFUSED, "name too long"), None),
    ("under-proc", lambda t, m, mp: Path("/proc/self/quantlab-out"), None, (REFUSED, "/proc/self"), None),
    ("under-dev-null", lambda t, m, mp: Path("/dev/null/out"), None, (REFUSED, "is a file, not a folder"), None),
    ("users-folder", _users_folder, None, (REFUSED, "holds files quantlab did not write"), None),
    ("corrupt-marker", _corrupt_marker, None, (REFUSED, r"old\.txt"), None),
    # -- what happens while the command works
    ("user-file-added-mid-run", _existing, _add("notes.txt"), (REFUSED, r"notes\.txt"), None),
    ("user-file-deep-mid-run", _existing, _add("old/mine.txt"), (REFUSED, r"old/mine\.txt"), None),
    ("user-symlink-mid-run", _existing, _add_link, (REFUSED, r"latest"), None),
    ("user-made-the-folder-mid-run", _new, _add("mine.txt"), (REFUSED, "holds files quantlab did not write"),
     None),
    ("marker-deleted-mid-run", _existing, _drop_marker, (REFUSED, "holds files quantlab did not write"), None),
    ("second-writer", _existing, _second_writer, None, None),
    ("interrupted", _existing, _interrupt, (KeyboardInterrupt, None), None),
    ("disk-full-mid-run", _existing, _disk_full, (REFUSED, "no space left on device in .*out; free space"), None),
    # -- what a killed quantlab left
    ("stale-staging", _stale_staging, None, None, [r"removed .*\.out\.staging-k1ll3d00, a staging folder"]),
    ("killed-mid-swap", _killed_mid_swap, None, None,
     [r"restored .*out from .*\.out\.previous-k1ll3d00", r"removed .*\.out\.staging-k1ll3d01, a staging"]),
    ("killed-after-swap", _killed_after_swap, None, None, [r"removed .*\.out\.previous-k1ll3d00, an output"]),
    ("killed-mid-swap-then-user-folder", _killed_mid_swap_then_user_made_it, None,
     (REFUSED, "an interrupted quantlab left its previous output in .*previous-k1ll3d00"), None),
    ("killed-mid-swap-then-empty-folder", _killed_mid_swap_then_empty_folder, None,
     (REFUSED, "an interrupted quantlab left its previous output in .*previous-k1ll3d00"), None),
    ("lookalike-staging-names", _lookalikes, None, None, None),
    # -- mount points and other file systems
    ("mount-point", _mount_point, None, None, None),
    ("mount-point-replaced", _mount_with_output, None, None, None),
    ("mount-point-user-file", _mount_with_user_file, None, (REFUSED, "did not write"), None),
    ("mount-point-user-file-mid-run", _mount_with_output, _add("notes.txt"), (REFUSED, r"notes\.txt"), None),
    ("mount-point-full", _full_mount, None, (REFUSED, "no space left on device in .*out"), None),
    ("mount-point-read-only", _read_only_mount, None, (REFUSED, "read-only file system in .*out"), None),
    ("mount-point-in-read-only-root", _mount_in_read_only_parent, None, None, None),
    ("read-only-parent", _read_only_parent, None, (REFUSED, "read-only file system in .*ro"), None),
    ("bind-mount-same-fs", _bind_mount, None, None, None),
    ("mount-missed-and-full", _ismount_missed_full_mount, None, (REFUSED, "cannot copy the result there"), None),
    ("killed-mid-fill-of-a-mount", _killed_mid_fill_of_a_mount, None, None,
     [r"restored the files of .*out from .*previous-k1ll3d00", r"removed .*staging-k1ll3d00, a staging"]),
    ("other-device-new", _exdev_new, None, None, None),
    ("other-device-replacing", _exdev_replacing, None, None, None),
]


@pytest.mark.parametrize(("setup", "during", "outcome", "warns"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_an_odd_output_folder_is_filled_whole_or_refused_untouched(tmp_path, mount, monkeypatch, setup, during,
                                                                   outcome, warns):
    given = setup(tmp_path, mount, monkeypatch)
    big = 256 * 1024 if setup in (_full_mount, _ismount_missed_full_mount) else 0
    state = {"before": _snapshot(tmp_path), "leftovers": _leftovers(tmp_path)}

    def command():
        with staged_folder(given, "test") as stage:
            _write_result(stage, big)
            if during:
                during(stage, Path(os.path.realpath(given)))
            state["before"] = _snapshot(tmp_path)

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", OutputWarning)
        if outcome is None:
            command()
        else:
            with pytest.raises(outcome[0], match=outcome[1]) as raised:
                command()
            assert "\n" not in str(raised.value).replace(str(given), "")  # one line
    said = [str(w.message) for w in caught]
    assert len(said) == len(warns or []) and all(re.search(p, m) for p, m in zip(warns or [], said)), said
    if outcome is None:
        result = Path(os.path.realpath(given))
        assert (result / "report.md").read_text() == "| new | result |\n"
        assert (result / "models" / "m.onnx").read_bytes() == b"model bytes"
        assert json.loads((result / MARKER).read_text())["files"] == ["models/m.onnx", "report.md"]
        assert not (result / "old.txt").exists()  # the previous result was replaced, not mixed into
        kept = [".out.staging-abcd1234.bak", ".out.staging-notrandom", ".out2.staging-abcd1234"]
        assert _leftovers(tmp_path) == ([".out2.staging-abcd1234"] if setup is _lookalikes else [])
        assert setup is not _lookalikes or all((tmp_path / n / "keep.txt").is_file() for n in kept)
    else:
        assert _snapshot(tmp_path) == state["before"]  # every previous and user file exactly as it was
        assert _leftovers(tmp_path) == state["leftovers"]


# --- temp folders ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("options", "cause"), [
    (["size=64k"], "no space left on device"),
    (["size=64k", "ro"], "read-only file system"),
], ids=["full-tmpdir", "read-only-tmpdir"])
def test_a_temp_folder_that_cannot_be_written_is_named(tmp_path, mount, monkeypatch, options, cause):
    """Was: `quantlab: No space left on device` with no folder named."""
    tmp = mount(tmp_path / "tmp", "-o", ",".join(options))
    monkeypatch.setattr("tempfile.tempdir", str(tmp))
    with pytest.raises(OutputError, match=f"^{cause} in {re.escape(str(tmp))}.*; free space there or set TMPDIR"):
        with temp_folder("quantlab-") as folder:
            (folder / "model.onnx").write_bytes(b"\0" * 256 * 1024)
    assert list(tmp.iterdir()) == []


def test_a_full_temp_folder_is_named_without_a_mount(tmp_path, monkeypatch):
    """The same where mounting is not permitted: the fault raised where a write would raise it."""
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    with pytest.raises(OutputError, match=f"^no space left on device in {re.escape(str(tmp_path))}/quantlab-"):
        with temp_folder("quantlab-") as folder:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    assert not folder.exists() and list(tmp_path.iterdir()) == []


def test_quantize_names_a_full_temp_folder_in_one_line(tmp_path, mount, monkeypatch, demo_model, calib_images,
                                                     capsys):
    tmp = mount(tmp_path / "tmp", "-o", "size=1m")  # the 8.4 MB model copy does not fit
    monkeypatch.setattr("tempfile.tempdir", str(tmp))
    monkeypatch.setenv("TMPDIR", str(tmp))
    code = main(["quantize", str(demo_model), "--calib", str(calib_images[0].parent), "-o",
                 str(tmp_path / "int8.onnx")])
    err = capsys.readouterr().err
    assert code == ExitCode.USAGE and err.count("\n") == 1, err
    assert f"quantlab: error: no space left on device in {tmp}" in err
    assert list(tmp.iterdir()) == [] and not (tmp_path / "int8.onnx").exists()


# --- whole commands in real processes -----------------------------------------------------------------------


def _start_demo_data(out: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "quantlab", "demo-data", str(out)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _wait_for_staging(parent: Path, process: subprocess.Popen) -> Path:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and process.poll() is None:
        found = [p for p in parent.iterdir() if WORKING.match(p.name)]
        if found and any(found[0].rglob("*.jpg")):
            return found[0]
        time.sleep(0.05)
    pytest.fail(f"no staging appeared: {process.communicate()}")


def test_a_second_writer_is_refused_and_a_killed_ones_staging_reclaimed(tmp_path, capsys):
    """Was: two runs into one --out made a report with no rows; kill -9 left .out.staging-* forever."""
    out = tmp_path / "out"
    first = _start_demo_data(out)
    staging = _wait_for_staging(tmp_path, first)
    assert main(["demo-data", str(out), "--splits", "val"]) == ExitCode.USAGE
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{out}: another quantlab is writing this folder now" in err
    first.send_signal(signal.SIGKILL)
    first.communicate(timeout=60)
    assert staging.is_dir() and not out.exists()  # killed: its staging stays, nothing half-written in place
    with pytest.warns(OutputWarning, match=f"removed {re.escape(str(staging))}, a staging folder"):
        with staged_folder(out, "test") as stage:
            _write_result(stage)
    assert sorted(p.name for p in out.iterdir()) == [MARKER, "models", "report.md"] and _leftovers(tmp_path) == []


def test_demo_data_fills_a_mount_point_like_a_docker_volume(tmp_path, mount, capsys):
    """Was: `docker run -v $PWD/out:/out ... --out /out`: Invalid cross-device link (staging beside /out)."""
    out = _quantlab_output(mount(tmp_path / "out", "-o", "size=16m"))
    assert main(["demo-data", str(out), "--splits", "val"]) == ExitCode.OK, capsys.readouterr().err
    assert os.path.ismount(out) and (out / "data.yaml").is_file() and not (out / "old.txt").exists()
    assert sorted(p.name for p in out.iterdir() if p.name.startswith(".")) == [".quantlab-lock", MARKER]


# --- an output among the inputs: a model's external data, an image or label, an image folder ---------------


@pytest.fixture(scope="module")
def inputs(tmp_path_factory, demo_onnx):
    """A model saved with its weights in m.onnx.data, and a small demo dataset (val and calib)."""
    import onnx

    from quantlab.demo.shapes import write_dataset

    root = tmp_path_factory.mktemp("inputs")
    (root / "ext").mkdir()
    model = onnx.ModelProto()
    model.CopyFrom(demo_onnx)  # saving with external data rewrites the model in place: never the shared one
    onnx.save(model, str(root / "ext" / "m.onnx"), save_as_external_data=True, location="m.onnx.data")
    write_dataset(root / "data", splits=("val", "calib"), sizes={"val": 3, "calib": 3})
    return root


@pytest.mark.parametrize(("args", "output"), [
    # the model's weights file as the INT8 model, or as a JSON report (was: overwritten, exit 0)
    (["quantize", "ext/m.onnx", "-o", "ext/m.onnx.data", "--mode", "dynamic"], "ext/m.onnx.data"),
    (["bench", "ext/m.onnx", "--runs", "1", "--json", "ext/m.onnx.data"], "ext/m.onnx.data"),
    # a calibration image replaced by the model (was: exit 0)
    (["quantize", "ext/m.onnx", "-o", "data/images/calib/calib_00000.jpg", "--calib", "data/images/calib"],
     "data/images/calib/calib_00000.jpg"),
    # a label file replaced by the evaluation JSON (was: exit 0)
    (["eval", "ext/m.onnx", "--data", "data/data.yaml", "--json", "data/labels/val/val_00000.txt"],
     "data/labels/val/val_00000.txt"),
    # a report folder inside the image folder: the next run evaluates report.png (was: exit 0)
    (["run", "--model", "ext/m.onnx", "--images", "data/images/val", "--recursive", "--out", "data/images/val/out"],
     "data/images/val/out"),
], ids=["quantize-onto-external-data", "bench-json-onto-external-data", "quantize-onto-a-calibration-image",
        "eval-json-onto-a-label", "run-out-inside-the-images"])
def test_no_output_is_or_lies_among_the_inputs(inputs, monkeypatch, capsys, args, output):
    monkeypatch.chdir(inputs)
    before = {p: p.read_bytes() for p in inputs.rglob("*") if p.is_file()}
    assert main(args) == ExitCode.USAGE
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and output in err[0] and ("is the input" in err[0] or "lies in the input folder" in err[0])
    assert {p: p.read_bytes() for p in inputs.rglob("*") if p.is_file()} == before
