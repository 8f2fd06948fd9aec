"""The one place that knows how onnxruntime differs between versions: its quantization API, the opsets
it loads, its logging. onnxruntime.quantization (which imports sympy, seconds on a busy machine) is
imported only by the functions that quantize, so reading a model does not pay for it."""

from __future__ import annotations

import contextlib
import functools
import inspect
import logging
import os
from collections.abc import Callable
from pathlib import Path

import onnx
import onnxruntime

from quantlab.errors import CompatibilityError, ModelError
from quantlab.recipes import CalibMethod, QType, QuantFormat, Recipe

ORT_VERSION = onnxruntime.__version__



def _qtype(qtype: QType):
    from onnxruntime import quantization as ortq

    return {QType.U8: ortq.QuantType.QUInt8, QType.S8: ortq.QuantType.QInt8}[qtype]


QUIET = 3  # onnxruntime's log severity for ERROR: its warnings (telemetry, shape merging) are not the user's


def quiet_logs() -> None:
    """Keep onnxruntime's own messages off the terminal: its C++ default logger below errors (sessions and
    the quantizer's inference sessions), and the Python logging its quantization tools write to, where
    even a caught failure is logged with its traceback (quant_pre_process' "Model Optimization Failed!"):
    quantlab says what failed in its own one line."""
    onnxruntime.set_default_logger_severity(QUIET)
    logging.getLogger().setLevel(logging.CRITICAL)  # onnxruntime.quantization logs through the root logger


def _loads_at_opset(version: int) -> bool:
    relu = onnx.helper.make_node("Relu", ["x"], ["y"])
    value = onnx.helper.make_tensor_value_info
    graph = onnx.helper.make_graph([relu], "probe", [value("x", onnx.TensorProto.FLOAT, [1])],
                                   [value("y", onnx.TensorProto.FLOAT, [1])])
    model = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", version)])
    model.ir_version = min(model.ir_version, 8)  # every onnxruntime quantlab supports (1.17+) reads IR 8
    options = onnxruntime.SessionOptions()
    options.log_severity_level = QUIET
    try:
        onnxruntime.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    except Exception:  # onnxruntime's errors share no base class but Exception
        return False
    return True


OLDEST_SUPPORTED_OPSET = 20  # onnxruntime 1.17, the oldest quantlab supports, loads opsets up to 20


@functools.cache
def loads_opset(version: int) -> bool:
    """Whether the installed onnxruntime loads ai.onnx `version` (probed with a one-node model above 20)."""
    return version <= OLDEST_SUPPORTED_OPSET or _loads_at_opset(version)


def check_opset(opset: int, path: Path) -> None:
    """ModelError, before any work, for a model stamped with an opset the installed onnxruntime cannot load."""
    if loads_opset(opset):
        return
    newest = next(v for v in range(opset - 1, OLDEST_SUPPORTED_OPSET - 1, -1) if loads_opset(v))
    raise ModelError(f"{path}: its opset {opset} is newer than the installed onnxruntime {ORT_VERSION} loads "
                     f"(up to {newest}): upgrade onnxruntime, or export with opset={newest} or lower")


def _is_neutral(value) -> bool:
    """A value that asks for nothing, so a version lacking the argument loses nothing."""
    return value is None or value is False or value == {} or value == [] or value == ()


def supported_kwargs(func: Callable, kwargs: dict) -> dict:
    """kwargs that `func` accepts in the installed onnxruntime.

    A missing argument whose value asks for nothing is dropped; one that asks for something
    raises CompatibilityError naming the option and the installed version (never a TypeError).
    """
    params = inspect.signature(func).parameters
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD and p.name != "deprecated_kwargs"
                    for p in params.values())
    accepted = {}
    for key, value in kwargs.items():
        if key in params or takes_any:
            accepted[key] = value
        elif not _is_neutral(value):
            raise CompatibilityError(
                f"option '{key}={value!r}' is not supported by {func.__name__} in the installed "
                f"onnxruntime {ORT_VERSION}: upgrade onnxruntime or leave the option at its default"
            )
    return accepted


def _nodes(recipe: Recipe, float_nodes: set[str]) -> dict:
    return {
        "op_types_to_quantize": list(recipe.op_types) or None,
        "per_channel": recipe.per_channel,
        "reduce_range": recipe.reduce_range,
        "weight_type": _qtype(recipe.weight_type),
        "nodes_to_exclude": sorted(float_nodes) or None,
    }


def quantize_static(model_in: str, model_out: str, reader, recipe: Recipe, float_nodes: set[str]) -> None:
    from onnxruntime import quantization as ortq

    formats = {QuantFormat.QDQ: ortq.QuantFormat.QDQ, QuantFormat.QOPERATOR: ortq.QuantFormat.QOperator}
    methods = {CalibMethod.MINMAX: ortq.CalibrationMethod.MinMax, CalibMethod.ENTROPY: ortq.CalibrationMethod.Entropy,
               CalibMethod.PERCENTILE: ortq.CalibrationMethod.Percentile}
    kwargs = {
        "quant_format": formats[recipe.quant_format],
        "activation_type": _qtype(recipe.activation_type),
        "calibrate_method": methods[recipe.calibrate_method],
        **_nodes(recipe, float_nodes),
        "extra_options": {"ActivationSymmetric": False, "WeightSymmetric": True,
                          **({"OpTypesToExcludeOutputQuantization": list(recipe.float_output_op_types)}
                             if recipe.float_output_op_types else {})},
    }
    ortq.quantize_static(model_in, model_out, reader, **supported_kwargs(ortq.quantize_static, kwargs))


def quantize_dynamic(model_in: str, model_out: str, recipe: Recipe, float_nodes: set[str]) -> None:
    from onnxruntime import quantization as ortq

    kwargs = _nodes(recipe, float_nodes)
    ortq.quantize_dynamic(model_in, model_out, **supported_kwargs(ortq.quantize_dynamic, kwargs))


@contextlib.contextmanager
def _working_directory(path: Path):
    """contextlib.chdir, which Python 3.10 lacks."""
    previous = os.getcwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(previous)


def pre_process(model_in: str, model_out: str) -> bool:
    """onnxruntime's recommended pre-processing: symbolic shape inference, optimisation, ONNX shapes.

    Symbolic inference cannot finish on some graphs with dynamic inputs (a Reshape to fixed sizes);
    then it runs again without it, as onnxruntime advises. Returns whether symbolic inference ran.
    """
    from onnxruntime.quantization.shape_inference import quant_pre_process

    # A failed symbolic inference saves sym_shape_infer_temp.onnx and its data into the working
    # directory: run it from the output's (staging) folder so nothing lands in the user's.
    with _working_directory(Path(model_out).parent):
        try:
            quant_pre_process(model_in, model_out, **supported_kwargs(quant_pre_process, {"skip_optimization": False}))
            return True
        except Exception as exc:
            if "symbolic shape" not in str(exc).lower():
                raise
        quant_pre_process(model_in, model_out, **supported_kwargs(quant_pre_process, {"skip_symbolic_shape": True}))
        return False
