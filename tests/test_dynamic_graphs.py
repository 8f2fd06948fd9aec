"""Dynamic-shape exports read like static ones, on small graphs built here (the fast run): a head whose
Reshape targets come from Shape ops in the opset-12 form ONNX's shape inference cannot follow, nodes
without names, and the opset and logging checks onnxruntime versions differ on."""

import logging

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from quantlab.cli import main
from quantlab.description import describe_model
from quantlab.graphshapes import static_dims, with_static_input
from quantlab.head import name_unnamed_nodes, yolo_head_pass
from quantlab.ortcompat import QUIET, quiet_logs

CLASSES = 2
STRIDE = 8
INPUT_HW = (32, 48)  # 4x6 anchors at stride 8


def _dynamic_target(prefix: str, source: str, channels: int) -> tuple[list, list]:
    """Nodes making Reshape's target (batch, channels, -1) from Shape(source), as Ultralytics' opset-12
    dynamic exports do: Unsqueeze with its `axes` attribute, which ONNX's data propagation cannot follow."""
    nodes = [
        helper.make_node("Shape", [source], [f"{prefix}_shape"], name=f"{prefix}_shape"),
        helper.make_node("Gather", [f"{prefix}_shape", "zero"], [f"{prefix}_batch"], axis=0, name=f"{prefix}_gather"),
        helper.make_node("Unsqueeze", [f"{prefix}_batch"], [f"{prefix}_batch1"], axes=[0], name=f"{prefix}_unsq"),
        helper.make_node("Concat", [f"{prefix}_batch1", f"{prefix}_rest"], [f"{prefix}_target"], axis=0,
                         name=f"{prefix}_target"),
    ]
    rest = numpy_helper.from_array(np.array([channels, -1], np.int64), f"{prefix}_rest")
    return nodes, [rest]


def tiny_dynamic_yolo(names: bool = True) -> onnx.ModelProto:
    """A YOLO-shaped detector at opset 12, every dim symbolic: a stem conv, box (4) and class (2) branch
    convs, each flattened by a Reshape to a target computed from Shape, a Sigmoid on the classes, and a
    channel Concat into output0 (batch, ?, ?). Weights are random (fixed seed)."""
    rng = np.random.default_rng(0)

    def weight(name, *shape):
        return numpy_helper.from_array(rng.normal(0, 0.3, shape).astype(np.float32), name)

    initializers = [weight("stem_w", 8, 3, STRIDE, STRIDE), weight("box_w", 4, 8, 1, 1),
                    weight("cls_w", CLASSES, 8, 1, 1), numpy_helper.from_array(np.array(0, np.int64), "zero")]
    nodes = [
        helper.make_node("Conv", ["images", "stem_w"], ["stem"], strides=[STRIDE, STRIDE], name="stem"),
        helper.make_node("Conv", ["stem", "box_w"], ["box_map"], name="box_conv"),
        helper.make_node("Conv", ["stem", "cls_w"], ["cls_map"], name="cls_conv"),
    ]
    for prefix, source, channels in (("box", "box_map", 4), ("cls", "cls_map", CLASSES)):
        target_nodes, target_inits = _dynamic_target(prefix, source, channels)
        nodes += target_nodes
        initializers += target_inits
        nodes.append(helper.make_node("Reshape", [source, f"{prefix}_target"], [f"{prefix}_flat"],
                                      name=f"{prefix}_flatten"))
    nodes += [helper.make_node("Sigmoid", ["cls_flat"], ["scores"], name="sigmoid"),
              helper.make_node("Concat", ["box_flat", "scores"], ["output0"], axis=1, name="head_concat")]
    if not names:
        for node in nodes:
            node.name = ""
    graph = helper.make_graph(
        nodes, "tiny", [helper.make_tensor_value_info("images", TensorProto.FLOAT, ["batch", 3, "height", "width"])],
        [helper.make_tensor_value_info("output0", TensorProto.FLOAT, ["batch", "ch", "anchors"])], initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 12)])
    model.ir_version = 7
    onnx.checker.check_model(model)
    return model


