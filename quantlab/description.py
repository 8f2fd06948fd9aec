"""What a YOLO model outputs, read once: its task, classes, input size, keypoint shape, and how its
detection output's channels split into real parts (boxes, scores, then the task's own values).

Ultralytics writes most of it into the ONNX metadata (task, names, imgsz, stride, kpt_shape,
end2end); a model from another exporter, or with its metadata stripped, is read from its graph:
a raw YOLO head ends in a Concat, along the channels, of 4 box channels, the class scores (a
Sigmoid) and the task's values (mask coefficients, keypoints, an angle); an end-to-end head selects
boxes inside the graph (TopK or NonMaxSuppression) into rows of x1 y1 x2 y2 score class [values].
Where both are present they must agree, or the model is refused.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass

import numpy as np
import onnx

from quantlab.errors import ModelError
from quantlab.graphshapes import static_dims, with_static_input
from quantlab.textsafe import quoted, shorten

DETECT, SEGMENT, POSE, OBB = "detect", "segment", "pose", "obb"
TASKS = (DETECT, SEGMENT, POSE, OBB)
EXTRA_PART = {SEGMENT: "mask_coefficients", POSE: "keypoints", OBB: "angle"}  # each task's own values
END_TO_END_OPS = frozenset({"NonMaxSuppression", "TopK"})
BOX_CHANNELS = 4
DEFAULT_STRIDE = 32  # YOLO's deepest feature map: a dynamic input's H and W must divide by it
DEFAULT_INPUT_HW = (640, 640)  # Ultralytics' default imgsz, for dynamic inputs without imgsz metadata
# A metadata literal's length: Ultralytics' names for 1203 LVIS classes take 25 KB; a 10^6-class dict took
# 2.2 GB to parse
MAX_METADATA_CHARS = 1 << 20
MAX_OUTPUTS_SHOWN = 8
# YOLO exports go to 1280-2048 a side; the (1, 3, H, W) float32 input, and activations many times its size,
# grow with H * W: 4096 a side and 8.4 M pixels (4096 x 2048, a 100 MB input) are generous, while 14 bytes of
# metadata saying imgsz [32768, 32768] would ask for 12 GiB for the input alone.
MAX_INPUT_SIDE = 4096
MAX_INPUT_PIXELS = 4096 * 2048


@dataclass(frozen=True)
class ModelDescription:
    """A YOLO model's output as quantlab reads it. extra_channels: the task's values per box after the
    class scores (32 mask coefficients, K*D keypoint values, 1 angle); source: 'metadata' or 'graph'."""

    task: str
    class_names: dict[int, str]
    extra_channels: int = 0
    kpt_shape: tuple[int, int] | None = None
    end_to_end: bool = False
    stride: int = DEFAULT_STRIDE
    imgsz: tuple[int, int] | None = None
    source: str = "graph"

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def extra_part(self) -> str | None:
        """The name of the task's own part of each row, None for detect."""
        return EXTRA_PART.get(self.task)

    @property
    def channels(self) -> int:
        """Values per row of the detection output."""
        head = BOX_CHANNELS + 2 if self.end_to_end else BOX_CHANNELS + self.num_classes
        return head + self.extra_channels

    def rows(self, output: np.ndarray) -> np.ndarray:
        """The detection output as (rows, channels): anchors of a raw head, selected boxes of an end-to-end one."""
        if output.ndim != 3 or output.shape[0] != 1 or self.channels not in output.shape[1:]:
            raise ModelError(f"output of shape {list(output.shape)} is not this {self.summary()} output "
                             f"(1, {self.channels}, anchors) or (1, rows, {self.channels})")
        channels_first = not self.end_to_end and output.shape[1] == self.channels  # end-to-end rows come (1, N, C)
        return output[0].T if channels_first else output[0]

    def split(self, output: np.ndarray) -> dict[str, np.ndarray]:
        """The output's real parts, each (rows, n): raw heads give 'boxes' (cx cy w h in input pixels) and
        'scores' (one per class); end-to-end heads give 'boxes' (x1 y1 x2 y2; cx cy w h for OBB), 'scores' (1)
        and 'class_ids' (1); then the task's part ('mask_coefficients', 'keypoints' or 'angle') where it has one."""
        rows = self.rows(output)
        parts = {"boxes": rows[:, :BOX_CHANNELS]}
        at = BOX_CHANNELS
        if self.end_to_end:
            parts["scores"], parts["class_ids"] = rows[:, at:at + 1], rows[:, at + 1:at + 2]
            at += 2
        else:
            parts["scores"] = rows[:, at:at + self.num_classes]
            at += self.num_classes
        if self.extra_part:
            parts[self.extra_part] = rows[:, at:at + self.extra_channels]
        return parts

    def summary(self) -> str:
        kind = "end-to-end " if self.end_to_end else ""
        kpts = f", keypoints {self.kpt_shape[0]}x{self.kpt_shape[1]}" if self.kpt_shape else ""
        return f"{kind}{self.task} model, {self.num_classes} classes{kpts}"

    def as_dict(self) -> dict:
        return {"task": self.task, "classes": self.num_classes, "end_to_end": self.end_to_end,
                "kpt_shape": list(self.kpt_shape) if self.kpt_shape else None, "source": self.source}


