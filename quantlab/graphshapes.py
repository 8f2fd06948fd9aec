"""Static shapes of a graph's tensors, inferred with the image input fixed at one size, so that
dynamic-shape exports (whose Reshape targets are computed from Shape ops) read like static ones."""

from __future__ import annotations

import onnx


def with_static_input(model: onnx.ModelProto, input_hw: tuple[int, int]) -> onnx.ModelProto:
    """A copy whose image input's dynamic dims are set to (1, 3, H, W), shapes inferred with
    constant propagation; dims fixed in the model stay as they are."""
    fixed = onnx.ModelProto()
    fixed.CopyFrom(model)
    initializers = {t.name for t in fixed.graph.initializer}
    image = next((i for i in fixed.graph.input if i.name not in initializers), None)
    dims = image.type.tensor_type.shape.dim if image is not None else []
    for dim, value in zip(dims, (1, 3, *input_hw)):
        if not dim.dim_value:
            dim.Clear()
            dim.dim_value = value
    del fixed.graph.value_info[:]
    return onnx.shape_inference.infer_shapes(fixed, data_prop=True)


def static_dims(model: onnx.ModelProto) -> dict[str, list[int | str | None]]:
    """{tensor name: dims} for every typed tensor: ints where known, the symbol or None where not."""
    typed = list(model.graph.value_info) + list(model.graph.input) + list(model.graph.output)
    return {
        v.name: [d.dim_value if d.HasField("dim_value") else (d.dim_param or None)
                 for d in v.type.tensor_type.shape.dim]
        for v in typed if v.type.HasField("tensor_type") and v.type.tensor_type.HasField("shape")
    }
