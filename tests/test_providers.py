"""Execution providers in words: the Memcpy nodes that make INT8 slow on CUDA, read from onnxruntime's optimised
graph, and TensorRT's options, skip reason and error path, all checked on this CPU-only onnxruntime."""

from __future__ import annotations

import re
import tempfile

import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

from quantlab.errors import ConfigError
from quantlab.devices import TENSORRT_PROVIDER as TENSORRT
from quantlab.providers import (
    TensorrtPrecision,
    count_memcpy,
    explain_slow_int8,
    memcpy_nodes,
    optimized_graph,
    tensorrt_options,
    tensorrt_precision,
    tensorrt_session,
    tensorrt_unavailable,
)
from quantlab.quantize import QuantizeResult, quantize_model
from quantlab.recipes import resolve_recipe
from quantlab.sessions import make_session, parse_providers

CUDA = "CUDAExecutionProvider"
TENSORRT_LISTED = TENSORRT in ort.get_available_providers()


def _copies_graph(copies: list[str], domain: str) -> onnx.GraphProto:
    """x -> (copy -> Relu) per entry of `copies` -> y, named as onnxruntime's MemcpyTransformer names its nodes
    ('Memcpy', 'Memcpy_token_N') and the tensors it makes ('<tensor>_CUDAExecutionProvider')."""
    nodes, tensor = [], "x"
    for index, op_type in enumerate(copies):
        copied = f"{tensor}_{CUDA}"
        nodes.append(helper.make_node(op_type, [tensor], [copied], name="Memcpy" if index == 0 else
                                      f"Memcpy_token_{index}", domain=domain))
        tensor = f"relu_{index}"
        nodes.append(helper.make_node("Relu", [copied], [tensor]))
    nodes.append(helper.make_node("Identity", [tensor], ["y"]))
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])
    return helper.make_graph(nodes, "copies", [x], [y])


def _saved_optimised_graph(path, copies: list[str], domain: str = "", in_branch: bool = False) -> onnx.ModelProto:
    """A model shaped like an optimised graph onnxruntime saved for CUDA, written to `path` and read back;
    in_branch: the copies sit in an If node's branches, as MemcpyTransformer adds them to subgraphs too."""
    graph = _copies_graph(copies, domain)
    if in_branch:
        cond = helper.make_tensor_value_info("cond", TensorProto.BOOL, [])
        branch = helper.make_graph(list(graph.node), "then", [], list(graph.output))
        plain = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "else", [], list(graph.output))
        graph = helper.make_graph([helper.make_node("If", ["cond"], ["y"], then_branch=branch, else_branch=plain)],
                                  "branched", [cond, *graph.input], list(graph.output))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.save(model, str(path))
    return onnx.load(str(path))


@pytest.mark.parametrize("copies, domain, in_branch, expected", [
    # no copies: a graph placed on one device
    ([], "", False, 0),
    # one copy each way, in the default domain as onnxruntime writes them
    (["MemcpyFromHost", "MemcpyToHost"], "", False, 2),
    # several, unbalanced
    (["MemcpyFromHost", "MemcpyToHost", "MemcpyFromHost", "MemcpyToHost", "MemcpyFromHost"], "", False, 5),
    # any domain counts
    (["MemcpyFromHost", "MemcpyToHost", "MemcpyFromHost"], "com.microsoft", False, 3),
    # copies inside an If branch count too
    (["MemcpyFromHost", "MemcpyToHost"], "", True, 2),
], ids=["none", "one-each-way", "five", "other-domain", "in-subgraph"])
def test_count_memcpy_on_a_saved_graph(tmp_path, copies, domain, in_branch, expected):
    model = _saved_optimised_graph(tmp_path / "optimized.onnx", copies, domain, in_branch)
    assert count_memcpy(model) == expected


@pytest.fixture(scope="module")
def demo_int8(tmp_path_factory, demo_model, calib_images):
    """The demo model quantized with auto on 8 calibration images (QDQ)."""
    path = tmp_path_factory.mktemp("int8") / "auto.onnx"
    quantize_model(demo_model, path, resolve_recipe("auto").replace(num_calib=8), calib_images, force=True)
    return path


@pytest.fixture
def private_tmpdir(tmp_path, monkeypatch):
    """An empty folder that tempfile (and so quantlab.atomicio.temp_folder) uses for this test."""
    folder = tmp_path / "tmpdir"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder


def test_the_demo_int8_on_cpu_has_no_memcpy_and_leaves_nothing_behind(demo_int8, private_tmpdir):
    with optimized_graph(demo_int8, ("CPUExecutionProvider",), threads=1) as saved:
        assert saved.parent.parent == private_tmpdir
        model = onnx.load(str(saved))
        op_types = [n.op_type for n in model.graph.node]
        # onnxruntime's graph, not the QDQ file: on CPU the DQ -> Conv -> Q groups are fused into QLinearConv
        assert "QLinearConv" in op_types
        assert "QLinearConv" not in {n.op_type for n in onnx.load(str(demo_int8)).graph.node}
        assert count_memcpy(model) == 0
    assert list(private_tmpdir.iterdir()) == []
    assert memcpy_nodes(demo_int8) == 0
    assert list(private_tmpdir.iterdir()) == []


