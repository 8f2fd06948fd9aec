"""Memory: input sizes from a model file or an option are bounded before anything is allocated, and running
out of memory anywhere is one line naming memory and the command's work (exit 2), never an internal error."""

from __future__ import annotations

import argparse
import errno
import resource
import subprocess
import sys

import onnx
import pytest
from google.protobuf.message import DecodeError, EncodeError
from onnxruntime.capi.onnxruntime_pybind11_state import Fail, RuntimeException

from quantlab.cli import _out_of_memory_error, main
from quantlab.description import MAX_INPUT_PIXELS, MAX_INPUT_SIDE, input_size_problem
from quantlab.errors import ConfigError, ExitCode, ModelError, QuantizationError
from quantlab.onnxmodel import inspect_model, resolve_input_hw


def _edited(demo_onnx, tmp_path, hw=None, imgsz=None):
    """The demo model with its input H, W set (a str: dynamic) and its imgsz metadata replaced."""
    model = onnx.ModelProto()
    model.CopyFrom(demo_onnx)
    for dim, value in zip(model.graph.input[0].type.tensor_type.shape.dim[2:], hw or ()):
        dim.Clear()
        setattr(dim, "dim_param" if isinstance(value, str) else "dim_value", value)
    for prop in model.metadata_props:
        if prop.key == "imgsz" and imgsz is not None:
            prop.value = imgsz
    path = tmp_path / "edited.onnx"
    onnx.save(model, str(path))
    return path


@pytest.mark.parametrize(("hw", "imgsz", "fragments"), [
    # 14 bytes of metadata on a dynamic model: 12 GiB for the input alone
    (("h", "w"), "[32768, 32768]", ["its metadata says imgsz [32768, 32768]", "4096 pixels a side"]),
    # each side allowed, the pair not: 16.8 M pixels
    (("h", "w"), "[4096, 4096]", ["imgsz [4096, 4096]", "16.8 M pixels"]),
    # the input's own static dims
    ((50000, 50000), None, ["input 'images' has shape (1, 3, 50000, 50000)", "4096 pixels a side"]),
    # one static side is enough to refuse
    ((50000, "w"), None, ["(1, 3, 50000, ?)", "4096 pixels a side"]),
], ids=["metadata-32768", "metadata-4096-square", "static-50000", "static-one-side"])
@pytest.mark.parametrize("command", ["eval", "quantize"])
def test_huge_input_size_in_a_model_is_refused_naming_it(tmp_path, demo_onnx, capsys, command, hw, imgsz, fragments):
    path = _edited(demo_onnx, tmp_path, hw, imgsz)
    args = ["--images", tmp_path, "--reference", path] if command == "eval" else ["-o", tmp_path / "q.onnx",
                                                                                  "--mode", "dynamic"]
    assert main([command, str(path), *map(str, args)]) == ExitCode.USAGE
    error = capsys.readouterr().err
    assert error.startswith(f"quantlab: error: {path}: ") and error.count("\n") == 1
    assert all(f in error for f in fragments), error
    assert not (tmp_path / "q.onnx").exists()


@pytest.mark.parametrize(("hw", "fragment"), [
    (("8192", "8192"), "8192 8192 is over quantlab's limit of 4096 pixels a side"),
    (("4096", "4096"), "4096 4096 is 16.8 M pixels"),
    (("32", "99999999999999999999"), "is over quantlab's limit"),
], ids=["8192-square", "4096-square", "absurd"])
@pytest.mark.parametrize("command", ["eval", "quantize", "bench", "run"])
def test_huge_input_hw_option_is_refused_at_parse_time(capsys, command, hw, fragment):
    with pytest.raises(SystemExit) as info:
        main([command, *(["m.onnx"] if command in ("eval", "quantize", "bench") else []), "--input-hw", *hw])
    assert info.value.code == ExitCode.USAGE
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "argument --input-hw" in error and fragment in error, error


