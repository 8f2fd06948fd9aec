"""The quantization engine: the field report's four failures, staging, bad inputs, determinism."""

import hashlib
import json
import os
import subprocess
import sys
import tempfile
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper
from onnxruntime import quantization as ortq

from quantlab import atomicio, ortcompat
from quantlab.bench import interleaved_latency
from quantlab.cpu import detect_cpu
from quantlab.errors import ConfigError, ImageError, ModelError, OutputError, QuantizationError
from quantlab.images import read_image
from quantlab.onnxmodel import inspect_model
from quantlab.parity import OutputParity
from quantlab.preprocess import letterbox
from quantlab.quantize import quantize_model, read_metadata
from quantlab.recipes import PRESETS, Mode, resolve_recipe
from quantlab.sessions import make_session

FAST = 16  # calibration images for tests that are not about calibration


def _sha(path):
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _recipe(name, **changes):
    return resolve_recipe(name).replace(**{"num_calib": FAST, **changes})


@pytest.fixture(autouse=True)
def private_tempdir(tmp_path, monkeypatch):
    """Each test's own temporary folder (staging lives there), empty again when the test ends.

    Another quantlab process on the machine has its own, so it can neither disturb nor be blamed.
    """
    folder = tmp_path / "tempdir"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    monkeypatch.setenv("TMPDIR", str(folder))
    yield folder
    assert sorted(p.name for p in folder.iterdir()) == [], "staging or temporary files left behind"


def _assert_close_to_fp32(int8_path, fp32_path, image_path, min_score_cosine=0.95):
    """The INT8 model's output on a real image agrees with the FP32 model's, boxes and scores apart."""
    __tracebackhide__ = True
    tensor, _ = letterbox(read_image(image_path), (192, 320))
    feed = {"images": tensor}
    parity = OutputParity(inspect_model(fp32_path).description).update(make_session(int8_path).run(None, feed)[0],
                                   make_session(fp32_path).run(None, feed)[0]).compute()
    assert parity["boxes"]["cosine"] > 0.99, parity
    assert parity["scores"]["cosine"] > min_score_cosine, parity


@pytest.fixture
def cpp_io_fails_beside_user_model(monkeypatch):
    """onnx's C++ writer silently writes nothing in the user's model folders (as for a non-ASCII
    path on Windows, or a read-only folder), the cause of the field report's '-inferred.onnx' error."""
    real = onnx.shape_inference.infer_shapes_path
    user_folders = []

    def infer_shapes_path(model_path, output_path="", *args, **kwargs):
        if any(Path(output_path or model_path).parent == folder for folder in user_folders):
            return None
        return real(model_path, output_path, *args, **kwargs)

    monkeypatch.setattr(onnx.shape_inference, "infer_shapes_path", infer_shapes_path)
    return user_folders


# --- failure 1: a removed keyword argument -----------------------------------------------------

def test_removed_argument_is_a_clear_error_never_a_type_error():
    with pytest.raises(TypeError, match="optimize_model"):  # the field report's call, as it fails
        ortq.quantize_dynamic("in.onnx", "out.onnx", optimize_model=True)
    with pytest.raises(ortcompat.CompatibilityError, match=rf"optimize_model.*onnxruntime {ort.__version__}"):
        ortcompat.supported_kwargs(ortq.quantize_dynamic, {"optimize_model": True})
    # an option that asks for nothing is dropped rather than failing
    assert ortcompat.supported_kwargs(ortq.quantize_dynamic, {"optimize_model": False, "per_channel": True}) == {
        "per_channel": True}


def test_options_missing_from_an_older_signature_are_named():
    def quantize_static_1_13(model_input, model_output, calibration_data_reader, quant_format=None,
                             per_channel=False, activation_type=None, weight_type=None):
        """quantize_static's signature before calibrate_method and extra_options were accepted."""

    kwargs = {"per_channel": True, "calibrate_method": ortq.CalibrationMethod.Entropy, "extra_options": {}}
    with pytest.raises(ortcompat.CompatibilityError, match="calibrate_method"):
        ortcompat.supported_kwargs(quantize_static_1_13, kwargs)


# --- failure 2 and 3: the '-inferred.onnx' temp file, for static and dynamic ---------------------

