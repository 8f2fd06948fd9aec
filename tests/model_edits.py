"""Copies of the demo model edited with onnx's helpers into the other shapes users export."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def copy_of(model: onnx.ModelProto) -> onnx.ModelProto:
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    return copy


def with_extra_output(model: onnx.ModelProto, producer_op: str = "Conv", index: int = 10) -> onnx.ModelProto:
    """A second graph output after the detection one: a backbone feature map (N, C, H, W), as a
    segmentation model's proto output or an exported intermediate feature."""
    edited = copy_of(model)
    node = [n for n in edited.graph.node if n.op_type == producer_op][index]
    inferred = onnx.shape_inference.infer_shapes(edited)
    shape = next(v for v in inferred.graph.value_info if v.name == node.output[0])
    edited.graph.output.append(shape)
    return edited


def with_fp16_weights(model: onnx.ModelProto) -> onnx.ModelProto:
    """FP16 weights, FP32 input and output (onnxconverter's keep_io_types=True): a Cast after each weight."""
    edited = copy_of(model)
    casts = []
    for tensor in edited.graph.initializer:
        if tensor.data_type != TensorProto.FLOAT:
            continue
        name = tensor.name
        tensor.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(tensor).astype(np.float16), f"{name}_fp16"))
        casts.append(helper.make_node("Cast", [f"{name}_fp16"], [name], to=TensorProto.FLOAT, name=f"cast_{name}"))
    nodes = casts + list(edited.graph.node)
    del edited.graph.node[:]
    edited.graph.node.extend(nodes)
    return edited


def with_batch(model: onnx.ModelProto, batch: int) -> onnx.ModelProto:
    edited = copy_of(model)
    edited.graph.input[0].type.tensor_type.shape.dim[0].dim_value = batch
    return edited


def _symbolic(value: onnx.ValueInfoProto, names: list[str | None]) -> None:
    for dim, name in zip(value.type.tensor_type.shape.dim, names):
        if name is not None:
            dim.Clear()
            dim.dim_param = name


def ultralytics_dynamic_opset12(model: onnx.ModelProto) -> onnx.ModelProto:
    """The demo as Ultralytics exports it with dynamic=True, opset=12: symbolic batch/height/width,
    head Reshape targets computed from Shape ops, Softmax as Transpose-Softmax-Transpose (opset < 13
    Softmax flattens), Resize with an explicit empty roi. The anchors stay those of 192x320."""
    edited = copy_of(model)
    graph = edited.graph
    constants = {n.output[0]: n for n in graph.node if n.op_type == "Constant"}
    nodes = []
    for node in graph.node:
        if node.op_type == "Softmax":
            axis = next(a.i for a in node.attribute if a.name == "axis")
            perm = list(range(4))
            perm[axis], perm[3] = perm[3], perm[axis]
            nodes += [helper.make_node("Transpose", [node.input[0]], [f"{node.name}_t"], perm=perm, name=f"{node.name}_t"),
                      helper.make_node("Softmax", [f"{node.name}_t"], [f"{node.name}_s"], axis=3, name=node.name),
                      helper.make_node("Transpose", [f"{node.name}_s"], [node.output[0]], perm=perm,
                                       name=f"{node.name}_back")]
            continue
        if node.op_type == "Resize" and node.input[1] == "":
            graph.initializer.append(numpy_helper.from_array(np.zeros(0, np.float32), f"{node.name}_roi"))
            node.input[1] = f"{node.name}_roi"
        if node.op_type == "Reshape" and node.input[1] in constants:
            target = numpy_helper.to_array(constants[node.input[1]].attribute[0].t)
            prefix = node.name
            tail = np.array([*target[1:-1], -1], np.int64)
            graph.initializer.append(numpy_helper.from_array(tail, f"{prefix}_tail"))
            graph.initializer.append(numpy_helper.from_array(np.array(0, np.int64), f"{prefix}_zero"))
            nodes += [helper.make_node("Shape", [node.input[0]], [f"{prefix}_shape"], name=f"{prefix}_shape"),
                      helper.make_node("Gather", [f"{prefix}_shape", f"{prefix}_zero"], [f"{prefix}_b"], axis=0,
                                       name=f"{prefix}_gather"),
                      helper.make_node("Unsqueeze", [f"{prefix}_b"], [f"{prefix}_b1"], axes=[0],
                                       name=f"{prefix}_unsqueeze"),
                      helper.make_node("Concat", [f"{prefix}_b1", f"{prefix}_tail"], [f"{prefix}_target"], axis=0,
                                       name=f"{prefix}_target")]
            node.input[1] = f"{prefix}_target"
        if node.op_type == "Reshape":
            kept = [a for a in node.attribute if a.name != "allowzero"]  # opset 14's; 0 is opset 12's behaviour
            del node.attribute[:]
            node.attribute.extend(kept)
        nodes.append(node)
    del graph.node[:]
    graph.node.extend(nodes)
    del graph.value_info[:]
    _symbolic(graph.input[0], ["batch", None, "height", "width"])
    _symbolic(graph.output[0], ["batch", None, "anchors"])
    for opset in edited.opset_import:
        if opset.domain in ("", "ai.onnx"):
            opset.version = 12
    edited.ir_version = 7
    return edited