def input_size_problem(input_hw: tuple[int, int]) -> str | None:
    """Why an (H, W) input size is too large for quantlab to allocate, or None if it is within bounds."""
    h, w = input_hw
    if max(h, w) > MAX_INPUT_SIDE:
        return f"over quantlab's limit of {MAX_INPUT_SIDE} pixels a side"
    if h * w > MAX_INPUT_PIXELS:
        return (f"{h * w / 1e6:.1f} M pixels, over quantlab's limit of {MAX_INPUT_PIXELS / 1e6:.1f} M "
                f"({MAX_INPUT_SIDE}x{MAX_INPUT_PIXELS // MAX_INPUT_SIDE})")
    return None


def value_dims(value: onnx.ValueInfoProto) -> tuple[int | None, ...]:
    return tuple(d.dim_value if d.HasField("dim_value") else None for d in value.type.tensor_type.shape.dim)


def shape_text(shape: tuple[int | None, ...]) -> str:
    return "(" + ", ".join("?" if d is None else str(d) for d in shape) + ")"


def _outputs_text(model: onnx.ModelProto) -> str:
    """The first outputs' names (cut short) and shapes, for a message."""
    outputs = model.graph.output
    listed = ", ".join(f"{shorten(o.name, 60)} {shape_text(value_dims(o))}" for o in outputs[:MAX_OUTPUTS_SHOWN])
    return listed + (f" and {len(outputs) - MAX_OUTPUTS_SHOWN} more" if len(outputs) > MAX_OUTPUTS_SHOWN else "")


def _metadata(model: onnx.ModelProto) -> dict[str, str]:
    return {p.key: p.value for p in model.metadata_props}


def _literal(meta: dict[str, str], key: str, path):
    """A metadata value as the Python literal Ultralytics wrote with str(), None if absent or unreadable;
    ModelError for one longer than any model writes (parsing takes about 80 bytes of memory a character)."""
    if key not in meta:
        return None
    if len(meta[key]) > MAX_METADATA_CHARS:
        raise ModelError(f"{path}: its metadata '{shorten(key, 40)}' is {len(meta[key]):,} characters, more than any "
                         f"model writes ({MAX_METADATA_CHARS:,} at most)")
    try:
        return ast.literal_eval(meta[key])
    except (ValueError, SyntaxError, TypeError, RecursionError):
        return None


@dataclass(frozen=True)
class _Metadata:
    task: str | None
    names: dict[int, str] | None
    kpt_shape: tuple[int, int] | None
    end_to_end: bool | None
    stride: int | None
    imgsz: tuple[int, int] | None


