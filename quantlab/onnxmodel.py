"""Load and validate an ONNX image model; read its input name, shape, classes; check it is quantizable."""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import onnx
from onnx import TensorProto

from quantlab.description import (DEFAULT_INPUT_HW, ModelDescription, describe_model, input_size_problem, shape_text,
                                  value_dims)
from quantlab.errors import ConfigError, ModelError
from quantlab.ortcompat import check_opset
from quantlab.textsafe import quoted

# Ops that mean a model is already quantized (QDQ, QOperator or dynamic): quantizing again breaks it
QUANTIZED_OPS = frozenset({"QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear", "QLinearConv",
                           "QLinearMatMul", "ConvInteger", "MatMulInteger", "QLinearAdd", "QLinearMul",
                           "QLinearSigmoid", "QLinearConcat", "QLinearGlobalAveragePool"})


@dataclass(frozen=True)
class ModelInfo:
    """What quantlab needs to know about a model. input_shape: dims, None where dynamic."""

    path: Path
    input_name: str
    input_shape: tuple[int | None, ...]
    output_names: tuple[str, ...]
    opset: int
    size_bytes: int
    description: ModelDescription

    @property
    def class_names(self) -> dict[int, str]:
        return self.description.class_names

    @property
    def input_hw(self) -> tuple[int, int] | None:
        """(H, W) when both are fixed in the model, else None."""
        h, w = self.input_shape[2], self.input_shape[3]
        return (h, w) if h and w else None


def load_model(path: str | Path, load_external_data: bool = True) -> onnx.ModelProto:
    """Parse an ONNX file (Python file I/O, so any path works) and check it."""
    path = Path(path)
    if path.is_dir():
        raise ModelError(f"{path}: is a directory, not an ONNX file")
    if not path.is_file():
        raise ModelError(f"{path}: model file not found")
    try:
        model = onnx.load(str(path), load_external_data=load_external_data)
    except Exception as exc:  # protobuf raises DecodeError, missing external data raises OSError
        raise ModelError(f"{path}: not a readable ONNX model (corrupt or truncated?): {exc}") from exc
    if not model.graph.node:
        raise ModelError(f"{path}: not an ONNX model (it parsed to an empty graph)")
    check_opset(_opset(model), path)
    try:
        onnx.checker.check_model(model)
    except (onnx.checker.ValidationError, ValueError) as exc:
        first_line = str(exc).strip().splitlines()[0]
        raise ModelError(f"{path}: invalid ONNX model (corrupt or truncated?): {first_line}") from exc
    return model


def _opset(model: onnx.ModelProto) -> int:
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)


def check_quantizable(model: onnx.ModelProto, path: Path) -> None:
    """Refuse a model that quantization would break: already quantized, or FP16 weights."""
    quantized = next((n for n in model.graph.node if n.op_type in QUANTIZED_OPS), None)
    if quantized is not None:
        raise ModelError(f"{path}: already quantized (node {quoted(quantized.name or quantized.output[0], 60)} is "
                         f"{quantized.op_type}); quantize the FP32 model it came from")
    half = [t.name for t in model.graph.initializer if t.data_type in (TensorProto.FLOAT16, TensorProto.BFLOAT16)]
    if half:
        raise ModelError(f"{path}: {len(half)} of {len(model.graph.initializer)} weights are FP16/BF16 "
                         f"(first: '{half[0]}'); quantize from the FP32 model (Ultralytics: export with half=False)")


