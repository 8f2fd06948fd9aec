"""Fixtures for quantlab's own unit tests: the demo model, a small generated calibration set."""

import shutil

import onnx
import pytest

from quantlab.demo import DEMO_MODEL
from quantlab.demo.shapes import write_dataset
from quantlab.images import list_images


@pytest.fixture(scope="session")
def demo_model():
    return DEMO_MODEL


@pytest.fixture(scope="session")
def demo_data(tmp_path_factory):
    """val (labelled, 200 images) and a 48-image calib split of the demo dataset."""
    return write_dataset(tmp_path_factory.mktemp("demo"), splits=("val", "calib"), sizes={"calib": 48})


@pytest.fixture(scope="session")
def calib_images(demo_data):
    return list_images(demo_data.parent / "images" / "calib")


@pytest.fixture
def model_copy(tmp_path, demo_model):
    """Copy the demo model into `tmp_path / folder / name` and return the new path."""
    def copy(folder: str = "models", name: str = "yolov8_custom_fixed_test7_pruned.onnx"):
        target = tmp_path / folder / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(demo_model, target)
        return target
    return copy


@pytest.fixture(scope="session")
def demo_onnx(demo_model):
    return onnx.load(str(demo_model))


@pytest.fixture
def outside_xdist(monkeypatch):
    """A pytest started from this test must not believe it is an xdist worker (under `pytest -n`)."""
    for name in ("PYTEST_XDIST_WORKER", "PYTEST_XDIST_WORKER_COUNT", "PYTEST_XDIST_TESTRUNUID"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def val_subset(demo_data):
    """Copy the first `count` demo val images into `folder`/images (an empty `folder`/labels beside
    them with labels=True) and return `folder`: a dataset to break one label file of."""
    def subset(folder, count: int, labels: bool = True):
        (folder / "images").mkdir(parents=True)
        if labels:
            (folder / "labels").mkdir()
        for image in sorted((demo_data.parent / "images" / "val").iterdir())[:count]:
            (folder / "images" / image.name).write_bytes(image.read_bytes())
        return folder
    return subset
