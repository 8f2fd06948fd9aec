"""How much arithmetic a model does: the multiply-accumulates of its convolutions and matrix products at one
input size, so the report can show achieved GMAC/s beside latency (quantization changes the precision of
these MACs, not their number)."""

from __future__ import annotations

import math

import onnx

from quantlab.graphshapes import static_dims, with_static_input


def count_macs(model: onnx.ModelProto, input_hw: tuple[int, int]) -> int | None:
    """The MACs of one inference at `input_hw` (Conv, ConvTranspose, MatMul, Gemm); None when a shape that
    decides them is unknown, rather than a count that leaves some out."""
    try:
        fixed = with_static_input(model, input_hw)
    except (onnx.shape_inference.InferenceError, ValueError):  # shapes onnx cannot infer: no count, not an error
        return None
    dims = static_dims(fixed)
    weights = {t.name: list(t.dims) for t in fixed.graph.initializer}

    def shape(name: str) -> list[int] | None:
        known = weights.get(name) or dims.get(name)
        return known if known and all(isinstance(d, int) for d in known) else None

    total = 0
    for node in fixed.graph.node:
        if node.op_type not in ("Conv", "ConvTranspose", "MatMul", "Gemm"):
            continue
        out, a, b = shape(node.output[0]), shape(node.input[0]), shape(node.input[1])
        if out is None or a is None or b is None:
            return None
        if node.op_type == "Conv":  # weights (Cout, Cin / group, kH, kW): each output sums Cin / group x kH x kW
            total += math.prod(out) * math.prod(b[1:])
        elif node.op_type == "ConvTranspose":  # weights (Cin, Cout / group, kH, kW): each input spreads over them
            total += math.prod(a) * math.prod(b[1:])
        elif node.op_type == "MatMul":
            total += math.prod(out) * a[-1]
        else:  # Gemm: A is (M, K), or (K, M) with transA
            trans_a = next((attr.i for attr in node.attribute if attr.name == "transA"), 0)
            total += math.prod(out) * a[0 if trans_a else -1]
    return total