@pytest.mark.parametrize(
    "folder",
    ["모델 폴더", "folder with spaces", "deep/" + "long_folder_name_" * 8 + "/x", "read-only"],
    ids=["korean", "spaces", "long-path", "read-only"],
)
@pytest.mark.parametrize("recipe", ["auto", "dynamic"])
def test_quantizes_where_onnx_cannot_write_beside_the_model(
        model_copy, calib_images, cpp_io_fails_beside_user_model, tmp_path, folder, recipe):
    model = model_copy(folder)
    cpp_io_fails_beside_user_model.append(model.parent)
    with pytest.raises(FileNotFoundError, match="yolov8_custom_fixed_test7_pruned-inferred.onnx"):
        ortq.quantize_dynamic(model, tmp_path / "raw.onnx")  # the report's failure, reproduced
    before = sorted(model.parent.iterdir())
    if folder == "read-only":
        model.parent.chmod(0o555)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    try:
        result = quantize_model(model, out_dir / "int8.onnx", _recipe(recipe), calib_images)
    finally:
        model.parent.chmod(0o755)
    assert sorted(model.parent.iterdir()) == before  # nothing written beside the user's model
    assert result.output_path.is_file() and result.size_ratio < 0.3
    make_session(result.output_path)  # loads and is a valid model


def test_model_with_external_data_quantizes(tmp_path, demo_onnx, calib_images):
    path = tmp_path / "ext" / "model.onnx"
    path.parent.mkdir()
    model = onnx.ModelProto()
    model.CopyFrom(demo_onnx)  # save_model moves the weights out of the proto it is given
    onnx.save_model(model, str(path), save_as_external_data=True, location="model.onnx.data",
                    size_threshold=1024)
    assert (path.parent / "model.onnx.data").stat().st_size > path.stat().st_size
    result = quantize_model(path, tmp_path / "int8.onnx", _recipe("auto"), calib_images)
    assert result.source_size_bytes > 8e6 and result.size_ratio < 0.3
    feed = {"images": np.zeros((1, 3, 192, 320), np.float32)}
    assert make_session(path).run(None, feed)[0].shape == (1, 8, 1260)  # found its model.onnx.data


# --- failure 3: slower than FP32 ---------------------------------------------------------------

@pytest.fixture(scope="module")
def built(tmp_path_factory, demo_model, calib_images):
    out = tmp_path_factory.mktemp("built")
    return {name: quantize_model(demo_model, out / f"{name}.onnx", _recipe(name), calib_images,
                                 force=name == "ort-default").output_path  # kept although its self-check fails
            for name in ("auto", "ort-default", "s8s8")}


def _optimized_ops(path, tmp_path):
    options = ort.SessionOptions()
    options.optimized_model_filepath = str(tmp_path / f"opt-{Path(path).name}")
    ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return [n.op_type for n in onnx.load(options.optimized_model_filepath).graph.node]


@pytest.mark.skipif(detect_cpu().arch != "x86_64", reason="the S8S8 slowdown is specific to x86")
def test_u8s8_convolutions_fuse_and_s8s8_ones_do_not_on_x86(built, tmp_path):
    """Why the report's model was slow: onnxruntime fuses DQ -> Conv -> Q into QLinearConv only for u8 activations."""
    auto_ops, s8_ops = _optimized_ops(built["auto"], tmp_path), _optimized_ops(built["s8s8"], tmp_path)
    assert auto_ops.count("QLinearConv") > 50 and auto_ops.count("Conv") <= 1  # the DFL conv stays float
    assert s8_ops.count("Conv") > 40 and s8_ops.count("QLinearConv") < auto_ops.count("QLinearConv") / 4


@pytest.mark.skipif(detect_cpu().arch != "x86_64", reason="the S8S8 slowdown is specific to x86")
def test_auto_is_much_faster_than_onnxruntime_defaults(built, demo_model):
    sessions = {name: make_session(path) for name, path in built.items() if name != "s8s8"}
    sessions["fp32"] = make_session(demo_model)
    feed = {"images": np.random.default_rng(0).random((1, 3, 192, 320), dtype=np.float32)}
    latency = interleaved_latency(sessions, feed, runs=60, warmup=5)
    assert latency["fp32"].median_ms / latency["ort-default"].median_ms < 1.0  # the report: slower than FP32
    assert latency["ort-default"].median_ms / latency["auto"].median_ms > 1.5


