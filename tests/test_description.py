"""The model description's own answers at their edges: what its summary and JSON say, its size limits,
how it reads a square end-to-end output, and metadata values Ultralytics writes as strings."""

import re
from pathlib import Path

import numpy as np
import onnx
import pytest

from quantlab.description import (MAX_INPUT_PIXELS, MAX_INPUT_SIDE, ModelDescription, describe_model,
                                  input_size_problem)
from quantlab.errors import ModelError
from quantlab.onnxmodel import load_model

MODELS = Path(__file__).parent / "data" / "models"  # small real Ultralytics exports (tools/make_test_models.py)
INPUT_HW = (96, 160)

NAMES = {0: "a", 1: "b", 2: "c"}


@pytest.mark.parametrize(
    ("description", "summary", "as_dict"),
    [
        (ModelDescription("detect", NAMES), "detect model, 3 classes",
         {"task": "detect", "classes": 3, "end_to_end": False, "kpt_shape": None, "source": "graph"}),
        # 17 keypoints of 3 values each: K x D, in that order
        (ModelDescription("pose", NAMES, 51, (17, 3), source="metadata"), "pose model, 3 classes, keypoints 17x3",
         {"task": "pose", "classes": 3, "end_to_end": False, "kpt_shape": [17, 3], "source": "metadata"}),
        (ModelDescription("obb", NAMES, 1, end_to_end=True), "end-to-end obb model, 3 classes",
         {"task": "obb", "classes": 3, "end_to_end": True, "kpt_shape": None, "source": "graph"}),
    ],
    ids=["detect", "pose-17x3", "end-to-end-obb"],
)
def test_summary_and_json_say_what_the_model_is(description, summary, as_dict):
    assert description.summary() == summary
    assert description.as_dict() == as_dict


@pytest.mark.parametrize(
    ("input_hw", "refused"),
    [
        ((MAX_INPUT_SIDE, 32), False),  # exactly the side limit: allowed
        ((MAX_INPUT_SIDE + 32, 32), True),
        ((MAX_INPUT_PIXELS // 2048, 2048), False),  # exactly the pixel limit (4096 x 2048): allowed
        ((4096, 2080), True),  # 8.5 M pixels: over
    ],
    ids=["side-at-limit", "side-over", "pixels-at-limit", "pixels-over"],
)
def test_input_size_limits_are_inclusive(input_hw, refused):
    assert (input_size_problem(input_hw) is not None) == refused


def test_a_square_end_to_end_output_is_read_as_rows():
    """Six selected rows of six values (x1 y1 x2 y2 score class): rows, never transposed like a raw head."""
    rows = np.arange(36, dtype=np.float32).reshape(1, 6, 6)
    parts = ModelDescription("detect", NAMES, end_to_end=True).split(rows)
    np.testing.assert_array_equal(parts["scores"][:, 0], rows[0, :, 4])
    np.testing.assert_array_equal(parts["class_ids"][:, 0], rows[0, :, 5])


def _with_metadata(name, **metadata):
    model = load_model(MODELS / name)
    onnx.helper.set_model_props(model, {**{p.key: p.value for p in model.metadata_props}, **metadata})
    return describe_model(model, MODELS / name, INPUT_HW)


def test_end2end_false_in_metadata_is_false():
    """Ultralytics writes str(False): the string 'False' is true in Python, and would refuse a raw head."""
    assert _with_metadata("yolov8.onnx", end2end="False").end_to_end is False


def test_keypoint_metadata_on_a_model_of_another_task_is_not_reported():
    assert _with_metadata("yolov8.onnx", kpt_shape="[17, 3]").kpt_shape is None


def test_end_to_end_class_names_come_from_the_metadata():
    description = _with_metadata("yolo26.e2e.onnx", names="{0: 'cat', 1: 'dog', 2: 'cow', 3: 'owl'}")
    assert description.class_names == {0: "cat", 1: "dog", 2: "cow", 3: "owl"} and description.end_to_end


@pytest.mark.parametrize(("key", "value", "message"), [
    # a names dict of 10^6 classes: was parsed (2.2 GB), then dropped silently under a memory limit
    ("names", "{" + ", ".join(f"{i}: 'c{i}'" for i in range(120_000)) + "}", "'names' is 2,057,780 characters"),
    # a task of a million characters: was echoed whole, a 1 MB error line
    ("task", "x" * 1_000_000, "'xxxxxxxx"),
], ids=["names-of-a-million-characters", "task-of-a-million-characters"])
def test_metadata_longer_than_any_model_writes_is_refused_in_a_short_line(tmp_path, demo_onnx, key, value, message):
    model = onnx.ModelProto()
    model.CopyFrom(demo_onnx)
    onnx.helper.set_model_props(model, {**{p.key: p.value for p in model.metadata_props}, key: value})
    with pytest.raises(ModelError, match=re.escape(message)) as caught:
        describe_model(model, tmp_path / "m.onnx")
    assert len(str(caught.value)) < 300
