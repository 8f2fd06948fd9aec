"""The one place that knows how onnxruntime's quantization API differs between versions."""

from __future__ import annotations

import contextlib
import inspect
import os
from collections.abc import Callable
from pathlib import Path

import onnxruntime
from onnxruntime import quantization as ortq

from quantlab.errors import CompatibilityError
from quantlab.recipes import CalibMethod, QType, QuantFormat, Recipe

ORT_VERSION = onnxruntime.__version__

_QTYPES = {QType.U8: ortq.QuantType.QUInt8, QType.S8: ortq.QuantType.QInt8}
_FORMATS = {QuantFormat.QDQ: ortq.QuantFormat.QDQ, QuantFormat.QOPERATOR: ortq.QuantFormat.QOperator}
_CALIB = {CalibMethod.MINMAX: ortq.CalibrationMethod.MinMax,
          CalibMethod.ENTROPY: ortq.CalibrationMethod.Entropy,
          CalibMethod.PERCENTILE: ortq.CalibrationMethod.Percentile}


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
        "weight_type": _QTYPES[recipe.weight_type],
        "nodes_to_exclude": sorted(float_nodes) or None,
    }


def quantize_static(model_in: str, model_out: str, reader, recipe: Recipe, float_nodes: set[str]) -> None:
    kwargs = {
        "quant_format": _FORMATS[recipe.quant_format],
        "activation_type": _QTYPES[recipe.activation_type],
        "calibrate_method": _CALIB[recipe.calibrate_method],
        **_nodes(recipe, float_nodes),
        "extra_options": {"ActivationSymmetric": False, "WeightSymmetric": True,
                          **({"OpTypesToExcludeOutputQuantization": list(recipe.float_output_op_types)}
                             if recipe.float_output_op_types else {})},
    }
    ortq.quantize_static(model_in, model_out, reader, **supported_kwargs(ortq.quantize_static, kwargs))


def quantize_dynamic(model_in: str, model_out: str, recipe: Recipe, float_nodes: set[str]) -> None:
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