def _read_metadata(model: onnx.ModelProto, path) -> _Metadata:
    meta = _metadata(model)
    task = meta.get("task")
    if task is not None and task not in TASKS:
        raise ModelError(f"{path}: its metadata says task {quoted(task, 40)}; quantlab reads {', '.join(TASKS)} models")
    names = _literal(meta, "names", path)
    if not (isinstance(names, dict) and names and all(isinstance(k, int) for k in names)):
        names = None  # absent or not Ultralytics' {index: name}: the class count comes from the graph
    else:
        names = {k: str(v) for k, v in names.items()}
    kpt = _literal(meta, "kpt_shape", path)
    kpt = tuple(kpt) if isinstance(kpt, (list, tuple)) and len(kpt) == 2 and all(isinstance(k, int) for k in kpt) \
        else None
    stride = _literal(meta, "stride", path)
    stride = stride if isinstance(stride, int) and stride > 0 else None
    imgsz = _literal(meta, "imgsz", path)
    valid = isinstance(imgsz, (list, tuple)) and len(imgsz) == 2 and all(
        isinstance(d, int) and d > 0 and d % (stride or DEFAULT_STRIDE) == 0 for d in imgsz)
    if valid and (problem := input_size_problem(imgsz)):
        raise ModelError(f"{path}: its metadata says imgsz {list(imgsz)}: {problem}; re-export with a smaller imgsz")
    end2end = meta["end2end"] == "True" if "end2end" in meta else None
    return _Metadata(task, names, kpt, end2end, stride, tuple(imgsz) if valid else None)


@dataclass(frozen=True)
class _Graph:
    """What the graph alone says. parts: channel counts of the detection output's final Concat
    (boxes, scores, then the task's values), None when the head is not recognised; selection: the
    in-graph TopK/NonMaxSuppression node's description; second: a second output's 4-D shape."""

    channels: int | None
    parts: tuple[int, ...] | None
    selection: str | None
    second: tuple[int | None, ...] | None
    score_channels: int | None


def _concat_parts(dims: dict, name: str, producers: dict) -> tuple | None:
    """The channel counts of the inputs of the channel Concat that makes `name` (nested Concats
    flattened), or None unless it is YOLO's: 4 box channels then a Sigmoid's class scores."""
    node = producers.get(name)
    if node is not None and node.op_type == "Transpose":  # channels-last exports
        node = producers.get(node.input[0])
    if node is None or node.op_type != "Concat":
        return None
    parts: list[tuple[str, int | None]] = []

    def flatten(concat: onnx.NodeProto, depth: int) -> None:
        for source in concat.input:
            inner = producers.get(source)
            shape = dims.get(source)
            if inner is not None and inner.op_type == "Concat" and depth < 2 and _axis(inner) in (1, -2):
                flatten(inner, depth + 1)
            else:
                parts.append((inner.op_type if inner is not None else "", shape[1] if shape and len(shape) == 3
                              else None))

    if _axis(node) not in (1, -2):
        return None
    flatten(node, 0)
    if len(parts) < 2 or parts[0][1] != BOX_CHANNELS or parts[1][0] != "Sigmoid" or None in [c for _, c in parts]:
        return None
    return tuple(c for _, c in parts)


def _axis(node: onnx.NodeProto) -> int | None:
    return next((a.i for a in node.attribute if a.name == "axis"), None)


def _read_graph(model: onnx.ModelProto, input_hw: tuple[int, int]) -> _Graph:
    inferred = with_static_input(model, input_hw)
    dims = static_dims(inferred)
    producers = {out: node for node in inferred.graph.node for out in node.output}
    first = inferred.graph.output[0].name
    shape = dims.get(first) or []
    selection = next((n for n in model.graph.node if n.op_type in END_TO_END_OPS), None)
    channels = min((d for d in shape[1:] if isinstance(d, int)), default=None) if len(shape) == 3 else None
    if selection is not None and len(shape) == 3 and isinstance(shape[2], int):
        channels = shape[2]  # end-to-end rows: (1, max_det, values)
    second = None
    if len(inferred.graph.output) > 1:
        other = dims.get(inferred.graph.output[1].name)
        second = tuple(d if isinstance(d, int) else None for d in other) if other and len(other) == 4 else None
    sigmoids = [dims.get(n.output[0]) for n in inferred.graph.node if n.op_type == "Sigmoid"]
    score_channels = next((min(s[1:]) for s in reversed(sigmoids)
                           if s and len(s) == 3 and all(isinstance(d, int) for d in s[1:])), None)
    return _Graph(channels, _concat_parts(dims, first, producers),
                  f"node '{selection.name}' is {selection.op_type}" if selection is not None else None,
                  second, score_channels)


