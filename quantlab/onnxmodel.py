"""Load and validate an ONNX image model; read its input name, shape, classes; check it is quantizable."""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import onnx
from onnx import TensorProto

from quantlab.errors import ModelError

DEFAULT_INPUT_HW = (640, 640)  # Ultralytics' default imgsz, used when the model's H/W are dynamic
MAX_STRIDE = 32  # YOLO's deepest feature map: a dynamic input's H and W must divide by it
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
    class_names: dict[int, str]

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
    try:
        onnx.checker.check_model(model)
    except (onnx.checker.ValidationError, ValueError) as exc:
        first_line = str(exc).strip().splitlines()[0]
        raise ModelError(f"{path}: invalid ONNX model (corrupt or truncated?): {first_line}") from exc
    return model


def _dims(value: onnx.ValueInfoProto) -> tuple[int | None, ...]:
    return tuple(d.dim_value if d.HasField("dim_value") else None for d in value.type.tensor_type.shape.dim)


def _shape_text(shape: tuple[int | None, ...]) -> str:
    return "(" + ", ".join("?" if d is None else str(d) for d in shape) + ")"


def _metadata(model: onnx.ModelProto) -> dict[str, str]:
    return {p.key: p.value for p in model.metadata_props}


# Ops that put the selection of boxes inside the graph: an end-to-end export's (1, 300, 6) rows are
# already boxes, scores and classes, and read as a raw output they would look like 2 classes
END_TO_END_OPS = frozenset({"NonMaxSuppression", "TopK"})


def _check_decodable(model: onnx.ModelProto, path: Path) -> None:
    """Refuse what quantlab would decode wrongly: Ultralytics tasks other than detect, end-to-end exports."""
    meta = _metadata(model)
    task = meta.get("task")
    if task and task != "detect":
        raise ModelError(f"{path}: an Ultralytics '{task}' model; quantlab evaluates detect models only "
                         "(its outputs would be misread)")
    selection = next((n for n in model.graph.node if n.op_type in END_TO_END_OPS), None)
    if meta.get("end2end") == "True" or selection is not None:
        found = f"node '{selection.name}' is {selection.op_type}" if selection is not None else "end2end=True"
        raise ModelError(f"{path}: an end-to-end export ({found}: boxes are selected inside the model); "
                         "re-export the raw head (Ultralytics: end2end=False, nms=False)")
    output = model.graph.output[0]
    dims = _dims(output)
    if output.type.tensor_type.elem_type != TensorProto.FLOAT:
        kind = TensorProto.DataType.Name(output.type.tensor_type.elem_type)
        raise ModelError(f"{path}: output '{output.name}' is {kind}; quantlab compares float32 YOLOv8 outputs "
                         "(box pixels and class probabilities)")
    if len(dims) != 3:
        outputs = ", ".join(f"{o.name} {_shape_text(_dims(o))}" for o in model.graph.output)
        raise ModelError(f"{path}: the first output is not a YOLOv8 detection output (1, 4+classes, anchors); "
                         f"outputs seen: {outputs}")


def check_quantizable(model: onnx.ModelProto, path: Path) -> None:
    """Refuse a model that quantization would break: already quantized, or FP16 weights."""
    quantized = next((n for n in model.graph.node if n.op_type in QUANTIZED_OPS), None)
    if quantized is not None:
        raise ModelError(f"{path}: already quantized (node '{quantized.name or quantized.output[0]}' is "
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
    shape = _dims(image_input)
    if len(shape) != 4 or shape[1] not in (3, None):
        raise ModelError(f"{path}: input '{image_input.name}' has shape {_shape_text(shape)}, "
                         "expected a 4-D image tensor (N, 3, H, W)")
    if shape[0] not in (1, None):
        raise ModelError(f"{path}: input '{image_input.name}' has shape {_shape_text(shape)}: a fixed batch of "
                         f"{shape[0]}; quantlab feeds one image at a time (export with batch=1 or dynamic batch)")
    _check_decodable(model, path)
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    return ModelInfo(path, image_input.name, shape, tuple(o.name for o in model.graph.output), opset,
                     model_size_bytes(path), class_names(model, path))


def external_data_files(path: str | Path) -> list[Path]:
    """The external-data files an .onnx file names (none for a self-contained model)."""
    path = Path(path)
    header = onnx.load(str(path), load_external_data=False)
    locations = {e.value for t in header.graph.initializer for e in t.external_data if e.key == "location"}
    return sorted(path.parent / loc for loc in locations)


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
    if requested_hw and any(d % MAX_STRIDE for d in requested_hw):
        raise ModelError(f"{info.path}: input size {tuple(requested_hw)} requested; YOLO's height and width must be "
                         f"multiples of its largest stride, {MAX_STRIDE}")
    return tuple(requested_hw) if requested_hw else DEFAULT_INPUT_HW


def class_names(model: onnx.ModelProto, path: Path | None = None) -> dict[int, str]:
    """Class names from Ultralytics' 'names' metadata, else class0.. from the output's channel count.

    The count is the detection output's channels less 4 box channels; metadata that disagrees is an error.
    """
    dims = [d for d in _dims(model.graph.output[0])[1:] if d]
    count = min(dims) - 4 if dims else None  # anchors outnumber channels
    names = None
    meta = _metadata(model)
    if "names" in meta:
        try:
            names = {int(k): str(v) for k, v in ast.literal_eval(meta["names"]).items()}
        except (ValueError, SyntaxError, AttributeError, TypeError):
            names = None
    if names is not None and count is not None and len(names) != count:
        raise ModelError(f"{path or 'model'}: its 'names' metadata lists {len(names)} classes but its output has "
                         f"{count} class channels; not a plain YOLOv8 detector")
    if names is not None:
        return names
    if count is None or count < 1:
        raise ModelError(f"{path or 'model'}: cannot tell the class count from output "
                         f"{_shape_text(_dims(model.graph.output[0]))}")
    return {i: f"class{i}" for i in range(count)}
