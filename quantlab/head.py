"""Graph passes that decide which nodes stay in float, each returning (include, exclude) name sets.

The YOLO head is found by structure, not by name: walking back from the detection output, every
node is head until the Reshape that flattens a branch's (N, C, H, W) map to (N, C, H*W). Past that
point box pixels (0..640), class probabilities (0..1) and the task's values (mask coefficients,
keypoint pixels, an angle) share tensors, and one INT8 scale across them rounds every score to
zero. So the decode stays float for every head (Detect, Segment, Pose, OBB, v10Detect, YOLO26, and
an end-to-end head's TopK or NonMaxSuppression), while the convolutions before the flatten quantize.
Only the detection output (the first) is walked: other outputs (segmentation protos, feature maps)
lead back through the whole backbone, and quantize like it. Shapes are inferred with the input
fixed at the calibration size (graphshapes.py).
"""

from __future__ import annotations

import onnx

from quantlab.errors import ConfigError
from quantlab.graphshapes import static_dims, with_static_input
from quantlab.recipes import Recipe

NodeSets = tuple[set[str], set[str]]
# Ops whose output depends on their input's shape only: dynamic exports compute anchors from the
# feature maps' shapes, and following those inputs would lead the walk into the backbone
SHAPE_ONLY_OPS = frozenset({"Shape", "Size"})


def _flattens_branch(node: onnx.NodeProto, dims: dict) -> bool:
    """A Reshape/Flatten from (N, C, H, W) to (N, C, L): channels kept, space flattened."""
    if node.op_type not in ("Reshape", "Flatten"):
        return False
    src, dst = dims.get(node.input[0]), dims.get(node.output[0])
    return (src is not None and dst is not None and len(src) == 4 and len(dst) == 3
            and isinstance(src[1], int) and src[1] == dst[1])


def yolo_head_pass(model: onnx.ModelProto, input_hw: tuple[int, int] = (640, 640)) -> NodeSets:
    """Exclude the decode part of a YOLO head (DFL, anchors, Sigmoid, the task's decode, final Concat); () if none."""
    inferred = with_static_input(model, input_hw)
    dims = static_dims(inferred)
    producers = {out: node for node in inferred.graph.node for out in node.output}
    head: set[str] = set()
    visited: set[str] = set()  # by first output, unique in a graph: node names may be empty or repeated
    stack = [inferred.graph.output[0].name]
    boundaries = 0
    while stack:
        node = producers.get(stack.pop())
        if node is None or node.output[0] in visited:
            continue
        visited.add(node.output[0])
        head.add(node.name)
        if _flattens_branch(node, dims):
            boundaries += 1
            continue
        if node.op_type in SHAPE_ONLY_OPS:  # reads a tensor's shape, not its values: the walk ends here
            continue
        stack.extend(i for i in node.input if i)
    convs = [n for n in inferred.graph.node if n.op_type == "Conv"]
    head_convs = [n for n in convs if n.name in head]
    if boundaries == 0 or len(head_convs) > max(2, len(convs) // 4):
        return set(), set()  # not a YOLO head: keep nothing in float rather than everything
    return set(), head


def name_unnamed_nodes(model: onnx.ModelProto) -> int:
    """Name every nameless node after its op and first output, in place; returns how many.

    onnxruntime's quantizer excludes nodes by name, so nameless nodes (ONNX's version converter
    makes them, e.g. the Flatten-Softmax-Reshape of an opset-12 Softmax raised to 13) would all be
    one name "": keeping one of them in float would keep every one of them in float.
    """
    taken = {n.name for n in model.graph.node}
    named = 0
    for node in model.graph.node:
        if node.name:
            continue
        name = f"{node.op_type}:{node.output[0]}"
        while name in taken:
            name += "_"
        node.name = name
        taken.add(name)
        named += 1
    return named


def user_pass(recipe: Recipe, model: onnx.ModelProto) -> NodeSets:
    """The user's own --exclude and --include node names, checked against the graph."""
    names = {n.name for n in model.graph.node}
    both = sorted(set(recipe.exclude_nodes) & set(recipe.include_nodes))
    if both:
        raise ConfigError(f"node(s) both excluded and included: {', '.join(both)}; name each in one list only")
    unknown = sorted((set(recipe.exclude_nodes) | set(recipe.include_nodes)) - names)
    if unknown:
        sample = ", ".join(sorted(names)[:5])
        raise ConfigError(f"node names not in the model: {', '.join(unknown)} (names look like: {sample}, ...)")
    return set(recipe.include_nodes), set(recipe.exclude_nodes)


def float_nodes(model: onnx.ModelProto, recipe: Recipe, input_hw: tuple[int, int] = (640, 640)) -> set[str]:
    """Merge every pass: the union of exclusions, less anything explicitly included."""
    passes = [user_pass(recipe, model)]
    if recipe.keep_head_float:
        passes.append(yolo_head_pass(model, input_hw))
    include = set().union(*(p[0] for p in passes))
    exclude = set().union(*(p[1] for p in passes))
    return exclude - include


def softmax_before_transpose(model: onnx.ModelProto) -> int:
    """Rewrite Transpose(perm) -> Softmax(axis) as Softmax(perm[axis]) -> Transpose(perm), in place; returns
    how many. The same numbers (softmax is per position along one axis, opset >= 13), but onnxruntime's
    Softmax over a non-last axis transposes internally: on the YOLOv8 DFL (a (1, 4, 16, N) map transposed
    to (1, 16, 4, N), softmax over the 16 bins) the rewrite takes about 9% off the INT8 model's time.
    """
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for node in model.graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    graph_outputs = {o.name for o in model.graph.output}
    nodes = list(model.graph.node)
    rewritten = 0
    for transpose in [n for n in nodes if n.op_type == "Transpose"]:
        after = consumers.get(transpose.output[0], [])
        if len(after) != 1 or after[0].op_type != "Softmax" or transpose.output[0] in graph_outputs:
            continue
        softmax = after[0]
        perm = next((list(a.ints) for a in transpose.attribute if a.name == "perm"), None)
        axis_attr = next((a for a in softmax.attribute if a.name == "axis"), None)
        if perm is None or axis_attr is None:
            continue  # a default perm (reversal) or axis (-1) needs the rank, which a pass here need not know
        axis_attr.i = perm[axis_attr.i]  # a negative axis indexes perm from its end, as it should
        source, between, result = transpose.input[0], transpose.output[0], softmax.output[0]
        softmax.input[0], softmax.output[0] = source, between
        transpose.input[0], transpose.output[0] = between, result
        i, j = nodes.index(transpose), nodes.index(softmax)
        nodes[i], nodes[j] = softmax, transpose  # keep the graph topologically sorted
        rewritten += 1
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    return rewritten
