"""Static shapes of a graph's tensors, with the image input fixed at one size, so that dynamic-shape
exports (whose Reshape targets are computed from Shape ops) read like static ones.

ONNX's shape inference (with constant propagation) gives most dims. It stops where its data
propagation has no rule for an op at the model's opset (Ultralytics' opset-12 dynamic exports
build their head's Reshape targets with the attribute form of Unsqueeze), leaving every dim after
it symbolic; those tensors' dims are then read from one onnxruntime run on a zero image.
"""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort

Dims = list[int | str | None]
_ERRORS_ONLY = 3  # onnxruntime log severity: a partly typed graph makes it warn about merging shapes


def with_static_input(model: onnx.ModelProto, input_hw: tuple[int, int]) -> onnx.ModelProto:
    """A copy whose image input's dynamic dims are set to (1, 3, H, W), shapes inferred with
    constant propagation; dims fixed in the model stay as they are."""
    fixed = onnx.ModelProto()
    fixed.CopyFrom(model)
    image = _image_input(fixed)
    dims = image.type.tensor_type.shape.dim if image is not None else []
    for dim, value in zip(dims, (1, 3, *input_hw)):
        if not dim.dim_value:
            dim.Clear()
            dim.dim_value = value
    del fixed.graph.value_info[:]
    return onnx.shape_inference.infer_shapes(fixed, data_prop=True)


def _image_input(model: onnx.ModelProto) -> onnx.ValueInfoProto | None:
    initializers = {t.name for t in model.graph.initializer}
    return next((i for i in model.graph.input if i.name not in initializers), None)


def _declared_dims(model: onnx.ModelProto) -> dict[str, Dims]:
    typed = list(model.graph.value_info) + list(model.graph.input) + list(model.graph.output)
    return {
        v.name: [d.dim_value if d.HasField("dim_value") else (d.dim_param or None)
                 for d in v.type.tensor_type.shape.dim]
        for v in typed if v.type.HasField("tensor_type") and v.type.tensor_type.HasField("shape")
    }


def static_dims(model: onnx.ModelProto) -> dict[str, Dims]:
    """{tensor name: dims} for every tensor a node makes, of a model from with_static_input: ints where
    known (inferred, or measured by running it), the symbol or None where neither could tell."""
    dims = _declared_dims(model)
    unknown = [out for node in model.graph.node if node.op_type != "Constant" for out in node.output
               if out and not all(isinstance(d, int) for d in dims.get(out) or [None])]
    dims.update(_measured_dims(model, unknown))
    return dims


def _measured_dims(model: onnx.ModelProto, names: list[str]) -> dict[str, Dims]:
    """The run shapes of `names`, from onnxruntime on a zero image; {} where it cannot run the model."""
    image = _image_input(model)
    if not names or image is None:
        return {}
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    outputs = {o.name for o in probe.graph.output}
    probe.graph.output.extend(onnx.ValueInfoProto(name=n) for n in names if n not in outputs)
    options = ort.SessionOptions()
    options.log_severity_level = _ERRORS_ONLY
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # every tensor kept as named
    try:
        session = ort.InferenceSession(probe.SerializeToString(), options, providers=["CPUExecutionProvider"])
        shape = [d.dim_value for d in image.type.tensor_type.shape.dim]
        results = session.run(names, {image.name: np.zeros(shape, np.float32)})
    except Exception:  # onnxruntime's errors share no base class but Exception; the caller reads what it has
        return {}
    return {name: list(result.shape) for name, result in zip(names, results)}
