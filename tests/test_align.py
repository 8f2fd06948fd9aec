"""Channel alignment (quantlab.align): convolutions padded to onnxruntime's ConvSym rule, with every output the same."""

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from quantlab.align import ChannelRule, align_channels, aligned_copy, compact_padded_weights
from quantlab.cpu import CpuInfo
from quantlab.errors import ConfigError
from quantlab.images import read_image
from quantlab.preprocess import letterbox
from quantlab.quantize import quantize_model, read_metadata
from quantlab.recipes import Recipe, auto_recipe, resolve_recipe
from quantlab.sessions import inference_session

MODELS = Path(__file__).parent / "data" / "models"
RULE = ChannelRule(output_multiple=8)  # AVX2's: inputs % 4, outputs % 8, at least 16 outputs


def _conv(name, x, out, weight_shape, rng, pads=1):
    weight = numpy_helper.from_array(rng.standard_normal(weight_shape).astype(np.float32), f"{name}.w")
    bias = numpy_helper.from_array(rng.standard_normal(weight_shape[0]).astype(np.float32), f"{name}.b")
    node = helper.make_node("Conv", [x, weight.name, bias.name], [out], name=name,
                            kernel_shape=list(weight_shape[2:]), pads=[pads] * 4)
    return node, [weight, bias]


def _silu(name, x, out):
    return [helper.make_node("Sigmoid", [x], [f"{name}.sig"], name=f"{name}.sigmoid"),
            helper.make_node("Mul", [x, f"{name}.sig"], [out], name=f"{name}.mul")]


def tiny_graph(reader_of_d: str = "Relu") -> onnx.ModelProto:
    """image (1, 3, 8, 8) -> Conv 3->12 -> SiLU -> Conv 12->25 -> Concat with the 12 -> Conv 37->10 -> Split 5, 5
    -> Add -> MaxPool -> `reader_of_d` (an op the pass follows, or one it must stop at) -> out (1, 5, 8, 8)."""
    rng = np.random.default_rng(0)
    nodes, inits = [], []
    for node, weights in (_conv("a", "image", "a", (12, 3, 3, 3), rng), ):
        nodes.append(node)
        inits += weights
    nodes += _silu("a", "a", "s")
    node, weights = _conv("b", "s", "b", (25, 12, 3, 3), rng)
    nodes.append(node)
    inits += weights
    nodes.append(helper.make_node("Concat", ["s", "b"], ["c"], name="concat", axis=1))
    node, weights = _conv("d", "c", "d", (10, 37, 1, 1), rng, pads=0)
    nodes.append(node)
    inits += weights
    inits.append(numpy_helper.from_array(np.array([5, 5], np.int64), "sizes"))
    nodes.append(helper.make_node("Split", ["d", "sizes"], ["p", "q"], name="split", axis=1))
    nodes.append(helper.make_node("Add", ["p", "q"], ["e"], name="add"))
    nodes.append(helper.make_node("MaxPool", ["e"], ["m"], name="pool", kernel_shape=[3, 3], pads=[1, 1, 1, 1]))
    domain = "custom.test" if reader_of_d == "Custom" else ""
    nodes.append(helper.make_node(reader_of_d, ["m"], ["out"], name="last", domain=domain,
                                  **({"axis": 1} if reader_of_d == "Softmax" else {})))
    graph = helper.make_graph(nodes, "tiny", [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, 8, 8])],
                              [helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, 5, 8, 8])], inits)
    opsets = [helper.make_opsetid("", 17)] + ([helper.make_opsetid(domain, 1)] if domain else [])
    return helper.make_model(graph, opset_imports=opsets)


def _padded(model: onnx.ModelProto):
    padded = onnx.ModelProto()
    padded.CopyFrom(model)
    return padded, align_channels(padded, RULE)


def _run(model: onnx.ModelProto, image: np.ndarray) -> list[np.ndarray]:
    return inference_session(model.SerializeToString()).run(None, {"image": image})


