"""The YOLOv8 head pass: found by structure, so renamed exports and other layouts work."""

import numpy as np
import onnx
import pytest

from quantlab.errors import ConfigError
from quantlab.head import float_nodes, softmax_before_transpose, yolo_head_pass
from quantlab.recipes import resolve_recipe

DECODE_OPS = {"Softmax", "Sigmoid", "Transpose", "Concat", "Conv", "Reshape"}


def _renamed(model):
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    for i, node in enumerate(copy.graph.node):
        node.name = f"n{i:04d}"
    return copy


def test_head_found_in_the_demo_model(demo_onnx):
    _, head = yolo_head_pass(demo_onnx)
    by_name = {n.name: n for n in demo_onnx.graph.node}
    ops = [by_name[n].op_type for n in head]
    assert DECODE_OPS <= set(ops)
    assert ops.count("Conv") == 1  # the DFL's fixed 1x1 conv; the branch convs quantize fine
    output = demo_onnx.graph.output[0].name
    assert next(n.name for n in demo_onnx.graph.node if output in n.output) in head


def test_head_found_by_structure_not_names(demo_onnx):
    _, head = yolo_head_pass(demo_onnx)
    renamed = _renamed(demo_onnx)
    _, renamed_head = yolo_head_pass(renamed)
    index = {n.name: i for i, n in enumerate(demo_onnx.graph.node)}
    assert renamed_head == {f"n{index[name]:04d}" for name in head}


def test_a_model_without_a_yolo_head_keeps_nothing_in_float():
    x = onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 3, 8, 8])
    y = onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 3, 8, 8])
    w = onnx.numpy_helper.from_array(np.ones((3, 3, 1, 1), "float32"), "w")
    graph = onnx.helper.make_graph([onnx.helper.make_node("Conv", ["x", "w"], ["y"], name="conv")], "g", [x], [y], [w])
    assert yolo_head_pass(onnx.helper.make_model(graph)) == (set(), set())


@pytest.mark.parametrize(
    ("changes", "expect"),
    [
        # the user keeps one more node in float
        ({"exclude_nodes": ("first-conv",)}, lambda head, got, first: got == head | {first}),
        # the user forces the Sigmoid back into INT8
        ({"include_nodes": ("sigmoid",)}, lambda head, got, first: got == {n for n in head if "Sigmoid" not in n}),
        # no head handling at all (the field report's setting)
        ({"keep_head_float": False}, lambda head, got, first: got == set()),
    ],
    ids=["exclude", "include", "head-off"],
)
def test_user_passes_merge_with_the_head_pass(demo_onnx, changes, expect):
    _, head = yolo_head_pass(demo_onnx)
    first_conv = next(n.name for n in demo_onnx.graph.node if n.op_type == "Conv")
    sigmoid = next(n for n in head if "Sigmoid" in n)
    names = {"first-conv": first_conv, "sigmoid": sigmoid}
    resolved = {k: tuple(names.get(v, v) for v in val) if isinstance(val, tuple) else val for k, val in changes.items()}
    got = float_nodes(demo_onnx, resolve_recipe("auto").replace(**resolved))
    assert expect(head, got, first_conv)


def test_unknown_node_names_are_listed(demo_onnx):
    with pytest.raises(ConfigError, match="not_a_node"):
        float_nodes(demo_onnx, resolve_recipe("auto").replace(exclude_nodes=("not_a_node",)))


def test_an_explicit_include_beats_the_head_pass(demo_onnx):
    """Precedence: a head node the user includes is quantized; the rest of the head stays float."""
    _, head = yolo_head_pass(demo_onnx)
    first_conv = next(n.name for n in demo_onnx.graph.node if n.op_type == "Conv")
    head_node = sorted(head)[0]
    recipe = resolve_recipe("auto").replace(exclude_nodes=(first_conv,), include_nodes=(head_node,))
    assert float_nodes(demo_onnx, recipe) == (head - {head_node}) | {first_conv}


def test_a_node_both_excluded_and_included_by_the_user_is_refused(demo_onnx):
    first_conv = next(n.name for n in demo_onnx.graph.node if n.op_type == "Conv")
    recipe = resolve_recipe("auto").replace(exclude_nodes=(first_conv,), include_nodes=(first_conv,))
    with pytest.raises(ConfigError, match="both excluded and included"):
        float_nodes(demo_onnx, recipe)


