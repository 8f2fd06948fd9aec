"""Sessions: every one opened with the same options, from bytes or by path; runtimes beside recipes (names, the
missing-extra message, OpenVINO running quantlab's models)."""

from __future__ import annotations

import importlib.util
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from quantlab import sessions
from quantlab.demo import DEMO_MODEL
from quantlab.errors import ConfigError
from quantlab.gates import Budgets
from quantlab.quantize import quantize_model
from quantlab.recipes import resolve_recipe
from quantlab.report import fastest_accurate
from quantlab.sessions import make_session, open_session, parse_runtimes, session_options
from quantlab.variant import Role, VariantId, plan_variants


@pytest.mark.parametrize("threads", [None, 1, 3])
def test_every_session_is_configured_alike(threads):
    options = session_options() if threads is None else session_options(threads)
    assert options.intra_op_num_threads == (threads or 1) and options.inter_op_num_threads == 1
    assert options.log_severity_level == 3  # errors only: no warnings on every session
    assert options.execution_mode == ort.ExecutionMode.ORT_SEQUENTIAL
    assert options.graph_optimization_level == ort.GraphOptimizationLevel.ORT_ENABLE_ALL


def _add_model(path, external: bool):
    """y = x + w, w a (1, 4) initializer of 1..4, saved with its weights in `<name>.data` when external."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])
    w = numpy_helper.from_array(np.arange(1, 5, dtype=np.float32).reshape(1, 4), "w")
    graph = helper.make_graph([helper.make_node("Add", ["x", "w"], ["y"])], "add", [x], [y], [w])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.save_model(model, str(path), save_as_external_data=external, location=f"{path.name}.data",
                    size_threshold=0)
    return path


@pytest.mark.parametrize(
    ("external", "source_type"),
    [(False, bytes), (True, str)],  # bytes: any path works; a path: onnxruntime finds the data files beside it
    ids=["self-contained", "external-data"],
)
def test_sessions_open_from_bytes_unless_the_model_has_external_data(tmp_path, monkeypatch, external, source_type):
    folder = tmp_path / "모델 folder"
    folder.mkdir()
    path = _add_model(folder / "add.onnx", external)
    calls, real = [], ort.InferenceSession

    def spy(source, options, providers):
        calls.append((type(source), options.intra_op_num_threads, providers))
        return real(source, options, providers=providers)

    monkeypatch.setattr(sessions.ort, "InferenceSession", spy)
    session = make_session(path, threads=2)
    make_session(path)
    assert calls == [(source_type, 2, ["CPUExecutionProvider"]), (source_type, 1, ["CPUExecutionProvider"])]
    out = session.run(None, {"x": np.ones((1, 4), np.float32)})[0]
    np.testing.assert_array_equal(out, [[2, 3, 4, 5]])


@pytest.mark.parametrize("names, runtimes, expected", [
    # onnxruntime alone: the names quantlab always had
    (["auto"], ("onnxruntime",), ["fp32", "auto", "dynamic"]),
    # another runtime repeats fp32 and the recipes under NAME@RUNTIME, not dynamic (onnxruntime's contrast)
    (["auto", "ort-default"], ("onnxruntime", "openvino"),
     ["fp32", "auto", "ort-default", "dynamic", "fp32@openvino", "auto@openvino", "ort-default@openvino"]),
    # a recipe made for OpenVINO runs there only
    (["auto", "ov-conv"], ("onnxruntime", "openvino"),
     ["fp32", "auto", "dynamic", "fp32@openvino", "auto@openvino", "ov-conv@openvino"]),
], ids=["onnxruntime-only", "with-openvino", "openvino-recipe"])
def test_variant_names_per_runtime(names, runtimes, expected):
    assert [v.name for v in plan_variants(names, runtimes=runtimes)] == expected
    assert [str(VariantId.parse(n)) for n in expected] == expected  # a name parses and prints itself


@pytest.mark.parametrize("gated, contrast, tune, roles", [
    (["auto"], ["ort-default"], False,
     {"fp32": "reference", "auto": "gated", "ort-default": "contrast", "dynamic": "contrast",
      "fp32@openvino": "contrast", "auto@openvino": "gated", "ort-default@openvino": "contrast"}),
    # dynamic asked for is gated (on onnxruntime only); tuned is gated
    (["auto", "dynamic"], [], True,
     {"fp32": "reference", "auto": "gated", "dynamic": "gated", "fp32@openvino": "contrast",
      "auto@openvino": "gated", "tuned": "gated"}),
], ids=["contrast-recipes", "dynamic-gated-and-tuned"])
def test_each_variant_has_one_role(gated, contrast, tune, roles):
    plan = plan_variants(gated, contrast, runtimes=("onnxruntime", "openvino"), tune=tune)
    assert {v.name: v.role.value for v in plan} == roles
    assert {v.name for v in plan if v.speed_gated} == {n for n, r in roles.items()
                                                        if r == "gated" and n != "dynamic"}
    assert [v for v in plan if v.role is Role.REFERENCE] == [plan[0]]


def test_tuned_is_speed_gated_as_the_recipe_it_is_made_from():
    """Tuned from a dynamic recipe runs ConvInteger: slower than FP32 on CPU by design, so not speed-gated."""
    assert {v.name: v.speed_gated for v in plan_variants(["dynamic"], tune=True)} == {
        "fp32": False, "dynamic": False, "tuned": False}
    assert {v.name: v.speed_gated for v in plan_variants(["auto"], tune=True) if v.gated} == {
        "auto": True, "tuned": True}


def test_a_recipe_for_another_runtime_alone_is_refused():
    with pytest.raises(ConfigError, match=r"^recipe 'ov-conv' is made for openvino, which is not among the runtimes "
                                          r"\(onnxruntime\): add openvino$"):
        plan_variants(["auto", "ov-conv"], runtimes=("onnxruntime",))


def test_unknown_runtime_lists_the_choices():
    with pytest.raises(ConfigError, match=r"runtime\(s\) tflite unknown: choose from onnxruntime, openvino, tensorrt"):
        parse_runtimes("onnxruntime,tflite")


def test_tensorrt_where_it_cannot_run_is_an_error_unless_the_caller_skips_it(demo_model):
    """This onnxruntime has no TensorRT provider: asking for the runtime says so; a suite reads it unrequired and
    skips its variants (tests/test_pytest_plugin.py); opening a session on it is the same error, never a CPU run."""
    with pytest.raises(ConfigError, match=r"^runtime tensorrt: onnxruntime \S+ has no TensorrtExecutionProvider: "
                                          r"install onnxruntime-gpu"):
        parse_runtimes("tensorrt")
    assert parse_runtimes("tensorrt", required=False) == ("onnxruntime", "tensorrt")
    with pytest.raises(ConfigError, match="runtime tensorrt: .*has no TensorrtExecutionProvider"):
        open_session(demo_model, "tensorrt")


def test_missing_openvino_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "openvino", None)  # `import openvino` now raises ImportError
    with pytest.raises(ConfigError, match=r"^runtime openvino: .* pip install 'quantlab-yolo\[openvino\]'$"):
        parse_runtimes("openvino")
    with pytest.raises(ConfigError, match=r"pip install 'quantlab-yolo\[openvino\]'"):
        open_session(DEMO_MODEL, "openvino")


def _entry(name, runtime, speedup, map_drop, agreement=None):
    return {"name": name, "runtime": runtime, "speedup": speedup, "map_drop": map_drop, "agreement": agreement}


@pytest.mark.parametrize("entries, expected", [
    # the fastest within budget wins, whatever its runtime
    ([_entry("fp32", "onnxruntime", 1.0, 0.0), _entry("auto", "onnxruntime", 1.8, 0.004),
      _entry("auto@openvino", "openvino", 2.2, 0.001)], "auto@openvino"),
    # a faster variant over the mAP budget is passed over
    ([_entry("fp32", "onnxruntime", 1.0, 0.0), _entry("auto", "onnxruntime", 1.8, 0.004),
      _entry("s8s8@openvino", "openvino", 2.0, 0.06)], "auto"),
    # without labels, agreement with FP32 decides
    ([_entry("fp32", "onnxruntime", 1.0, None, 1.0), _entry("auto", "onnxruntime", 1.8, None, 0.5)], "fp32"),
], ids=["other-runtime", "over-budget", "agreement"])
def test_fastest_accurate(entries, expected):
    assert fastest_accurate(entries, Budgets(max_map_drop=0.005))["name"] == expected


@pytest.fixture(scope="module")
def probe():
    rng = np.random.default_rng(0)
    return {"images": rng.random((1, 3, 192, 320), dtype=np.float32)}


def test_openvino_fp32_matches_onnxruntime(probe):
    pytest.importorskip("openvino", reason="the openvino extra is not installed")
    reference = make_session(DEMO_MODEL)
    session = open_session(DEMO_MODEL, "openvino")
    assert session.get_inputs()[0].name == reference.get_inputs()[0].name
    assert session.get_inputs()[0].shape == [1, 3, 192, 320]
    assert session.get_outputs()[0].name == reference.get_outputs()[0].name
    feed = {reference.get_inputs()[0].name: probe["images"]}
    expected = reference.run(None, feed)[0]
    got = session.run(None, feed)[0]
    assert got.shape == expected.shape and got.dtype == np.float32
    # OpenVINO's default precision is BF16 where the CPU has it (8-bit mantissa): boxes within 5%, scores 0.03
    np.testing.assert_allclose(got[:, :4], expected[:, :4], rtol=0.05, atol=1.0)
    np.testing.assert_allclose(got[:, 4:], expected[:, 4:], atol=0.03)


def test_openvino_results_survive_the_next_run(probe):
    pytest.importorskip("openvino", reason="the openvino extra is not installed")
    session = open_session(DEMO_MODEL, "openvino")
    name = session.get_inputs()[0].name
    first = session.run(None, {name: probe["images"]})[0]
    kept = first.copy()
    session.run(None, {name: np.zeros_like(probe["images"])})
    np.testing.assert_array_equal(first, kept)


@pytest.fixture(scope="module")
def int8_models(tmp_path_factory, demo_model, calib_images):
    """{recipe: path} of the demo quantized with auto and ov-conv on 8 calibration images."""
    folder = tmp_path_factory.mktemp("int8")
    paths = {}
    for name in ("auto", "ov-conv"):
        paths[name] = folder / f"{name}.onnx"
        quantize_model(demo_model, paths[name], resolve_recipe(name).replace(num_calib=8), calib_images, force=True)
    return paths


def _quantized_outputs(path) -> Counter:
    """Op types of the nodes whose outputs a QuantizeLinear reads: the activations stored as INT8."""
    graph = onnx.load(str(path)).graph
    producers = {o: n.op_type for n in graph.node for o in n.output}
    return Counter(producers.get(n.input[0], "input") for n in graph.node if n.op_type == "QuantizeLinear")


def _int8_convs(path) -> int:
    """Convolutions whose input and weight both come from DequantizeLinear."""
    graph = onnx.load(str(path)).graph
    dequantized = {o for n in graph.node if n.op_type == "DequantizeLinear" for o in n.output}
    return sum(n.op_type == "Conv" and {n.input[0], n.input[1]} <= dequantized for n in graph.node)


def test_ov_conv_leaves_silu_in_float(int8_models):
    auto, ov_conv = _quantized_outputs(int8_models["auto"]), _quantized_outputs(int8_models["ov-conv"])
    assert auto["Sigmoid"] > 50 and auto["Conv"] > 60  # auto: SiLU in INT8 (QLinearSigmoid, QLinearMul)
    # ov-conv: only what a convolution reads; its output, Sigmoid, MaxPool and Resize stay float
    assert ov_conv["Conv"] == ov_conv["Sigmoid"] == ov_conv["MaxPool"] == ov_conv["Resize"] == 0
    assert _int8_convs(int8_models["ov-conv"]) == _int8_convs(int8_models["auto"]) > 60  # the same INT8 convs


@pytest.mark.parametrize("recipe", ["auto", "ov-conv"])
def test_openvino_runs_quantlab_int8(int8_models, probe, recipe):
    pytest.importorskip("openvino", reason="the openvino extra is not installed")
    int8 = int8_models[recipe]
    feed = {"images": probe["images"]}
    expected = make_session(int8).run(None, feed)[0]
    got = open_session(int8, "openvino").run(None, feed)[0]
    cosine = float((got * expected).sum() / np.linalg.norm(got) / np.linalg.norm(expected))
    assert cosine > 0.999, f"OpenVINO's INT8 output disagrees with onnxruntime's (cosine {cosine:.5f})"


@pytest.mark.slow
def test_the_placement_tool_runs_and_prints_its_table(tmp_path, capsys):
    """tools/ort_placement.py is what the README's placement table came from: it must keep running
    (an evaluate_models signature change once broke it unnoticed)."""
    spec = importlib.util.spec_from_file_location(
        "ort_placement", Path(__file__).resolve().parents[1] / "tools" / "ort_placement.py")
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    assert tool.main(["--only", "auto", "--runs", "3", "--no-openvino", "--out", str(tmp_path)]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| ") and "---" not in line]
    assert {row.split(" | ")[0] + " | " + row.split(" | ")[1] for row in rows[1:]} == {
        "| fp32 | ort", "| auto | ort", "| auto | ort-extended"}


def test_parsed_runtimes_start_with_onnxruntime_the_reference(monkeypatch):
    monkeypatch.setattr(sessions, "require", lambda runtime: None)  # the order, whether openvino is here or not
    assert parse_runtimes("onnxruntime") == ("onnxruntime",)
    assert parse_runtimes("openvino,onnxruntime") == ("onnxruntime", "openvino")


CUDA_FIRST = ("CUDAExecutionProvider", "CPUExecutionProvider")


@pytest.mark.parametrize(("recipes", "runtimes", "providers", "gated_on"), [
    # on a GPU provider auto is FP16: gated on speed, not on the INT8 size budget; named INT8 is shown slower there
    (["auto", "u8s8"], ("onnxruntime",), CUDA_FIRST, {"auto": {"speed": True, "size": False},
                                                      "u8s8": {"speed": False, "size": True}}),
    (["auto", "fp16"], ("onnxruntime",), ("CPUExecutionProvider",), {"auto": {"speed": True, "size": True},
                                                                      "fp16": {"speed": False, "size": False}}),
    # TensorRT runs INT8 (from QDQ) and FP16 engines fast, whichever provider the other sessions use
    (["auto"], ("onnxruntime", "tensorrt"), ("CPUExecutionProvider",), {"auto": {"speed": True, "size": True},
                                                                         "auto@tensorrt": {"speed": True, "size": True}}),
    (["fp16"], ("onnxruntime", "tensorrt"), CUDA_FIRST, {"fp16": {"speed": True, "size": False},
                                                          "fp16@tensorrt": {"speed": True, "size": False}}),
], ids=["cuda", "cpu", "tensorrt-int8", "tensorrt-fp16"])
def test_the_gates_a_variant_meets_follow_its_providers(recipes, runtimes, providers, gated_on):
    plan = {v.name: v for v in plan_variants(recipes, runtimes=runtimes, include_dynamic=False, providers=providers)}
    for name, expected in gated_on.items():
        assert {"speed": plan[name].speed_gated, "size": plan[name].size_gated} == expected, name
    assert not any(v.speed_gated or v.size_gated for v in plan.values() if not v.gated)


def test_a_variant_not_gated_on_speed_or_size_is_not_checked_on_them():
    from quantlab.gates import Budgets

    metrics = {c.metric for c in Budgets().checks(labelled=True, speed_gated=False, size_gated=False)}
    assert "speedup" not in metrics and "size_ratio" not in metrics and "map_drop" in metrics
    assert {"speedup", "size_ratio"} <= {c.metric for c in Budgets().checks(labelled=True)}


def test_tuning_an_fp16_build_is_refused_where_it_is_planned_and_where_it_runs(tmp_path, demo_model):
    """tune moves quantized layers back to float; FP16 has none (auto is FP16 on a GPU provider)."""
    from quantlab.evaluate import EvalData
    from quantlab.recipes import resolve_recipe
    from quantlab.tune import tune

    with pytest.raises(ConfigError, match=r"builds FP16 for CUDAExecutionProvider: put an INT8 recipe first"):
        plan_variants(["auto"], tune=True, providers=CUDA_FIRST)
    assert plan_variants(["auto"], tune=True)[-1].name == "tuned"
    with pytest.raises(ConfigError, match=r"^recipe 'fp16' builds FP16: tune moves quantized layers"):
        tune(demo_model, tmp_path / "t.onnx", resolve_recipe("fp16"), [], EvalData(images=(tmp_path / "x.jpg",)))
    assert not list(tmp_path.iterdir())
