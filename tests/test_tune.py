"""Accuracy-aware tuning: sensitivity ranking and greedy float fallback on constructed cases."""

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import numpy_helper

from quantlab import ortcompat
from quantlab.datasets import load_dataset
from quantlab.onnxmodel import inspect_model, load_model
from quantlab.images import read_image
from quantlab.preprocess import letterbox
from quantlab.quantize import quantize_model, read_metadata, stage_model
from quantlab.recipes import resolve_recipe
from quantlab.evaluate import EvalData
from quantlab.tune import bypass_quantization, layer_groups, rank_sensitivity, tune

WIDEN = 40.0  # how much wider one channel's activations become


def _widened(demo_onnx):
    """The demo model with one channel of the first conv's output made WIDEN times larger, and the second
    conv's weights for that channel made as much smaller: nearly the same function in FP32, but one
    per-tensor INT8 scale between the two convs now has to span a WIDEN times wider range."""
    model = onnx.ModelProto()
    model.CopyFrom(demo_onnx)
    convs = [n for n in model.graph.node if n.op_type == "Conv"]
    first, second = convs[0], convs[1]
    weights = {t.name: t for t in model.graph.initializer}
    w1, b1 = (numpy_helper.to_array(weights[n]).copy() for n in first.input[1:3])
    w2 = numpy_helper.to_array(weights[second.input[1]]).copy()
    w1[0] *= WIDEN
    b1[0] *= WIDEN
    w2[:, 0] /= WIDEN
    for name, value in zip([*first.input[1:3], second.input[1]], [w1, b1, w2]):
        weights[name].CopyFrom(numpy_helper.from_array(value, name))
    return model, first.name, second.name


@pytest.fixture(scope="module")
def fragile(tmp_path_factory, demo_onnx):
    folder = tmp_path_factory.mktemp("fragile")
    model, first, second = _widened(demo_onnx)
    path = folder / "fragile.onnx"
    onnx.save(model, str(path))
    return path, first, second


@pytest.fixture(scope="module")
def prepared(tmp_path_factory, fragile):
    folder = tmp_path_factory.mktemp("prepared")
    out = folder / "prepared.onnx"
    ortcompat.pre_process(str(stage_model(load_model(fragile[0]), folder)), str(out))
    return load_model(out)


def test_groups_pair_each_conv_with_its_silu(prepared):
    groups = layer_groups(prepared)
    ops = {n.name: n.op_type for n in prepared.graph.node}
    assert len(groups) == sum(1 for op in ops.values() if op == "Conv")
    assert sum(1 for g in groups if [ops[n] for n in g] == ["Conv", "Sigmoid", "Mul"]) > 50


def test_bypassing_every_node_gives_back_the_float_model(tmp_path, prepared, fragile, calib_images):
    """The known answer for the bypass: with no Q/DQ left in the way, INT8 equals FP32."""
    recipe = resolve_recipe("auto").replace(num_calib=8, align_channels=0)  # as tune quantizes: channels unpadded
    quantized = quantize_model(fragile[0], tmp_path / "q.onnx", recipe,
                               calib_images, force=True).output_path  # fragile by design: may fail its self-check
    qdq = onnx.load(str(quantized))
    everything = [n.name for n in qdq.graph.node if n.op_type not in ("QuantizeLinear", "DequantizeLinear")]
    feed = {"images": letterbox(read_image(calib_images[0]), (192, 320))[0]}
    float_out = ort.InferenceSession(prepared.SerializeToString()).run(None, feed)[0]
    bypassed = bypass_quantization(qdq, prepared, everything).SerializeToString()
    np.testing.assert_allclose(ort.InferenceSession(bypassed).run(None, feed)[0], float_out, rtol=1e-4, atol=1e-3)


def test_sensitivity_finds_the_widened_layer_first(tmp_path, prepared, fragile, calib_images):
    path, first, second = fragile
    quantized = quantize_model(path, tmp_path / "q.onnx", resolve_recipe("u8s8").replace(num_calib=16),
                               calib_images, force=True).output_path  # fragile by design: may fail its self-check
    feeds = [{"images": letterbox(read_image(p), (192, 320))[0]} for p in calib_images[-8:]]
    ranked = rank_sensitivity(quantized, prepared, feeds, layer_groups(prepared), inspect_model(path).description)
    assert ranked[0].nodes[0] == first, [s.nodes[0] for s in ranked[:5]]
    assert ranked[0].error_reduction > 5 * ranked[3].error_reduction


@pytest.mark.slow
def test_tune_returns_the_widened_layer_to_float_and_meets_the_budget(tmp_path, fragile, demo_data, calib_images):
    path, first, second = fragile
    dataset = load_dataset(demo_data)
    small = type(dataset)(dataset.yaml_path, dataset.images[:80], dataset.names)
    result = tune(path, tmp_path / "tuned.onnx", resolve_recipe("auto").replace(num_calib=32), calib_images,
                  EvalData(small), max_loss=0.01, max_steps=4, runs=20)
    assert result.steps[0].accuracy_loss > 0.01  # the widened model breaks under the plain recipe
    # the layer that makes the wide activation goes first; re-ranked, the layer that reads it follows
    assert [s.added[0] for s in result.steps[1:]] == [first, second]
    assert result.met and result.chosen.index == 2 and result.chosen.accuracy_loss <= 0.01
    assert result.output_path.is_file()
    recorded = json.loads(read_metadata(result.output_path)["recipe"])["exclude_nodes"]
    assert recorded == list(result.chosen.float_nodes)  # reproducible with quantlab quantize --exclude
    # was: tune dropped auto's channel padding for every step, so the tuned model ran slower than auto itself;
    # now only the sensitivity pass works on an unpadded copy
    if resolve_recipe("auto").align_channels:
        assert json.loads(read_metadata(result.output_path)["alignment"])["status"] == "aligned"