def _transpose_softmax(perm, axis):
    """x (2, 3, 5, 7) -> Transpose(perm) -> Softmax(axis) -> y."""
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3, 5, 7])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [[2, 3, 5, 7][p] for p in perm])
    nodes = [helper.make_node("Transpose", ["x"], ["t"], name="transpose", perm=perm),
             helper.make_node("Softmax", ["t"], ["y"], name="softmax", axis=axis)]
    return helper.make_model(helper.make_graph(nodes, "g", [x], [y]), opset_imports=[helper.make_opsetid("", 13)])


@pytest.mark.parametrize("perm, axis", [
    ([0, 2, 1, 3], 1),  # the YOLOv8 DFL: the softmax axis moves from 1 to 2
    ([3, 0, 2, 1], -1),  # a negative axis counts from the end of the transposed shape
    ([0, 1, 2, 3], 3),  # an identity perm keeps the axis
], ids=["dfl", "negative-axis", "identity"])
def test_softmax_before_transpose_is_exact(perm, axis):
    import onnxruntime as ort

    def run(model):
        return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]

    model = _transpose_softmax(perm, axis)
    x = np.random.default_rng(0).normal(size=(2, 3, 5, 7)).astype(np.float32) * 4
    expected = run(model)
    assert softmax_before_transpose(model) == 1
    assert [n.op_type for n in model.graph.node] == ["Softmax", "Transpose"]
    onnx.checker.check_model(model, full_check=True)
    np.testing.assert_allclose(run(model), expected, rtol=1e-6)


def test_softmax_before_transpose_on_the_demo_head(demo_model):
    model = onnx.load(str(demo_model))
    assert softmax_before_transpose(model) == 1
    softmax = next(n for n in model.graph.node if n.op_type == "Softmax")
    assert softmax.name == "/model.22/dfl/Softmax" and softmax.attribute[0].i == 2


# ---- pinned by the mutation triage (issue 28): each case fails on a one-token slip that survived mutmut ----

def _chain(backbone_convs: int, head_convs: int) -> onnx.ModelProto:
    """x (1, 4, 4, 4) -> `backbone_convs` 1x1 convs -> Reshape to (1, 4, 16) (the branch flatten) -> Reshape
    back to (1, 4, 4, 4) -> `head_convs` 1x1 convs -> y: a head with `head_convs` convs after the flatten."""
    from onnx import TensorProto, helper, numpy_helper

    weight = numpy_helper.from_array(np.eye(4, dtype=np.float32).reshape(4, 4, 1, 1), "w")
    flat = numpy_helper.from_array(np.array([1, 4, 16], np.int64), "flat")
    square = numpy_helper.from_array(np.array([1, 4, 4, 4], np.int64), "square")
    nodes, last = [], "x"
    for i in range(backbone_convs):
        nodes.append(helper.make_node("Conv", [last, "w"], [f"b{i}"], name=f"backbone{i}"))
        last = f"b{i}"
    nodes += [helper.make_node("Reshape", [last, "flat"], ["f"], name="flatten"),
              helper.make_node("Reshape", ["f", "square"], ["h"], name="unflatten")]
    last = "h"
    for i in range(head_convs):
        nodes.append(helper.make_node("Conv", [last, "w"], [f"c{i}"], name=f"head{i}"))
        last = f"c{i}"
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 4, 4])
    y = helper.make_tensor_value_info(last, TensorProto.FLOAT, [1, 4, 4, 4])
    graph = helper.make_graph(nodes, "g", [x], [y], [weight, flat, square])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])


@pytest.mark.parametrize(
    ("backbone_convs", "head_convs", "found"),
    [
        (9, 3, True),  # 3 of 12 convs: at the limit max(2, 12 // 4) = 3, still a head
        (5, 3, False),  # 3 of 8 convs: over max(2, 8 // 4) = 2, not a YOLO head
        (1, 2, True),  # 2 of 3 convs: the floor of 2 head convs (the DFL and one more)
    ],
    ids=["at-limit", "over-limit", "floor-2"],
)
def test_a_head_with_too_many_convs_is_not_a_yolo_head(backbone_convs, head_convs, found):
    head = {"flatten", "unflatten"} | {f"head{i}" for i in range(head_convs)}
    expected = head if found else set()
    assert yolo_head_pass(_chain(backbone_convs, head_convs), (4, 4)) == (set(), expected)
    assert float_nodes(_chain(backbone_convs, head_convs), resolve_recipe("auto"), (4, 4)) == expected