@pytest.mark.parametrize("provider, copies, expected", [
    # copies on CUDA: the sentence names the provider and the count
    (CUDA, 71, r"^INT8 on CUDAExecutionProvider: 71 Memcpy nodes in the optimised graph: onnxruntime runs the "
               r"QLinear/QDQ ops it has no CUDA kernel for on the CPU and copies tensors back and forth; "
               r"use fp16 \(auto\) on CUDA$"),
    # a graph all on CUDA: nothing to explain
    (CUDA, 0, None),
    # CPU never copies to itself
    ("CPUExecutionProvider", 3, None),
], ids=["cuda-copies", "cuda-none", "cpu"])
def test_explain_slow_int8(provider, copies, expected):
    sentence = explain_slow_int8(provider, copies)
    assert sentence is None if expected is None else re.fullmatch(expected, sentence)


def test_the_explanation_counts_a_saved_graph(tmp_path):
    model = _saved_optimised_graph(tmp_path / "optimized.onnx", ["MemcpyFromHost", "MemcpyToHost"] * 3)
    assert explain_slow_int8(CUDA, count_memcpy(model)).startswith(f"INT8 on {CUDA}: 6 Memcpy nodes ")


@pytest.mark.parametrize("precision, fp16, int8", [
    ("fp16", "True", "False"),
    # INT8 from the QDQ model: no calibration table, TensorRT reads the explicit Q/DQ scales
    ("INT8", "False", "True"),
], ids=["fp16", "int8"])
def test_tensorrt_options(tmp_path, precision, fp16, int8):
    cache = tmp_path / "out" / "tensorrt-cache"
    assert tensorrt_options(cache, precision) == {
        "trt_engine_cache_enable": "True", "trt_engine_cache_path": str(cache),
        "trt_fp16_enable": fp16, "trt_int8_enable": int8}


def test_tensorrt_options_refuse_an_unknown_precision(tmp_path):
    with pytest.raises(ConfigError, match=r"^TensorrtPrecision 'fp32' is not valid: choose one of fp16, int8$"):
        tensorrt_options(tmp_path, "fp32")


@pytest.mark.skipif(TENSORRT_LISTED, reason="this onnxruntime lists TensorRT")
def test_tensorrt_unavailable_without_the_provider():
    assert tensorrt_unavailable() == (f"onnxruntime {ort.__version__} has no TensorrtExecutionProvider: "
                                      "install onnxruntime-gpu and TensorRT's libraries")


@pytest.mark.skipif(TENSORRT_LISTED, reason="this onnxruntime lists TensorRT")
def test_tensorrt_listed_but_falling_back_is_a_skip_naming_where_it_fell(capsys):
    """The H200's onnxruntime-gpu listed TensorRT without its libraries; here the probe falls back to the CPU."""
    reason = tensorrt_unavailable([TENSORRT, CUDA, "CPUExecutionProvider"])
    assert reason == (f"onnxruntime {ort.__version__} lists TensorrtExecutionProvider, but a session asking for it "
                      "ran on CPUExecutionProvider: TensorRT's libraries did not load (install TensorRT and put "
                      "its lib folder on LD_LIBRARY_PATH)")
    assert capsys.readouterr() == ("", "")


@pytest.mark.skipif(TENSORRT_LISTED, reason="this onnxruntime lists TensorRT")
def test_asking_for_tensorrt_here_names_the_available_providers():
    available = ", ".join(ort.get_available_providers())
    with pytest.raises(ConfigError, match=rf"^execution provider\(s\) TensorrtExecutionProvider not available in "
                                          rf"onnxruntime {re.escape(ort.__version__)}: choose from {available}$"):
        parse_providers("TensorrtExecutionProvider")


@pytest.mark.skipif(TENSORRT_LISTED, reason="this onnxruntime lists TensorRT")
def test_a_session_that_falls_back_from_tensorrt_is_an_error(demo_model, tmp_path):
    """Past parse_providers (the API, a listed-but-broken TensorRT): a session on another provider is refused."""
    with pytest.warns(UserWarning, match="TensorrtExecutionProvider' is not in available provider names"), \
            pytest.raises(ConfigError, match=r"TensorrtExecutionProvider was asked for, but onnxruntime fell back "
                                             r"to CPUExecutionProvider: a timing would be of the wrong device$"):
        make_session(demo_model, providers=(TENSORRT,), provider_options=[tensorrt_options(tmp_path, "fp16")])