def inspect_model(path: str | Path, model: onnx.ModelProto | None = None) -> ModelInfo:
    """Validate that `path` is a single-input FP32 NCHW image model and describe it."""
    path = Path(path)
    model = model if model is not None else load_model(path)
    initializers = {t.name for t in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in initializers]
    if len(inputs) != 1:
        names = ", ".join(i.name for i in inputs) or "none"
        raise ModelError(f"{path}: expected one image input, found {len(inputs)} ({names})")
    (image_input,) = inputs
    elem_type = image_input.type.tensor_type.elem_type
    if elem_type == TensorProto.FLOAT16:
        raise ModelError(
            f"{path}: input '{image_input.name}' is FP16; quantize from the FP32 model "
            "(Ultralytics: export with half=False)"
        )
    if elem_type != TensorProto.FLOAT:
        raise ModelError(f"{path}: input '{image_input.name}' is {TensorProto.DataType.Name(elem_type)}, "
                         "expected a float32 image tensor")
    shape = value_dims(image_input)
    if len(shape) != 4 or shape[1] not in (3, None):
        raise ModelError(f"{path}: input '{image_input.name}' has shape {shape_text(shape)}, "
                         "expected a 4-D image tensor (N, 3, H, W)")
    if shape[0] not in (1, None):
        raise ModelError(f"{path}: input '{image_input.name}' has shape {shape_text(shape)}: a fixed batch of "
                         f"{shape[0]}; quantlab feeds one image at a time (export with batch=1 or dynamic batch)")
    opset = _opset(model)
    fixed_hw = (shape[2], shape[3]) if shape[2] and shape[3] else None
    if problem := input_size_problem((shape[2] or 1, shape[3] or 1)):  # one static side can be too large alone
        raise ModelError(f"{path}: input '{image_input.name}' has shape {shape_text(shape)}: {problem}")
    description = describe_model(model, path, fixed_hw)
    return ModelInfo(path, image_input.name, shape, tuple(o.name for o in model.graph.output), opset,
                     model_size_bytes(path), description)


def external_data_files(path: str | Path) -> list[Path]:
    """The external-data files an .onnx file names (none for a self-contained model)."""
    path = Path(path)
    header = onnx.load(str(path), load_external_data=False)
    locations = {e.value for t in header.graph.initializer for e in t.external_data if e.key == "location"}
    return sorted(path.parent / loc for loc in locations)


def model_sha256(path: str | Path) -> str:
    """sha256 of what a model computes with: the .onnx file's bytes, then each external-data file's, in the
    order `external_data_files` gives, each preceded by its length (8 bytes), so no two sets of files hash
    alike. File names are left out: the .onnx names its external files, and a renamed copy is the same model."""
    digest = hashlib.sha256()
    for file in (Path(path), *external_data_files(path)):
        digest.update(file.stat().st_size.to_bytes(8, "little"))
        with open(file, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()


@contextlib.contextmanager
def openable_by_name(path: str | Path) -> Iterator[Path]:
    """`path`, or while the context lasts a symlink to it that onnxruntime and OpenVINO can open.

    Both take a path as UTF-8 text, and a file name with bytes that are not UTF-8 (which Python keeps
    as lone surrogates, PEP 383) cannot be handed to them. Such a model is linked as model.onnx in a
    temporary folder, beside links to its external-data files under the names the model gives them.
    """
    path = Path(path)
    try:
        os.fspath(path).encode("utf-8")
    except UnicodeEncodeError:
        pass
    else:
        yield path
        return
    with tempfile.TemporaryDirectory(prefix="quantlab-model-") as folder:
        alias = Path(folder) / "model.onnx"
        alias.symlink_to(path.resolve())
        for data_file in external_data_files(path):
            location = data_file.relative_to(path.parent)
            if location.is_absolute() or ".." in location.parts:
                continue  # outside the model's folder: onnxruntime refuses it with its own message
            link = Path(folder) / location
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(data_file.resolve())
        yield alias


def model_size_bytes(path: Path) -> int:
    """The .onnx file plus any external-data files it names."""
    return path.stat().st_size + sum(f.stat().st_size for f in external_data_files(path) if f.is_file())


def resolve_input_hw(info: ModelInfo, requested_hw: tuple[int, int] | None = None) -> tuple[int, int]:
    """The (H, W) to letterbox to: the model's own, or the one requested when the model's are dynamic."""
    if info.input_hw:
        if requested_hw and tuple(requested_hw) != info.input_hw:
            raise ModelError(f"{info.path}: input size {info.input_hw} is fixed in the model; "
                             f"{tuple(requested_hw)} was requested")
        return info.input_hw
    if requested_hw and (problem := input_size_problem(requested_hw)):
        raise ConfigError(f"input size {tuple(requested_hw)} requested: {problem}")
    stride = info.description.stride
    if requested_hw and any(d % stride for d in requested_hw):
        raise ModelError(f"{info.path}: input size {tuple(requested_hw)} requested; YOLO's height and width must be "
                         f"multiples of its largest stride, {stride}")
    return tuple(requested_hw) if requested_hw else info.description.imgsz or DEFAULT_INPUT_HW