def test_the_walk_goes_on_past_the_first_branch_flatten():
    """Two branches, each flattened, concatenated: the walk ends at one flatten and still walks the other."""
    from onnx import TensorProto, helper, numpy_helper

    weight = numpy_helper.from_array(np.eye(4, dtype=np.float32).reshape(4, 4, 1, 1), "w")
    flat = numpy_helper.from_array(np.array([1, 4, 16], np.int64), "flat")
    nodes = [helper.make_node("Conv", ["x", "w"], ["a"], name="conv_a"),
             helper.make_node("Conv", ["x", "w"], ["b"], name="conv_b"),
             helper.make_node("Reshape", ["a", "flat"], ["fa"], name="flatten_a"),
             helper.make_node("Reshape", ["b", "flat"], ["fb"], name="flatten_b"),
             helper.make_node("Concat", ["fa", "fb"], ["y"], name="concat", axis=2)]
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 4, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 32])
    model = helper.make_model(helper.make_graph(nodes, "g", [x], [y], [weight, flat]),
                              opset_imports=[helper.make_opsetid("", 13)])
    assert yolo_head_pass(model, (4, 4)) == (set(), {"concat", "flatten_a", "flatten_b"})


def test_every_branch_flatten_of_the_demo_is_in_its_head(demo_onnx):
    """Every branch of the demo's head is flattened once: the walk finds each flatten, not just the first."""
    from quantlab.graphshapes import static_dims, with_static_input
    from quantlab.head import _flattens_branch

    dims = static_dims(with_static_input(demo_onnx, (640, 640)))
    _, head = yolo_head_pass(demo_onnx)
    flattens = {n.name for n in demo_onnx.graph.node if _flattens_branch(n, dims)}
    assert len(flattens) > 1 and flattens <= head


def test_unnamed_nodes_get_unique_names_past_named_ones_and_each_other():
    from onnx import helper

    from quantlab.head import name_unnamed_nodes

    nodes = [helper.make_node("Relu", ["x"], ["a"], name="Relu:y"), helper.make_node("Relu", ["a"], ["y"]),
             helper.make_node("Relu", ["y"], ["y_"]), helper.make_node("Relu", ["y_"], ["z"], name="last")]
    graph = helper.make_graph(nodes, "g", [], [])
    model = helper.make_model(graph)
    assert name_unnamed_nodes(model) == 2
    assert [n.name for n in model.graph.node] == ["Relu:y", "Relu:y_", "Relu:y__", "last"]


def test_unknown_node_names_show_the_first_five_names_of_the_model(demo_onnx):
    sample = ", ".join(sorted(n.name for n in demo_onnx.graph.node)[:5])
    with pytest.raises(ConfigError) as error:
        float_nodes(demo_onnx, resolve_recipe("auto").replace(exclude_nodes=("not_a_node",)))
    assert f"(names look like: {sample}, ...)" in str(error.value)


def _transposes(*pairs, outputs=("y0",)):
    """Transpose -> Softmax pairs on x (2, 3, 5, 7): pairs of (perm or None, axis or None, extra consumer)."""
    from onnx import TensorProto, helper

    nodes = []
    for k, (perm, axis, extra) in enumerate(pairs):
        nodes.append(helper.make_node("Transpose", ["x"], [f"t{k}"], name=f"transpose{k}",
                                      **({} if perm is None else {"perm": perm})))
        nodes.append(helper.make_node("Softmax", [f"t{k}"], [f"y{k}"], name=f"softmax{k}",
                                      **({} if axis is None else {"axis": axis})))
        if extra:
            nodes.append(helper.make_node("Identity", [f"t{k}"], [f"i{k}"], name=f"identity{k}"))
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3, 5, 7])
    graph = helper.make_graph(nodes, "g", [x], [helper.make_tensor_value_info(o, TensorProto.FLOAT, None)
                                                for o in outputs])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])


@pytest.mark.parametrize(
    ("pairs", "outputs", "rewritten"),
    [
        # a Transpose with a second consumer, then one without a perm, then one whose Softmax has no axis:
        # none is rewritten, and the pass goes on to the fourth and fifth
        ([([0, 2, 1, 3], 1, True), (None, 1, False), ([0, 2, 1, 3], None, False), ([0, 2, 1, 3], 1, False),
          ([0, 3, 2, 1], 1, False)], ("y3", "y4", "i0"), 2),
        # the transposed tensor is itself a graph output: it must keep its values
        ([([0, 2, 1, 3], 1, False)], ("t0", "y0"), 0),
    ],
    ids=["skips-then-two", "transposed-output"],
)
def test_softmax_before_transpose_skips_what_it_cannot_rewrite_and_counts_the_rest(pairs, outputs, rewritten):
    model = _transposes(*pairs, outputs=outputs)
    bare = onnx.helper.make_node("Transpose", ["x"], ["alone"], name="alone", perm=[1, 0, 2, 3])
    model.graph.node.insert(0, bare)  # no consumer at all
    assert softmax_before_transpose(model) == rewritten
