"""The fp16 recipe (quantlab.half, built by quantize_model) on the demo and every test-model family, and `auto`
choosing fp16 on GPU execution providers."""

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto

from quantlab.cpu import CpuInfo
from quantlab.errors import ConfigError
from quantlab.head import SHAPE_ONLY_OPS, yolo_head_pass
from quantlab.onnxmodel import inspect_model, load_model, resolve_input_hw
from quantlab.quantize import quantize_model, read_metadata
from quantlab.recipes import INT8_ONLY, PRESETS, Mode, Recipe, auto_recipe, resolve_recipe
from quantlab.sessions import make_session
from quantlab.verify import CHECK_IMAGES

MODELS = Path(__file__).parent / "data" / "models"
FP16 = resolve_recipe("fp16")
AVX2 = CpuInfo(arch="x86_64", model="test", flags=frozenset({"avx2"}), cores=2)
# Every family's committed export, and dynamic-axes exports as Ultralytics writes them and after onnxslim
FAMILY_FILES = sorted(p.name for p in MODELS.glob("*.onnx")) + [
    "dynamic/yolov8-seg.dynamic.opset12.onnx",  # Shape/Gather/Range anchor arithmetic, opset 12 raised to 13
    "dynamic/yolov8-pose.dynamic.opset17.slim.onnx",  # value_info shapes written by onnxslim
    "dynamic/yolo26.e2e.dynamic.opset20.slim.onnx",  # an end-to-end head's TopK at dynamic size
]


def _elem_types(model: onnx.ModelProto) -> dict[str, int]:
    graph = onnx.shape_inference.infer_shapes(model).graph
    types = {v.name: v.type.tensor_type.elem_type for v in (*graph.input, *graph.value_info, *graph.output)}
    return {**types, **{t.name: t.data_type for t in graph.initializer}}


def _cast_to(node: onnx.NodeProto) -> int | None:
    return next((a.i for a in node.attribute if a.name == "to"), None) if node.op_type == "Cast" else None


def _assert_head_in_float32(model: onnx.ModelProto, head: set[str]):
    """Every value a head node reads or writes is float32 (Shape reads only a shape), and no float32 value is
    rounded through FP16 on its way from one float32 node to the next (a Cast to FP16 read by a Cast back)."""
    __tracebackhide__ = True
    types = _elem_types(model)
    half = [f"{node.name} ({name})" for node in model.graph.node if node.name in head
            and node.op_type not in SHAPE_ONLY_OPS for name in (*node.input, *node.output)
            if types.get(name) == TensorProto.FLOAT16]
    assert not half, f"head nodes touching FP16 values: {', '.join(half[:5])}"
    producers = {out: node for node in model.graph.node for out in node.output}
    round_trips = [node.name for node in model.graph.node if _cast_to(node) == TensorProto.FLOAT
                   and node.input[0] in producers and _cast_to(producers[node.input[0]]) == TensorProto.FLOAT16]
    assert not round_trips, f"float32 values rounded through FP16 at: {', '.join(round_trips[:5])}"


def _head(path: Path) -> set[str]:
    """The YOLO head's decode in the source model, found by quantlab's own pass."""
    head = yolo_head_pass(load_model(path), resolve_input_hw(inspect_model(path), None))[1]
    assert head, f"{path}: no head found"
    return head


@pytest.fixture(scope="module")
def demo_builds(tmp_path_factory, demo_model, calib_images):
    """The demo model built with the fp16 recipe twice, into two files."""
    folder = tmp_path_factory.mktemp("fp16")
    return [quantize_model(demo_model, folder / f"demo{i}.fp16.onnx", FP16, calib_images) for i in range(2)]


def test_the_demo_in_fp16_agrees_with_fp32_at_half_the_size(demo_builds):
    result = demo_builds[0]
    check = result.self_check
    assert check.images == CHECK_IMAGES and check.held_out and result.num_calib == 0
    assert check.cosines["scores"] >= 0.999 and check.cosines["boxes"] >= 0.999, check.summary()
    assert 0.45 <= result.size_ratio <= 0.55


def test_the_demo_in_fp16_loads_on_the_cpu_with_float32_io(demo_builds, demo_model):
    path = demo_builds[0].output_path
    model = onnx.load(str(path))
    onnx.checker.check_model(model, full_check=True)  # nodes in order, annotations that agree with the graph
    assert [v.type.tensor_type.elem_type for v in (*model.graph.input, *model.graph.output)] == [TensorProto.FLOAT] * 2
    assert sum(t.data_type == TensorProto.FLOAT16 for t in model.graph.initializer) > 50  # the weights are half
    session, reference = make_session(path), make_session(demo_model)
    assert session.get_providers()[0] == "CPUExecutionProvider"
    feed = {"images": np.full(reference.get_inputs()[0].shape, 114 / 255, np.float32)}
    (output,), (expected,) = session.run(None, feed), reference.run(None, feed)
    assert output.dtype == np.float32 and output.shape == expected.shape