ANCHORS = (INPUT_HW[0] // STRIDE) * (INPUT_HW[1] // STRIDE)
HEAD = {"box_flatten", "cls_flatten", "sigmoid", "head_concat"}  # from the flatten on: decode, kept float


def test_dims_that_shape_inference_leaves_symbolic_are_measured():
    model = tiny_dynamic_yolo()
    inferred = with_static_input(model, INPUT_HW)
    assert static_dims(inferred)["output0"] == [1, 4 + CLASSES, ANCHORS]
    assert static_dims(inferred)["cls_flat"] == [1, CLASSES, ANCHORS]


def test_a_dynamic_graph_is_described_from_its_graph():
    description = describe_model(tiny_dynamic_yolo(), "tiny.onnx", INPUT_HW)
    assert (description.task, description.num_classes, description.extra_channels, description.source) == (
        "detect", CLASSES, 0, "graph")


def test_the_head_pass_keeps_a_dynamic_graphs_decode_and_only_it_in_float():
    _, head = yolo_head_pass(tiny_dynamic_yolo(), INPUT_HW)
    assert HEAD <= head
    assert not head & {"stem", "box_conv", "cls_conv"}  # the branch convolutions quantize
    assert head <= HEAD | {n for n in head if n.startswith(("box_", "cls_"))}  # their shape arithmetic only


def test_nodes_without_names_get_unique_ones_and_the_walk_passes_every_one():
    model = tiny_dynamic_yolo(names=False)
    assert name_unnamed_nodes(model) == len(model.graph.node)
    assert len({n.name for n in model.graph.node}) == len(model.graph.node)
    assert name_unnamed_nodes(model) == 0  # named ones are left as they are
    _, head = yolo_head_pass(model, INPUT_HW)
    by_name = {n.name: n.op_type for n in model.graph.node}
    ops = sorted(by_name[n] for n in head)
    assert ops.count("Reshape") == 2 and ops.count("Sigmoid") == 1 and "Conv" not in ops


def _stamped(model: onnx.ModelProto, opset: int) -> onnx.ModelProto:
    for entry in model.opset_import:
        if entry.domain in ("", "ai.onnx"):
            entry.version = opset
    return model


@pytest.mark.parametrize("command", ["quantize", "eval"])
def test_an_opset_newer_than_onnxruntime_loads_is_one_line_before_any_work(tmp_path, demo_onnx, capfd, command):
    path = tmp_path / "new-opset.onnx"
    model = onnx.ModelProto()
    model.CopyFrom(demo_onnx)
    onnx.save(_stamped(model, 99), str(path))
    args = {"quantize": ["quantize", str(path), "-o", str(tmp_path / "q.onnx"), "--mode", "dynamic"],
            "eval": ["eval", str(path), "--images", str(tmp_path)]}[command]
    assert main(args) == 2
    err = capfd.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "opset 99 is newer than the installed onnxruntime" in err[0] and str(path) in err[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["new-opset.onnx"]


def _conflicting_shapes_model() -> bytes:
    """A Relu whose declared output shape contradicts its input's: onnxruntime warns it is merging shapes."""
    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"]), helper.make_node("Relu", ["y"], ["z"])], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])],
        [helper.make_tensor_value_info("z", TensorProto.FLOAT, [2, 3])],
        value_info=[helper.make_tensor_value_info("y", TensorProto.FLOAT, [3, 2])])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]).SerializeToString()


@pytest.fixture
def ort_default_logging():
    root = logging.getLogger().level
    yield
    ort.set_default_logger_severity(2)  # onnxruntime's default: warnings
    logging.getLogger().setLevel(root)


def test_onnxruntimes_own_warnings_are_kept_off_the_terminal(capfd, ort_default_logging):
    ort.set_default_logger_severity(2)
    ort.InferenceSession(_conflicting_shapes_model(), providers=["CPUExecutionProvider"])
    assert "Error merging shape info" in capfd.readouterr().err  # the warning the user would see
    quiet_logs()
    ort.InferenceSession(_conflicting_shapes_model(), providers=["CPUExecutionProvider"])
    logging.getLogger("onnxruntime.quantization").warning("Please consider to run pre-processing")
    logging.getLogger("onnxruntime.quantization").error("ONNX Runtime Model Optimization Failed! Traceback ...")
    assert capfd.readouterr().err == ""
    assert QUIET == 3  # errors still reach the terminal
