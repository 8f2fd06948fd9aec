"""FP16 conversion through onnxruntime's own float16 converter (it ships in the onnxruntime wheel and onnxruntime
maintains it; onnxconverter-common's copy of the same code would be one more dependency)."""

from __future__ import annotations

import heapq
from collections.abc import Iterable

import onnx
from onnx import TensorProto
from onnxruntime.transformers import float16

from quantlab.head import SHAPE_ONLY_OPS


def half_model(model: onnx.ModelProto, keep_float: Iterable[str]) -> tuple[onnx.ModelProto, set[str]]:
    """(a copy of `model` in FP16, the names of the nodes left in float32).

    Inputs and outputs stay float32 (a Cast after each input, before each output). `keep_float` (node names: the
    YOLO head's decode) and the ops onnxruntime's converter blocks (TopK, NonMaxSuppression, Range, Min, Max, ...)
    stay float32, with a Cast where they meet the FP16 part; values that pass from one float32 node to another stay
    float32 (the converter would round them through FP16). Nodes are returned in topological order.
    """
    op_block = set(float16.DEFAULT_OP_BLOCK_LIST)
    by_name = {n.name: n for n in model.graph.node}
    # Shape and Size read no values: blocking them would only cast a whole FP16 feature map to float32
    node_block = {name for name in keep_float if name in by_name and by_name[name].op_type not in SHAPE_ONLY_OPS}
    kept = node_block | {n.name for n in model.graph.node if n.op_type in op_block}
    converted = float16.convert_float_to_float16(_copy(model), keep_io_types=True, op_block_list=sorted(op_block),
                                                 node_block_list=sorted(node_block))
    _skip_round_trips(converted)
    _sort_nodes(converted.graph)
    return converted, kept


def _copy(model: onnx.ModelProto) -> onnx.ModelProto:
    """The converter edits the model it is given."""
    duplicate = onnx.ModelProto()
    duplicate.CopyFrom(model)
    return duplicate


def _elem_types(graph: onnx.GraphProto) -> dict[str, int]:
    types = {v.name: v.type.tensor_type.elem_type for v in (*graph.input, *graph.value_info, *graph.output)}
    types.update({t.name: t.data_type for t in graph.initializer})
    return types


def _cast_to(node: onnx.NodeProto) -> int | None:
    return next((a.i for a in node.attribute if a.name == "to"), None) if node.op_type == "Cast" else None


def _skip_round_trips(model: onnx.ModelProto) -> None:
    """Where a float32 value goes Cast(FP16) -> Cast(float32), read the float32 value directly, in place, and drop
    the Casts left doing nothing. The converter makes these between two float32 nodes: they only lose precision."""
    graph = model.graph
    nodes = list(graph.node)
    types = _elem_types(graph)
    producers = {out: node for node in nodes for out in node.output}
    for node in nodes:
        source = producers.get(node.input[0]) if _cast_to(node) == TensorProto.FLOAT else None
        if source is not None and _cast_to(source) == TensorProto.FLOAT16 \
                and types.get(source.input[0]) == TensorProto.FLOAT:
            node.input[0] = source.input[0]
    outputs = {o.name for o in graph.output}
    dropped: set[int] = set()  # ids of the Casts dropped (`nodes` holds them, so ids stay theirs)
    for cast in [n for n in nodes if _cast_to(n) == TensorProto.FLOAT and types.get(n.input[0]) == TensorProto.FLOAT]:
        others = [n for n in nodes if n is not cast and id(n) not in dropped]
        source, result = cast.input[0], cast.output[0]
        if result not in outputs:
            _rename(others, result, source)
        elif source in producers and source not in outputs:  # the value takes the graph output's name
            _rename(others, source, result)
        else:
            continue
        dropped.add(id(cast))
    read = {name for node in nodes for name in node.input} | outputs
    kept = [n for n in nodes if id(n) not in dropped and (n.op_type != "Cast" or n.output[0] in read)]
    produced = {out for node in kept for out in node.output}
    annotations = [v for v in graph.value_info if v.name in produced]
    del graph.node[:]
    graph.node.extend(kept)
    del graph.value_info[:]
    graph.value_info.extend(annotations)


def _rename(nodes: list[onnx.NodeProto], old: str, new: str) -> None:
    """`nodes` read and write `new` where they read or wrote `old`, in place."""
    for node in nodes:
        for names in (node.input, node.output):
            for i, name in enumerate(names):
                if name == old:
                    names[i] = new


def _sort_nodes(graph: onnx.GraphProto) -> None:
    """Order the nodes so each comes after its inputs' producers (the converter appends its Casts at the end),
    keeping the given order wherever it already holds, in place."""
    producer = {out: i for i, node in enumerate(graph.node) for out in node.output if out}
    waiting_on = [{producer[name] for name in node.input if name in producer} for node in graph.node]
    readers: dict[int, list[int]] = {}
    for i, needs in enumerate(waiting_on):
        for j in needs:
            readers.setdefault(j, []).append(i)
    ready = [i for i, needs in enumerate(waiting_on) if not needs]
    heapq.heapify(ready)
    order = []
    while ready:
        i = heapq.heappop(ready)
        order.append(graph.node[i])
        for k in readers.get(i, []):
            waiting_on[k].discard(i)
            if not waiting_on[k]:
                heapq.heappush(ready, k)
    if len(order) != len(graph.node):  # a cycle: never drop its nodes silently
        raise ValueError(f"the graph has a cycle through {len(graph.node) - len(order)} node(s)")
    del graph.node[:]
    graph.node.extend(order)