def test_the_demo_head_decode_stays_float32(demo_builds, demo_model):
    head = _head(demo_model)
    result = demo_builds[0]
    assert head <= set(result.float_nodes)
    _assert_head_in_float32(onnx.load(str(result.output_path)), head)


def test_the_fp16_build_is_the_same_bytes_twice_and_records_its_recipe(demo_builds):
    first, second = (r.output_path.read_bytes() for r in demo_builds)
    assert first == second
    metadata = read_metadata(demo_builds[0].output_path)
    assert json.loads(metadata["recipe"]) == PRESETS["fp16"].settings()
    assert json.loads(metadata["recipe"])["mode"] == "fp16"
    assert json.loads(metadata["calibration"]) == {"num_images": 0}
    assert json.loads(metadata["float_nodes"]) == list(demo_builds[0].float_nodes)


@pytest.mark.slow
@pytest.mark.parametrize("name", FAMILY_FILES)
def test_every_family_converts_loads_and_agrees(tmp_path, calib_images, name):
    result = quantize_model(MODELS / name, tmp_path / "fp16.onnx", FP16, calib_images)
    assert result.self_check.images == CHECK_IMAGES
    assert min(result.self_check.cosines.values()) >= 0.999, result.self_check.summary()
    model = onnx.load(str(result.output_path))
    onnx.checker.check_model(model, full_check=True)
    _assert_head_in_float32(model, _head(MODELS / name))
    end_to_end = {n.op_type for n in model.graph.node} & {"TopK", "NonMaxSuppression"}
    assert all(n.name in result.float_nodes for n in model.graph.node if n.op_type in end_to_end)


@pytest.mark.parametrize("providers", [
    ("CUDAExecutionProvider", "CPUExecutionProvider"),
    ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"),
], ids=["cuda", "tensorrt"])
def test_auto_on_a_gpu_provider_is_fp16_and_says_why(providers):
    recipe = auto_recipe(AVX2, providers)
    assert recipe == PRESETS["fp16"].replace(name="auto") and recipe.mode is Mode.FP16
    assert resolve_recipe("auto", AVX2, providers) == recipe
    for reason in (providers[0], "0.40x", "71 Memcpy", "0.85-0.97x", "1.07-1.26x"):
        assert reason in recipe.description


@pytest.mark.parametrize("providers", [
    (),  # no provider named: the CPU, as every call before providers existed
    ("CPUExecutionProvider",),
    ("CPUExecutionProvider", "CUDAExecutionProvider"),  # the first provider decides
], ids=["none", "cpu", "cpu-first"])
def test_auto_on_the_cpu_is_unchanged(providers):
    recipe = resolve_recipe("auto", AVX2, providers)
    assert recipe == auto_recipe(AVX2) == PRESETS["u8s8-rr"].replace(name="auto", align_channels=8)
    assert recipe.description == auto_recipe(AVX2).description


def test_an_fp16_recipe_round_trips_through_its_settings():
    recipe = Recipe("x", mode="fp16", exclude_nodes=("a",), num_calib=8)
    settings = recipe.settings()
    assert settings["mode"] == "fp16" and not set(INT8_ONLY) & set(settings)  # only what an fp16 build uses
    assert Recipe(**settings) == recipe


@pytest.mark.parametrize(("changes", "named"), [
    ({"per_channel": False}, "per_channel only applies"),
    ({"activation_type": "s8"}, "activation_type only applies"),
    ({"align_channels": 8}, "align_channels only applies"),  # channel padding is for MLAS's INT8 kernels
    ({"quant_format": "qoperator", "op_types": ("Conv",)}, "quant_format, op_types only apply"),
])
def test_int8_settings_on_an_fp16_recipe_are_refused(changes, named):
    with pytest.raises(ConfigError, match=f"recipe 'x': {named} to INT8 quantization"):
        Recipe("x", mode="fp16", **changes)
    with pytest.raises(ConfigError, match=named):
        PRESETS["fp16"].replace(**changes)


def test_a_cycle_is_an_error_never_nodes_dropped():
    """The sort that puts the converter's Casts in order keeps every node or says why it cannot."""
    from onnx import helper

    from quantlab.half import _sort_nodes

    graph = helper.make_graph([helper.make_node("Relu", ["b"], ["a"], name="r1"),
                               helper.make_node("Relu", ["a"], ["b"], name="r2")], "cycle", [], [])
    with pytest.raises(ValueError, match=r"cycle through 2 node\(s\)"):
        _sort_nodes(graph)
