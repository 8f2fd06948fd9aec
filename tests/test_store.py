"""The artifact store: one build per content hash, even when pytest-xdist workers ask at once; kept across
runs, never trusted when spoiled, bounded in size."""

import multiprocessing
import os
import time

import pytest

from quantlab.suite.store import MANIFEST, ArtifactStore, content_key


def _build_slowly(target):
    """Log the build, then take a while: a second builder would start before the first one finishes."""
    with open(target.parent.parent / "builds.log", "a") as log:
        log.write(f"{target.name}\n")
    time.sleep(0.5)
    target.write_text("built")


def _ask(root, key):
    ArtifactStore(root).build_once(key, "model.onnx", _build_slowly)


def test_concurrent_workers_build_each_key_once(tmp_path):
    key = content_key("auto", model="abc", recipe={"name": "auto"})
    workers = [multiprocessing.get_context("spawn").Process(target=_ask, args=(tmp_path, key)) for _ in range(3)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=60)
    assert [w.exitcode for w in workers] == [0, 0, 0]
    assert (tmp_path / "builds.log").read_text() == "model.onnx\n"
    assert (tmp_path / key / "model.onnx").read_text() == "built"


def test_content_keys_change_with_any_part():
    key = content_key("auto", model="abc", recipe={"num_calib": 100})
    assert key.startswith("auto-") and len(key) == len("auto-") + 16
    assert key == content_key("auto", recipe={"num_calib": 100}, model="abc")
    assert key != content_key("auto", model="abc", recipe={"num_calib": 99})
    assert key != content_key("auto", model="abd", recipe={"num_calib": 100})


def _write(text):
    """A build that writes `text`, and counts its calls."""
    def build(target):
        build.calls += 1
        target.write_text(text)
    build.calls = 0
    return build


def test_a_second_store_on_the_same_folder_reuses_the_entry(tmp_path):
    build = _write("built")
    first = ArtifactStore(tmp_path).build_once("auto-0123456789abcdef", "model.onnx", build)
    second_store = ArtifactStore(tmp_path)
    assert second_store.build_once("auto-0123456789abcdef", "model.onnx", build) == first
    assert build.calls == 1 and (second_store.built, second_store.reused) == (0, 1)


@pytest.mark.parametrize("spoil", [
    lambda entry: (entry / "model.onnx").write_text("tampered"),  # changed after it was built
    lambda entry: (entry / "model.onnx").unlink(),  # half removed
    lambda entry: (entry / MANIFEST).unlink(),  # no manifest: a store of an older layout, or a removal under way
    lambda entry: (entry / "extra.bin").write_bytes(b"x"),  # a file its build did not write
], ids=["tampered", "file-missing", "manifest-missing", "file-added"])
def test_a_spoiled_entry_is_rebuilt_not_used(tmp_path, spoil):
    key, build = "auto-0123456789abcdef", _write("built")
    path = ArtifactStore(tmp_path).build_once(key, "model.onnx", build)
    spoil(path.parent)
    store = ArtifactStore(tmp_path)
    assert store.build_once(key, "model.onnx", build).read_text() == "built"
    assert build.calls == 2 and (store.built, store.reused) == (1, 0)
    assert sorted(p.name for p in path.parent.iterdir()) == sorted([MANIFEST, "model.onnx"])


def test_a_failed_build_leaves_no_entry(tmp_path):
    def crash(target):
        target.write_text("half")
        raise RuntimeError("killed")

    store = ArtifactStore(tmp_path)
    with pytest.raises(RuntimeError, match="killed"):
        store.build_once("auto-0123456789abcdef", "model.onnx", crash)
    assert [p.name for p in tmp_path.iterdir() if not p.name.endswith(".lock")] == []


def test_the_least_recently_used_entries_beyond_the_bound_are_evicted(tmp_path):
    keys = [f"v{i}-{i:016x}" for i in range(4)]
    for age, key in enumerate(keys):
        ArtifactStore(tmp_path).build_once(key, "model.onnx", _write(key))
        os.utime(tmp_path / key / MANIFEST, (1000 + age, 1000 + age))  # built one after the other
    ArtifactStore(tmp_path).build_once(keys[0], "model.onnx", _write(keys[0]))  # used again: the newest
    store = ArtifactStore(tmp_path, max_entries=2)
    store.build_once("v9-" + "9" * 16, "model.onnx", _write("new"))
    assert {p.name for p in store.entries()} == {keys[0], "v9-" + "9" * 16}


def test_clear_removes_the_stores_entries_and_nothing_else(tmp_path):
    store = ArtifactStore(tmp_path)
    store.build_once("auto-0123456789abcdef", "model.onnx", _write("built"))
    (tmp_path / "notes.txt").write_text("the user's")
    store.clear()
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]
