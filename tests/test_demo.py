"""The embedded demo: the shipped model matches its card; the generated data is deterministic and varied."""

import hashlib

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from quantlab.demo import DEMO_MODEL, load_card
from quantlab.demo.shapes import CLASS_NAMES, render_image, write_dataset
from quantlab.onnxmodel import inspect_model


def test_shipped_model_matches_its_card():
    card = load_card()
    blob = DEMO_MODEL.read_bytes()
    assert hashlib.sha256(blob).hexdigest() == card["sha256"] and len(blob) == card["size_bytes"]
    assert card["model"] == DEMO_MODEL.name


def test_the_card_describes_the_shipped_model():
    """The card's input, classes and parameter count, read from the model file itself."""
    card = load_card()
    info = inspect_model(DEMO_MODEL)
    assert info.input_name == card["input"]["name"] and list(info.input_shape) == card["input"]["shape"]
    assert info.class_names == dict(enumerate(card["classes"]))
    model = onnx.load(str(DEMO_MODEL))
    parameters = sum(int(np.prod(t.dims)) for t in model.graph.initializer)
    # the export folds BatchNorm into the convolutions and adds the head's anchor constants: within 0.5%
    assert parameters == pytest.approx(card["parameters"]["after_pruning"], rel=0.005)
    assert parameters < (1 - card["settings"]["pruning_ratio"]) * card["parameters"]["before_pruning"]


def test_shipped_model_loads_with_the_documented_input_and_output():
    info = inspect_model(DEMO_MODEL)
    assert info.input_shape == (1, 3, 192, 320) and info.class_names == dict(enumerate(CLASS_NAMES))
    session = ort.InferenceSession(str(DEMO_MODEL), providers=["CPUExecutionProvider"])
    out = session.run(None, {info.input_name: np.zeros((1, 3, 192, 320), np.float32)})[0]
    assert out.shape == (1, 4 + len(CLASS_NAMES), 1260)  # (192*320) / (8^2 + 16^2 + 32^2) anchors


def test_generation_is_deterministic_per_image():
    a_image, a_objects = render_image(0, "val", 7)
    b_image, b_objects = render_image(0, "val", 7)
    assert np.array_equal(a_image, b_image) and a_objects == b_objects
    assert not np.array_equal(render_image(1, "val", 7)[0], a_image)


def test_written_dataset_is_byte_identical_for_a_seed(tmp_path):
    digests = []
    for run in ("a", "b"):
        yaml_path = write_dataset(tmp_path / run, splits=("val",), sizes={"val": 20})
        files = sorted(p for p in yaml_path.parent.rglob("*") if p.is_file() and p.suffix != ".yaml")
        digests.append([hashlib.sha256(p.read_bytes()).hexdigest() for p in files])
    assert digests[0] == digests[1] and len(digests[0]) == 40


def test_dataset_is_varied_enough_to_matter():
    """Aspect ratios that make the letterbox matter, small and large objects, objects cut by the border."""
    aspects, sizes, classes, cut = [], [], set(), 0
    for index in range(150):
        image, objects = render_image(0, "val", index)
        h, w = image.shape[:2]
        aspects.append(w / h)
        for obj in objects:
            x1, y1, x2, y2 = obj.box
            sizes.append(max(x2 - x1, y2 - y1))
            classes.add(obj.class_id)
            cut += x1 == 0 or y1 == 0 or x2 == w or y2 == h
    assert min(aspects) < 0.9 and max(aspects) > 1.8
    assert min(sizes) < 16 and max(sizes) > 200
    assert classes == set(range(len(CLASS_NAMES))) and cut >= 10