# --- structure, metadata, determinism ----------------------------------------------------------

def test_head_stays_float_and_the_rest_is_qdq(built):
    model = onnx.load(str(built["auto"]))
    produced_by = {o: n for n in model.graph.node for o in n.output}
    meta = read_metadata(built["auto"])
    float_nodes = set(json.loads(meta["float_nodes"]))
    for node in model.graph.node:
        parent_ops = {produced_by[i].op_type for i in node.input if i in produced_by}
        if node.op_type in ("Sigmoid", "Softmax") and node.name in float_nodes:
            assert "DequantizeLinear" not in parent_ops, f"{node.name} takes quantized input"
    head_ops = {n.op_type for n in model.graph.node if n.name in float_nodes}
    assert {"Softmax", "Sigmoid", "Concat", "Conv"} <= head_ops
    convs = [n for n in model.graph.node if n.op_type == "Conv" and n.name not in float_nodes]
    assert convs and all(produced_by[n.input[0]].op_type == "DequantizeLinear" for n in convs)


def test_the_field_report_recipe_quantizes_the_final_concat(built):
    model = onnx.load(str(built["ort-default"]))
    output = model.graph.output[0].name
    last = next(n for n in model.graph.node if output in n.output)
    assert last.op_type == "DequantizeLinear"  # one scale over box pixels and class probabilities


def test_metadata_records_versions_recipe_and_calibration(built, calib_images):
    meta = read_metadata(built["auto"])
    assert meta["version"] and meta["onnxruntime"] == ort.__version__
    assert json.loads(meta["recipe"]) == _recipe("auto").settings()
    calibration = json.loads(meta["calibration"])
    assert calibration["num_images"] == FAST and len(calibration["sha256"]) == 64
    model = onnx.load(str(built["auto"]))
    assert {"names", "stride"} <= {p.key for p in model.metadata_props}  # Ultralytics' own metadata survives


def test_same_inputs_same_bytes(tmp_path, demo_model, calib_images, built):
    again = quantize_model(demo_model, tmp_path / "again.onnx", _recipe("auto"), calib_images)
    assert _sha(again.output_path) == _sha(built["auto"])
    other_seed = quantize_model(demo_model, tmp_path / "seed1.onnx", _recipe("auto", seed=1, num_calib=8),
                                calib_images)
    assert _sha(other_seed.output_path) != _sha(built["auto"])


def test_user_exclusions_stay_float_and_unknown_names_are_named(tmp_path, demo_model, demo_onnx, calib_images):
    first_conv = next(n.name for n in demo_onnx.graph.node if n.op_type == "Conv")
    result = quantize_model(demo_model, tmp_path / "x.onnx", _recipe("auto", exclude_nodes=(first_conv,)),
                            calib_images)
    assert first_conv in result.float_nodes
    with pytest.raises(ConfigError, match="no_such_node"):
        quantize_model(demo_model, tmp_path / "y.onnx", _recipe("auto", exclude_nodes=("no_such_node",)),
                       calib_images)
    assert not (tmp_path / "y.onnx").exists()


# --- bad input: one clear error, nothing written ------------------------------------------------

def _tiny_model(path, elem_type=TensorProto.FLOAT, shape=(1, 3, 8, 8)):
    x = helper.make_tensor_value_info("x", elem_type, list(shape))
    y = helper.make_tensor_value_info("y", elem_type, list(shape))
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"], name="relu")], "tiny", [x], [y])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