def _conv_shapes(model: onnx.ModelProto) -> dict[str, tuple[int, int]]:
    """conv name -> (input channels, output channels) of its weight."""
    inits = {t.name: t for t in model.graph.initializer}
    return {n.name: (inits[n.input[1]].dims[1], inits[n.input[1]].dims[0])
            for n in model.graph.node if n.op_type == "Conv"}


@pytest.mark.parametrize("reader", [
    "Relu",  # followed: the padding runs to the graph output, sliced back there
    "Softmax",  # over channels: padded channels would change every value, so the pass slices back before it
])
def test_tiny_graph_is_padded_to_the_rule_and_computes_the_same(reader):
    model = tiny_graph(reader)
    padded, alignment = _padded(model)
    shapes = _conv_shapes(padded)
    assert all(RULE.fits(i, o) for i, o in shapes.values()), shapes
    assert shapes == {"a": (4, 16), "b": (16, 32), "d": (48, 32)}  # d: each Split part of 5 rounded up to 16
    assert alignment.image_channels == [3, 4]
    onnx.checker.check_model(padded, full_check=True)
    image = np.random.default_rng(1).random((1, 3, 8, 8), dtype=np.float32)
    (expected,), (got,) = _run(model, image), _run(padded, image)
    assert got.shape == expected.shape == (1, 5, 8, 8)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


def test_an_unknown_op_reads_the_original_channels():
    model = tiny_graph("Custom")  # a custom-domain op: nothing the pass can know about
    padded, alignment = _padded(model)
    producers = {o: n for n in padded.graph.node for o in n.output}
    custom = next(n for n in padded.graph.node if n.domain == "custom.test")
    unpad = producers[custom.input[0]]
    assert unpad.op_type in ("Slice", "Gather") and alignment.slices == ["m"]
    assert producers[unpad.input[0]].op_type == "MaxPool"


def test_alignment_is_exact_on_the_demo_model(demo_onnx, calib_images):
    feeds = [{"images": letterbox(read_image(path), (192, 320))[0]} for path in calib_images[:3]]
    padded, record = aligned_copy(demo_onnx, RULE, feeds)
    assert record["status"] == "aligned" and padded is not None
    assert all(RULE.fits(i, o) or i == 4 and o < 16 for i, o in _conv_shapes(padded).values())
    reference, candidate = inference_session(demo_onnx.SerializeToString()), inference_session(padded.SerializeToString())
    for feed in feeds:
        (expected,), (got,) = reference.run(None, feed), candidate.run(None, feed)
        np.testing.assert_allclose(got[:, :4], expected[:, :4], atol=1e-3)  # box pixels
        np.testing.assert_allclose(got[:, 4:], expected[:, 4:], atol=1e-5)  # class scores


def test_a_check_that_fails_leaves_the_model_unpadded(demo_onnx):
    feed = {"images": np.random.default_rng(0).random((1, 3, 192, 320), dtype=np.float32)}
    padded, record = aligned_copy(demo_onnx, RULE, [feed], atol=0.0, rtol=0.0)  # float rounding alone now fails
    assert padded is None and record["status"].startswith("failed") and record["max_abs_diff"] > 0


@pytest.mark.parametrize("name", sorted(p.name for p in MODELS.glob("*.onnx")))
def test_every_family_aligns_exactly_or_says_why(name):
    from quantlab.quantize import raise_opset

    model, _ = raise_opset(onnx.load(str(MODELS / name)), MODELS / name)
    image = model.graph.input[0]
    feeds = [{image.name: np.random.default_rng(seed).random((1, 3, 96, 160), dtype=np.float32)} for seed in (0, 1)]
    padded, record = aligned_copy(model, RULE, feeds)
    if padded is None:
        assert record["status"].startswith(("failed", "unchanged")), record["status"]
        return
    assert record["status"] == "aligned" and record["convs"]
    dense = {n.name for n in padded.graph.node if n.op_type == "Conv" and not any(a.name == "group" and a.i > 1
                                                                              for a in n.attribute)}
    unfit = {name: after for name, (_, after) in record["convs"].items() if name in dense and not RULE.fits(*after)}
    assert not unfit


