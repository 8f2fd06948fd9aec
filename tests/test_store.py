"""The artifact store: one build per content hash, even when pytest-xdist workers ask at once."""

import multiprocessing
import time

from quantlab.suite.store import ArtifactStore, content_key


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