@pytest.mark.parametrize(
    ("make", "error", "message"),
    [
        (lambda p, m: p / "absent.onnx", ModelError, "not found"),
        (lambda p, m: (p / "notes.onnx").write_text("hello") and p / "notes.onnx", ModelError, "ONNX"),
        (lambda p, m: (p / "cut.onnx").write_bytes(m.read_bytes()[: 200_000]) and p / "cut.onnx", ModelError,
         "corrupt or truncated"),
        (lambda p, m: _tiny_model(p / "flat.onnx", shape=(1, 3)), ModelError, "4-D image tensor"),
        (lambda p, m: _tiny_model(p / "half.onnx", TensorProto.FLOAT16), ModelError, "FP16"),
    ],
    ids=["missing", "not-onnx", "truncated", "not-an-image-input", "fp16"],
)
def test_bad_models_give_one_clear_error_and_no_output(tmp_path, demo_model, calib_images, make, error, message):
    model = make(tmp_path, demo_model)
    with pytest.raises(error, match=message) as info:
        quantize_model(model, tmp_path / "out.onnx", _recipe("auto"), calib_images)
    assert str(model) in str(info.value)
    assert not (tmp_path / "out.onnx").exists()


@pytest.mark.parametrize(
    ("images", "message"),
    [([], "needs calibration images"), ("corrupt", "none of the 2 sampled")],  # of 3: 1 is held out to judge
    ids=["no-images", "all-corrupt"],
)
def test_unusable_calibration_sets_are_named(tmp_path, demo_model, images, message):
    if images == "corrupt":
        images = []
        for i in range(3):
            (tmp_path / f"{i}.jpg").write_bytes(b"not a jpeg")
            images.append(tmp_path / f"{i}.jpg")
    with pytest.raises(ImageError, match=message), pytest.warns(UserWarning) if images else nullcontext():
        quantize_model(demo_model, tmp_path / "out.onnx", _recipe("auto"), images)
    assert not (tmp_path / "out.onnx").exists()


def test_dynamic_input_uses_the_requested_shape(tmp_path, demo_onnx, calib_images, monkeypatch):
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)  # onnxruntime drops sym_shape_infer_temp.onnx here when symbolic inference fails
    model = onnx.ModelProto()
    model.CopyFrom(demo_onnx)
    for dim, name in zip(model.graph.input[0].type.tensor_type.shape.dim, ["batch", "c", "height", "width"]):
        if name != "c":
            dim.ClearField("dim_value")
            dim.dim_param = name
    path = tmp_path / "dynamic.onnx"
    onnx.save(model, str(path))
    result = quantize_model(path, tmp_path / "int8.onnx", _recipe("auto"), calib_images, input_hw=(192, 320))
    calibration = json.loads(read_metadata(result.output_path)["calibration"])
    assert calibration["num_images"] == FAST  # calibrated at 192x320, not skipped
    _assert_close_to_fp32(result.output_path, path, calib_images[0])
    assert list(cwd.iterdir()) == []


def test_a_fixed_input_size_cannot_be_overridden(tmp_path, demo_model, calib_images):
    with pytest.raises(ModelError, match="fixed in the model"):
        quantize_model(demo_model, tmp_path / "x.onnx", _recipe("auto"), calib_images, input_hw=(320, 320))