def _task_from_extra(extra: int, graph: _Graph) -> tuple[str, tuple[int, int] | None] | None:
    """The task the values after the class scores imply, by count (and a proto output for segment)."""
    if extra == 0:
        return DETECT, None
    if graph.second is not None and graph.second[1] == extra:
        return SEGMENT, None
    if extra == 1:
        return OBB, None
    for values_per_point in (3, 2):  # Ultralytics' default keypoints are x y visibility
        if extra % values_per_point == 0:
            return POSE, (extra // values_per_point, values_per_point)
    return None


def _expected_extra(task: str, kpt_shape: tuple[int, int] | None, graph: _Graph) -> int | None:
    if task == DETECT:
        return 0
    if task == OBB:
        return 1
    if task == POSE:
        return kpt_shape[0] * kpt_shape[1] if kpt_shape else None
    return graph.second[1] if graph.second is not None else None


def describe_model(model: onnx.ModelProto, path, fixed_hw: tuple[int, int] | None = None) -> ModelDescription:
    """Read the model's description from its metadata and graph; ModelError if they disagree or say too little.

    fixed_hw: the input's (H, W) when fixed in the model; the graph is read at that size, else at imgsz.
    """
    meta = _read_metadata(model, path)
    output = model.graph.output[0]
    if output.type.tensor_type.elem_type != onnx.TensorProto.FLOAT:
        kind = onnx.TensorProto.DataType.Name(output.type.tensor_type.elem_type)
        raise ModelError(f"{path}: output '{output.name}' is {kind}; quantlab compares float32 YOLO outputs "
                         "(box pixels and class probabilities)")
    graph = _read_graph(model, fixed_hw or meta.imgsz or DEFAULT_INPUT_HW)
    end_to_end = graph.selection is not None or bool(meta.end_to_end)
    seen = f"outputs seen: {_outputs_text(model)}"
    if graph.channels is None:
        raise ModelError(f"{path}: the first output is not a YOLO detection output (1, 4+classes+values, anchors) "
                         f"or end-to-end rows (1, boxes, 6+values); {seen}")
    if end_to_end and graph.selection is None:
        raise ModelError(f"{path}: its metadata says end2end=True but the graph selects no boxes (no TopK or "
                         f"NonMaxSuppression); {seen}")
    if meta.task is None and meta.names is None and graph.parts is None and not end_to_end:
        raise ModelError(f"{path}: neither Ultralytics metadata (task, names) nor a recognisable YOLO head (a "
                         f"final Concat of 4 box channels and Sigmoid class scores); {seen}")
    task, kpt_shape = meta.task, meta.kpt_shape
    if end_to_end:
        nc = len(meta.names) if meta.names else graph.score_channels
        extra = graph.channels - BOX_CHANNELS - 2
    else:
        nc = graph.parts[1] if graph.parts else (len(meta.names) if meta.names else None)
        extra = graph.channels - BOX_CHANNELS - nc if nc is not None else None
    if nc is None or nc < 1 or extra is None or extra < 0:
        raise ModelError(f"{path}: cannot tell the class count from the graph or metadata; {seen}")
    if task is None:
        inferred = _task_from_extra(extra, graph)
        if inferred is None:
            raise ModelError(f"{path}: {extra} values per box after {nc} class scores fit no YOLO task (detect 0, "
                             f"segment = proto channels, pose K*2 or K*3, obb 1); {seen}")
        task, kpt_shape = inferred[0], kpt_shape or inferred[1]
    expected = _expected_extra(task, kpt_shape, graph)
    if expected != extra:
        what = {SEGMENT: "mask coefficients to match a (1, C, H, W) proto output",
                POSE: f"keypoint values (kpt_shape {list(kpt_shape) if kpt_shape else 'unknown'})",
                OBB: "angle"}.get(task, "values")
        raise ModelError(f"{path}: a '{task}' model should have {expected if expected is not None else 'some'} "
                         f"{what} per box after {nc} class scores; its output has {extra}; {seen}")
    if meta.names is not None and len(meta.names) != nc:
        raise ModelError(f"{path}: its 'names' metadata lists {len(meta.names)} classes but its output has "
                         f"{nc} class channels; {seen}")
    names = meta.names or {i: f"class{i}" for i in range(nc)}
    source = "metadata" if meta.task is not None else "graph"
    return ModelDescription(task, names, extra, kpt_shape if task == POSE else None, end_to_end,
                            meta.stride or DEFAULT_STRIDE, meta.imgsz, source)