def test_compacted_weights_rebuild_the_same_tensor():
    padded, _ = _padded(tiny_graph())
    weight = numpy_helper.to_array(next(t for t in padded.graph.initializer if t.name == "d.w:padded"))
    int8 = np.clip(np.round(weight * 40), -127, 127).astype(np.int8)  # zero rows/columns where padded
    graph = helper.make_graph(
        [helper.make_node("DequantizeLinear", ["w8", "scale"], ["w"], name="dq"),
         helper.make_node("Conv", ["x", "w"], ["y"], name="conv")], "q",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, int8.shape[1], 2, 2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(int8, "w8"), numpy_helper.from_array(np.float32(0.025), "scale")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    compacted = onnx.ModelProto()
    compacted.CopyFrom(model)
    assert compact_padded_weights(compacted) == 1
    stored = {t.name: t for t in compacted.graph.initializer}
    assert "w8" not in stored and numpy_helper.to_array(stored["w8:compact"]).shape == (10, 37, 1, 1)
    x = np.random.default_rng(2).random((1, int8.shape[1], 2, 2), dtype=np.float32)
    np.testing.assert_array_equal(_run_x(compacted, x), _run_x(model, x))


def _run_x(model, x):
    return inference_session(model.SerializeToString()).run(None, {"x": x})[0]


def _cpu(arch, *flags):
    return CpuInfo(arch=arch, model="test", flags=frozenset(flags), cores=2)


@pytest.mark.parametrize(("cpu", "multiple"), [
    (_cpu("x86_64", "avx2", "avx512f", "avx512bw", "avx512dq", "avx512vl", "avx512_vnni"), 4),  # AVX512 ConvSym
    (_cpu("x86_64", "avx2", "avx_vnni"), 8),  # AVX-VNNI's ConvSym: outputs % 8
    (_cpu("x86_64", "avx2"), 8),  # AVX2's ConvSym: outputs % 8 (this machine)
    (_cpu("x86_64", "sse4_2"), 0),  # no ConvSym below AVX2
    (_cpu("arm64", "asimddp"), 0),  # unmeasured there
], ids=["avx512-vnni", "avx-vnni", "avx2", "sse", "arm64"])
def test_auto_pads_to_the_cpus_convsym_rule(cpu, multiple):
    assert auto_recipe(cpu).align_channels == multiple


def test_align_channels_is_checked():
    with pytest.raises(ConfigError, match="align_channels must be one of 0, 4, 8, 16"):
        Recipe("x", align_channels=3)


@pytest.mark.slow
def test_metadata_records_the_padding_and_sizes_compare_to_the_users_file(tmp_path, demo_model, calib_images):
    recipe = resolve_recipe("u8s8").replace(align_channels=8, num_calib=8)
    result = quantize_model(demo_model, tmp_path / "aligned.onnx", recipe, calib_images)
    alignment = json.loads(read_metadata(result.output_path)["alignment"])
    assert alignment["status"] == "aligned" and alignment["image_channels"] == [3, 4]
    assert alignment["convs"]["/model.0/conv/Conv"] == [[3, 12], [4, 16]]
    assert json.loads(read_metadata(result.output_path)["recipe"])["align_channels"] == 8
    assert result.source_size_bytes == demo_model.stat().st_size  # the user's file, not the padded copy
    quantized = onnx.load(str(result.output_path))
    assert any(t.name.endswith(":compact") for t in quantized.graph.initializer)  # the zeros are not stored


def test_a_model_that_already_fits_is_left_as_it_is():
    rng = np.random.default_rng(0)
    conv, weights = _conv("a", "image", "a", (16, 4, 3, 3), rng)
    graph = helper.make_graph([conv, helper.make_node("Relu", ["a"], ["out"], name="relu")], "fits",
                              [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 4, 8, 8])],
                              [helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, 16, 8, 8])], weights)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    feed = {"image": np.random.default_rng(1).random((1, 4, 8, 8), dtype=np.float32)}
    padded, record = aligned_copy(model, RULE, [feed])
    assert padded is None and record["status"].startswith("unchanged") and record["convs"] == {}