def test_all_zero_pruned_channels_give_finite_scales(tmp_path, demo_onnx, calib_images):
    model = onnx.ModelProto()
    model.CopyFrom(demo_onnx)
    conv_weights = {n.input[1] for n in model.graph.node if n.op_type == "Conv"}
    zeroed = 0
    for tensor in model.graph.initializer:
        if tensor.name in conv_weights and zeroed < 5:
            w = numpy_helper.to_array(tensor).copy()
            w[: max(1, w.shape[0] // 4)] = 0  # a quarter of the output channels pruned to zero
            tensor.CopyFrom(numpy_helper.from_array(w, tensor.name))
            zeroed += 1
    path = tmp_path / "zeroed.onnx"
    onnx.save(model, str(path))
    result = quantize_model(path, tmp_path / "int8.onnx", _recipe("auto"), calib_images)
    quantized = onnx.load(str(result.output_path))
    scale_names = {n.input[1] for n in quantized.graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")}
    scales = [numpy_helper.to_array(t) for t in quantized.graph.initializer if t.name in scale_names]
    assert scales and all(np.isfinite(s).all() and (s > 0).all() for s in scales)
    _assert_close_to_fp32(result.output_path, path, calib_images[0])


# --- atomic output ------------------------------------------------------------------------------

@pytest.mark.parametrize("failure", [RuntimeError("boom"), KeyboardInterrupt()], ids=["exception", "interrupt"])
def test_failure_leaves_no_partial_output_and_no_temp_files(tmp_path, demo_model, calib_images, monkeypatch, failure):
    out = tmp_path / "out"
    out.mkdir()
    (out / "int8.onnx").write_bytes(b"previous result")

    def explode(*args, **kwargs):
        raise failure

    monkeypatch.setattr(ortq, "quantize_static", explode)
    with pytest.raises((QuantizationError, KeyboardInterrupt)):
        quantize_model(demo_model, out / "int8.onnx", _recipe("auto"), calib_images)
    assert sorted(p.name for p in out.iterdir()) == ["int8.onnx"]
    assert (out / "int8.onnx").read_bytes() == b"previous result"
    # and private_tempdir checks that the staging folder is gone


@pytest.fixture
def fake_onnxruntime(monkeypatch):
    """onnxruntime's pre-processing and quantization replaced by copies that log their file arguments:
    quantize_model's own file handling in a fraction of a second."""
    calls = []

    def copy(step):
        def run(model_in, model_out, *args, **kwargs):
            calls.append((step, Path(model_in), Path(model_out)))
            Path(model_out).write_bytes(Path(model_in).read_bytes())
            return True
        return run

    monkeypatch.setattr(ortcompat, "pre_process", copy("pre_process"))
    monkeypatch.setattr(ortcompat, "quantize_static", copy("quantize_static"))
    monkeypatch.setattr(ortcompat, "quantize_dynamic", copy("quantize_dynamic"))
    return calls


def test_onnxruntime_only_sees_the_staged_copy(model_copy, tmp_path, fake_onnxruntime, private_tempdir):
    model = model_copy("내 모델")
    before = sorted(model.parent.iterdir())
    quantize_model(model, tmp_path / "int8.onnx", _recipe("dynamic"))
    (step1, pre_in, pre_out), (step2, quant_in, quant_out) = fake_onnxruntime
    assert (step1, step2) == ("pre_process", "quantize_dynamic")
    stage = pre_in.parent
    assert stage.parent == private_tempdir and stage.name.startswith("quantlab-") and stage.name.isascii()
    assert pre_in not in (model, model.resolve())  # the staged copy, never the user's file
    assert {pre_in.parent, pre_out.parent, quant_in.parent, quant_out.parent} == {stage}  # all inside staging
    assert quant_in == pre_out  # quantization reads what pre-processing wrote
    assert sorted(model.parent.iterdir()) == before  # nothing written beside the user's model


def _fail_writing_halfway(monkeypatch, failure):
    """The temporary file's write stores half the bytes, then raises `failure` (a full disk, Ctrl-C)."""
    real_fdopen = os.fdopen

    class HalfWriter:
        def __init__(self, f):
            self.f = f

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return self.f.__exit__(*exc)

        def write(self, data):
            self.f.write(data[: len(data) // 2])
            self.f.flush()
            raise failure

        def __getattr__(self, name):
            return getattr(self.f, name)

    monkeypatch.setattr(atomicio.os, "fdopen", lambda fd, mode: HalfWriter(real_fdopen(fd, mode)))


def _fail_renaming(monkeypatch, failure):
    """The temporary file is complete, but renaming it onto the destination fails."""
    monkeypatch.setattr(atomicio.os, "replace", lambda src, dst: (_ for _ in ()).throw(failure))


@pytest.mark.parametrize(
    ("inject", "failure", "raised"),
    [
        # an OS failure becomes one OutputError naming the file and the cause
        (_fail_writing_halfway, OSError(28, "No space left on device"), (OutputError, "No space left on device")),
        (_fail_writing_halfway, KeyboardInterrupt(), (KeyboardInterrupt, None)),
        (_fail_renaming, OSError(18, "Invalid cross-device link"), (OutputError, "int8.onnx: cannot write")),
    ],
    ids=["disk-full-mid-write", "interrupt-mid-write", "rename-fails"],
)
def test_a_failed_write_keeps_the_previous_output_whole(tmp_path, demo_model, fake_onnxruntime, monkeypatch,
                                                         inject, failure, raised):
    out = tmp_path / "out"
    out.mkdir()
    (out / "int8.onnx").write_bytes(b"previous result")
    inject(monkeypatch, failure)
    with pytest.raises(raised[0], match=raised[1]):
        quantize_model(demo_model, out / "int8.onnx", _recipe("dynamic"))
    assert sorted(p.name for p in out.iterdir()) == ["int8.onnx"]  # no temporary file left
    assert (out / "int8.onnx").read_bytes() == b"previous result"


def test_a_successful_write_replaces_the_previous_output(tmp_path, demo_model, fake_onnxruntime):
    out = tmp_path / "out"
    out.mkdir()
    (out / "int8.onnx").write_bytes(b"previous result")
    result = quantize_model(demo_model, out / "int8.onnx", _recipe("dynamic"))
    assert sorted(p.name for p in out.iterdir()) == ["int8.onnx"]
    assert read_metadata(out / "int8.onnx")["source_sha256"] == _sha(demo_model)
    assert result.size_bytes == (out / "int8.onnx").stat().st_size


def test_missing_output_folders_are_created(tmp_path, demo_model, calib_images):
    result = quantize_model(demo_model, tmp_path / "absent" / "deeper" / "int8.onnx", _recipe("auto", num_calib=8),
                            calib_images)
    assert result.output_path.is_file()


def test_refuses_to_overwrite_the_input(tmp_path, model_copy, calib_images):
    model = model_copy()
    with pytest.raises(OutputError, match="this output is the input"):
        quantize_model(model, model, _recipe("auto"), calib_images)


@pytest.mark.slow  # seven builds of the demo; each recipe is pinned fast by its own tests
def test_every_preset_quantizes(tmp_path, demo_model, calib_images):
    for name in PRESETS:  # force: ort-default quantizes the head and fails its self-check
        result = quantize_model(demo_model, tmp_path / f"{name}.onnx", _recipe(name), calib_images, force=True)
        assert result.size_ratio < (0.55 if PRESETS[name].mode is Mode.FP16 else 0.3), name


@pytest.mark.parametrize(
    "changes",
    [
        # QOperator: QLinearConv written into the file instead of QDQ pairs
        {"quant_format": "qoperator"},
        # histogram calibrators, which clip outliers instead of taking the min and max
        {"calibrate_method": "entropy"},
        {"calibrate_method": "percentile"},
    ],
    ids=["qoperator", "entropy", "percentile"],
)
def test_formats_and_calibration_methods(tmp_path, demo_model, calib_images, changes):
    result = quantize_model(demo_model, tmp_path / "q.onnx", _recipe("auto", num_calib=8, **changes), calib_images)
    ops = [n.op_type for n in onnx.load(str(result.output_path)).graph.node]
    if changes.get("quant_format") == "qoperator":
        assert ops.count("QLinearConv") > 50
    else:
        assert ops.count("DequantizeLinear") > 50
    assert json.loads(read_metadata(result.output_path)["recipe"])["calibrate_method"] == changes.get(
        "calibrate_method", "minmax")
    _assert_close_to_fp32(result.output_path, demo_model, calib_images[0])


def test_same_bytes_from_another_process_with_another_hash_seed(tmp_path, demo_model, calib_images, built,
                                                                private_tempdir):
    """Set and dict order must not leak into the file: a fresh interpreter with another hash seed agrees."""
    script = (
        "import sys; from pathlib import Path\n"
        "from quantlab.quantize import quantize_model\nfrom quantlab.recipes import resolve_recipe\n"
        f"images = [Path(p) for p in {[str(p) for p in calib_images]!r}]\n"
        f"quantize_model(Path({str(demo_model)!r}), Path(sys.argv[1]), "
        f"resolve_recipe('auto').replace(num_calib={FAST}), images)\n"
    )
    out = tmp_path / "other.onnx"
    env = {**os.environ, "PYTHONHASHSEED": "12345", "TMPDIR": str(private_tempdir)}
    subprocess.run([sys.executable, "-c", script, str(out)], check=True, env=env, timeout=300)
    (private_tempdir / ".ses").unlink(missing_ok=True)  # onnxruntime's native library writes it on import
    assert _sha(out) == _sha(built["auto"])