@pytest.mark.parametrize(("hw", "allowed"), [
    ((MAX_INPUT_SIDE, MAX_INPUT_PIXELS // MAX_INPUT_SIDE), True),  # 4096 x 2048: a wide panorama
    ((MAX_INPUT_PIXELS // MAX_INPUT_SIDE, MAX_INPUT_SIDE), True),
    ((2048, 2048), True),
    ((MAX_INPUT_SIDE + 32, 32), False),
    ((MAX_INPUT_SIDE, MAX_INPUT_PIXELS // MAX_INPUT_SIDE + 32), False),
], ids=["4096x2048", "2048x4096", "2048-square", "side", "pixels"])
def test_input_size_bounds(hw, allowed):
    assert (input_size_problem(hw) is None) == allowed


def test_requested_size_is_bounded_for_api_callers_too(tmp_path, demo_onnx):
    info = inspect_model(_edited(demo_onnx, tmp_path, ("h", "w")))
    with pytest.raises(ConfigError, match=r"input size \(8192, 8192\) requested: over"):
        resolve_input_hw(info, (8192, 8192))


def _args(command="quantize", model="m.onnx"):
    return argparse.Namespace(command=command, model=model)


def _raised_from(outer: Exception, inner: Exception) -> Exception:
    try:
        try:
            raise inner
        except Exception as exc:
            raise outer from exc
    except Exception as exc:
        return exc


@pytest.mark.parametrize(("exc", "fragment"), [
    (MemoryError(), "(MemoryError)"),
    (MemoryError("Unable to allocate 12.0 GiB for an array"), "Unable to allocate 12.0 GiB"),
    (RuntimeException("[ONNXRuntimeError] : 6 : RUNTIME_EXCEPTION : ... Status Message: std::bad_alloc"), "bad_alloc"),
    (Fail("[ONNXRuntimeError] : 1 : FAIL : bfc_arena.cc:376 Failed to allocate memory for requested buffer"),
     "Failed to allocate memory"),
    (OSError(errno.ENOMEM, "Cannot allocate memory"), "OSError"),
    (ImportError("_generator.so: failed to map segment from shared object"), "failed to map segment"),
    # load_model wraps protobuf's failure to parse for want of memory as a model that cannot be read
    (_raised_from(ModelError("m.onnx: not a readable ONNX model"),
                  DecodeError("Error parsing message with type 'onnx.ModelProto': Arena alloc failed")),
     "Arena alloc failed"),
    (EncodeError("Failed to serialize proto"), "EncodeError"),
    # quantize.py wraps onnxruntime's failure: the cause underneath is what counts
    (_raised_from(QuantizationError("m.onnx: onnxruntime failed to quantize"), MemoryError()), "(MemoryError)"),
], ids=["memoryerror", "numpy", "ort-bad-alloc", "ort-arena", "enomem", "import-mmap", "protobuf-parse",
        "protobuf-serialize", "wrapped"])
def test_running_out_of_memory_is_named_with_the_work_and_a_fix(exc, fragment):
    message = _out_of_memory_error(exc, _args())
    assert message.startswith("out of memory while quantizing m.onnx (") and fragment in message
    assert message.endswith("free memory, or use fewer calibration images (--num-calib) or a smaller --input-hw")


@pytest.mark.parametrize("exc", [
    ValueError("bad_alloc"),  # a Python error quoting the words is not an allocation failure
    ModelError("m.onnx: node 'Failed to allocate memory' is odd"),
    OSError(errno.ENOENT, "No such file"),
    RuntimeException("[ONNXRuntimeError] : 6 : RUNTIME_EXCEPTION : Invalid rank"),
    DecodeError("Error parsing message with type 'onnx.ModelProto'"),  # a truncated model is no memory problem
], ids=["python-error", "quantlab-error", "enoent", "ort-other", "protobuf-truncated"])
def test_other_errors_are_not_called_memory(exc):
    assert _out_of_memory_error(exc, _args()) is None


def _limited(megabytes):
    def apply():
        limit = megabytes * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    return apply


@pytest.mark.slow
@pytest.mark.parametrize("megabytes", [560, 620, 680])
@pytest.mark.parametrize("command", ["quantize", "eval"])
def test_cli_in_a_small_container_fails_in_one_line_naming_memory(tmp_path, demo_model, demo_data, command, megabytes):
    """As in a container with `ulimit -v`: the command works, or says it ran out of memory (exit 2)."""
    output = tmp_path / "int8.onnx"
    args = (["--calib", demo_data.parent / "images" / "calib", "--num-calib", "20", "-o", output]
            if command == "quantize" else ["--data", demo_data])
    result = subprocess.run([sys.executable, "-m", "quantlab", command, demo_model, *map(str, args)],
                            capture_output=True, text=True, timeout=600, preexec_fn=_limited(megabytes))
    assert result.returncode in (ExitCode.OK, ExitCode.USAGE), result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    if result.returncode == ExitCode.USAGE:
        errors = [line for line in result.stderr.splitlines() if line.startswith("quantlab: error:")]
        assert len(errors) == 1 and "out of memory while" in errors[0], result.stderr[-3000:]
        assert not output.exists()