def test_tensorrt_options_without_a_cache_folder_turn_the_cache_off():
    assert tensorrt_options(None, "fp16") == {"trt_engine_cache_enable": "False", "trt_fp16_enable": "True",
                                              "trt_int8_enable": "False"}


def test_a_tensorrt_session_builds_in_the_precision_the_graph_calls_for(demo_model, demo_int8, tmp_path, monkeypatch):
    """FP32 (or FP16) graphs build FP16 engines, QDQ graphs INT8 ones; TensorRT first, then CUDA and CPU where
    listed, its engines cached where the job says."""
    import quantlab.providers as providers

    opened = []
    monkeypatch.setattr(providers.ort, "get_available_providers", lambda: [TENSORRT, CUDA, "CPUExecutionProvider"])
    monkeypatch.setattr(providers, "make_session", lambda path, threads, names, provider_options: opened.append(
        (path, names, provider_options)))
    tensorrt_session(demo_model, engine_cache=tmp_path / "cache")
    tensorrt_session(demo_int8, engine_cache=None)
    (_, names, options), (_, _, int8_options) = opened
    assert names == [TENSORRT, CUDA, "CPUExecutionProvider"] and options[1:] == [{}, {}]
    assert options[0] == tensorrt_options(tmp_path / "cache", "fp16")
    assert int8_options[0] == tensorrt_options(None, "int8")
    assert tensorrt_precision(onnx.load(str(demo_int8))) is TensorrtPrecision.INT8


def test_a_run_on_a_device_provider_says_why_its_int8_is_slow(demo_model, demo_int8, monkeypatch):
    """The job asks onnxruntime's optimised graph for the copies only on a device provider, and only for INT8
    builds on onnxruntime; the report's verdict then gives the reason beside the slowdown."""
    import quantlab.pipeline as pipeline
    from quantlab.gates import Budgets
    from quantlab.report import verdict
    from quantlab.sessions import SessionSettings
    from quantlab.variant import FP32, PlannedVariant, Role, VariantId

    int8 = pipeline.Variant(PlannedVariant(VariantId("auto"), Role.GATED, "auto"), demo_int8,
                            QuantizeResult(demo_int8, resolve_recipe("auto"), (), 8, 1, 1, 0.0, {}))
    fp32 = pipeline.Variant(PlannedVariant(VariantId(FP32), Role.REFERENCE), demo_model)
    asked = []
    monkeypatch.setattr(pipeline, "memcpy_nodes", lambda path, providers, threads: asked.append(providers) or 71)
    on_cuda = SessionSettings(1, (CUDA, "CPUExecutionProvider"))
    assert pipeline.provider_note(int8, SessionSettings()) is None and pipeline.provider_note(fp32, on_cuda) is None
    assert not asked
    note = pipeline.provider_note(int8, on_cuda)
    assert asked == [(CUDA, "CPUExecutionProvider")] and note == explain_slow_int8(CUDA, 71)
    entry = {"name": "auto", "runtime": "onnxruntime", "recipe": resolve_recipe("auto").settings(), "size_ratio": 0.3,
             "speedup": 0.4, "map_drop": 0.001, "agreement": 0.99, "provider_note": note}
    assert verdict(entry, Budgets()).startswith(f"3.3x smaller; but 2.5x slower: {note}; as accurate")


@pytest.mark.parametrize("recipe", ["ort-default", "dynamic"])  # S8 activations (x86's unfused QDQ); ConvInteger
def test_on_a_device_provider_the_verdict_gives_the_copies_not_a_cpu_reason(recipe):
    """The Memcpy note is set only on a GPU provider: there the CPU's reasons for a slow INT8 build do not apply."""
    from quantlab.gates import Budgets
    from quantlab.report import verdict

    note = explain_slow_int8(CUDA, 71)
    entry = {"name": recipe, "runtime": "onnxruntime", "recipe": resolve_recipe(recipe).settings(),
             "size_ratio": 0.3, "speedup": 0.4, "map_drop": 0.001, "agreement": 0.99, "provider_note": note}
    assert verdict(entry, Budgets(), ran_on_gpu=True).startswith(f"3.3x smaller; but 2.5x slower: {note}; as accurate")


def test_a_slow_fp16_build_on_a_gpu_is_not_blamed_on_the_cpu():
    from quantlab.gates import Budgets
    from quantlab.report import verdict

    entry = {"name": "auto", "runtime": "onnxruntime", "recipe": resolve_recipe("fp16").settings(),
             "size_ratio": 0.5, "speedup": 0.8, "map_drop": 0.0, "agreement": 1.0, "provider_note": None}
    assert "CPU" in verdict(entry, Budgets())
    assert verdict(entry, Budgets(), ran_on_gpu=True).startswith("2.0x smaller; but 1.2x slower; as accurate")
