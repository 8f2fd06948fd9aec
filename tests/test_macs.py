"""quantlab.macs: multiply-accumulates counted on hand-built graphs whose answers are worked out here, on the
demo (437 M, the figure measured independently for the issue), and alike on a dynamic export and its twin."""

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from quantlab.demo import DEMO_MODEL
from quantlab.macs import count_macs
from quantlab.onnxmodel import inspect_model, resolve_input_hw

MODELS = Path(__file__).parent / "data" / "models"


def _weights(name: str, shape: tuple[int, ...]) -> onnx.TensorProto:
    return numpy_helper.from_array(np.zeros(shape, np.float32), name)


def _graph(nodes, initializers, output_shape, input_shape=("batch", 3, "h", "w")) -> onnx.ModelProto:
    x = helper.make_tensor_value_info("images", TensorProto.FLOAT, list(input_shape))
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, output_shape)
    graph = helper.make_graph(nodes, "g", [x], [y], initializers)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_each_op_counts_what_it_multiplies():
    nodes = [
        # 3 -> 4 channels, 3x3, same size: each of 4 x 8 x 8 outputs sums 3 x 3 x 3 products
        helper.make_node("Conv", ["images", "w1"], ["a"], pads=[1, 1, 1, 1]),
        # depthwise: each output sums one channel's 3 x 3
        helper.make_node("Conv", ["a", "w2"], ["b"], pads=[1, 1, 1, 1], group=4),
        # transposed 4 -> 2 channels, 2x2 stride 2: each of 4 x 8 x 8 inputs spreads over 2 x 2 x 2 outputs
        helper.make_node("ConvTranspose", ["b", "w3"], ["c"], strides=[2, 2]),
        helper.make_node("Reshape", ["c", "shape"], ["d"]),
        # (1, 2, 256) x (256, 10): each of 2 x 10 outputs sums 256 products
        helper.make_node("MatMul", ["d", "w4"], ["y"]),
    ]
    weights = [_weights("w1", (4, 3, 3, 3)), _weights("w2", (4, 1, 3, 3)), _weights("w3", (4, 2, 2, 2)),
               numpy_helper.from_array(np.array([1, 2, 256], np.int64), "shape"), _weights("w4", (256, 10))]
    model = _graph(nodes, weights, [1, 2, 10])
    assert count_macs(model, (8, 8)) == 4 * 8 * 8 * 27 + 4 * 8 * 8 * 9 + 4 * 8 * 8 * 8 + 2 * 10 * 256


def test_gemm_reads_its_inner_dimension_from_the_transposed_side():
    nodes = [helper.make_node("Flatten", ["images"], ["f"]),  # (1, 3 x 4 x 4 = 48)
             helper.make_node("Transpose", ["f"], ["t"]),  # (48, 1)
             helper.make_node("Gemm", ["t", "w"], ["y"], transA=1)]  # A' (1, 48) x (48, 5)
    model = _graph(nodes, [_weights("w", (48, 5))], [1, 5])
    assert count_macs(model, (4, 4)) == 5 * 48


def test_an_unknown_shape_gives_no_count_rather_than_a_short_one():
    nodes = [helper.make_node("Conv", ["images", "w1"], ["a"], pads=[1, 1, 1, 1]),
             helper.make_node("NonZero", ["a"], ["nz"]),  # data-dependent: its consumers' shapes are unknowable
             helper.make_node("Cast", ["nz"], ["f"], to=TensorProto.FLOAT),
             helper.make_node("MatMul", ["f", "w2"], ["y"])]
    model = _graph(nodes, [_weights("w1", (4, 3, 3, 3))], [4, "n"])
    model.graph.initializer.append(numpy_helper.from_array(np.zeros((1, 5), np.float32), "w2"))
    nodes[-1].input[1] = "w2"
    assert count_macs(model, (8, 8)) is None


def test_the_demo_does_437_million_macs_an_image():
    assert count_macs(onnx.load(str(DEMO_MODEL)), (192, 320)) == 437_319_360


@pytest.mark.parametrize("twin", ["yolov8", "yolo26.e2e"])
def test_a_dynamic_export_counts_as_its_static_twin(twin):
    static = MODELS / f"{twin}.onnx"
    hw = resolve_input_hw(inspect_model(static))
    count = count_macs(onnx.load(str(static)), hw)
    assert count and count == count_macs(onnx.load(str(MODELS / "dynamic" / f"{twin}.dynamic.opset12.onnx")), hw)
