"""Exact channel alignment: zero-pad convolution channels to onnxruntime's fast INT8 convolution rule.

onnxruntime's QLinearConv takes MLAS's symmetric kernel (ConvSym, indirect convolution) only when
MlasConvSymPackWSize accepts the shape (onnxruntime/core/mlas/lib/convsym.cpp): group 1, input
channels % 4 == 0, output channels >= 16 and output channels % KernelOutputChannelAlignment == 0,
which is 4 on AVX512-core CPUs (AVX512F/BW/DQ/VL, with or without VNNI) and 8 on AVX2 and AVX-VNNI.
Otherwise it falls back to im2col and a generic INT8 GEMM. Pruned models miss the rule almost
everywhere (channels such as 12, 25, 51).

The pass pads a convolution's output channels with zero weights and zero bias, and gives every
consumer convolution zero weights on the extra input channels, so the padded channels never reach a
real output. It follows a padded tensor through ops that work per channel (activations, pooling,
Resize), through Concat (at the right offsets), Split (each part padded like a convolution output,
so C2f's residual branches fit too) and elementwise Add/Mul/Sub of two tensors padded alike; anywhere
else (Reshape, Softmax, a graph output, an op it does not know) it slices the original channels back
out. Padded channels need not hold zeros (Sigmoid(0) = 0.5): they hold finite values that only ever
meet zero weights or are sliced away.

A channel map describes a padded tensor: for each of its channels, the original channel it holds, or
None for a padded one. A padded tensor keeps its name; where something still reads the original
channels they are sliced into `<name>:unpadded` (a graph output keeps its name, and its padded tensor
becomes `<name>:padded`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import onnx
from onnx import helper, numpy_helper

from quantlab.errors import first_line
from quantlab.sessions import inference_session

ChannelMap = tuple  # tuple[int | None, ...]
PADDED_SUFFIX = ":padded"  # a padded tensor whose original name must keep the original channels
UNPADDED_SUFFIX = ":unpadded"  # the original channels sliced back out of a padded tensor
# Per-channel ops whose output stays finite on finite input: a padded channel stays padded
CHANNELWISE_OPS = frozenset({"Relu", "LeakyRelu", "Sigmoid", "Tanh", "HardSigmoid", "HardSwish", "Clip",
                             "Identity", "MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool",
                             "Resize"})
ELEMENTWISE_OPS = frozenset({"Add", "Mul", "Sub"})
# The check that padding changed nothing: per boundary tensor and per index along axis 1 (a channel; a YOLO
# output's rows x, y, w, h and the class scores), |padded - original| <= ATOL + RTOL * max |original| there.
# Summation order differs between kernels, so equal is float-equal: the demo differs by 9e-6 at its
# boundaries (2e-4 px on boxes, 1e-6 on scores at its output); a misplaced channel differs by whole units.
CHECK_ATOL = 1e-5
CHECK_RTOL = 1e-5
_PROTOBUF_LIMIT = 2**31 - 1


@dataclass(frozen=True)
class ChannelRule:
    """The channel counts MLAS ConvSym takes: input % input_multiple, output % output_multiple, output >= min_output."""

    output_multiple: int
    input_multiple: int = 4
    min_output: int = 16

    def fits(self, in_channels: int, out_channels: int) -> bool:
        return (in_channels % self.input_multiple == 0 and out_channels % self.output_multiple == 0
                and out_channels >= self.min_output)

    def padded_output(self, channels: int) -> int:
        return max(self.min_output, -(-channels // self.output_multiple) * self.output_multiple)

    def padded_input(self, channels: int) -> int:
        return -(-channels // self.input_multiple) * self.input_multiple


@dataclass
class Alignment:
    """What the pass changed: conv name -> [input, output] channels before and after, and the image input."""

    convs: dict[str, list[list[int]]] = field(default_factory=dict)
    image_channels: list[int] | None = None  # [before, after] when the image was padded inside the graph
    slices: list[str] = field(default_factory=list)  # tensors sliced back to their original channels
    # every original tensor that unchanged nodes read from a padded one -> its name in the padded graph
    boundaries: dict[str, str] = field(default_factory=dict, repr=False)

    @property
    def changed(self) -> bool:
        return bool(self.convs or self.image_channels)

    def as_dict(self) -> dict:
        return {"convs": self.convs, "image_channels": self.image_channels, "slices": sorted(self.slices)}


def _attr(node: onnx.NodeProto, name: str, default=None):
    found = next((a for a in node.attribute if a.name == name), None)
    return default if found is None else helper.get_attribute_value(found)


def _set_attr(node: onnx.NodeProto, name: str, value) -> None:
    kept = [a for a in node.attribute if a.name != name]
    del node.attribute[:]
    node.attribute.extend(kept)
    if value is not None:
        node.attribute.append(helper.make_attribute(name, value))


def _identity(channels: int) -> ChannelMap:
    return tuple(range(channels))


def _real(channel_map: ChannelMap) -> list[int]:
    return [c for c in channel_map if c is not None]


def _gather_channels(array: np.ndarray, channel_map: ChannelMap, axis: int) -> np.ndarray:
    """array with axis re-laid along channel_map: original channel c where the map says c, zeros where None."""
    shape = list(array.shape)
    shape[axis] = len(channel_map)
    out = np.zeros(shape, dtype=array.dtype)
    for new, old in enumerate(channel_map):
        if old is not None:
            index = [slice(None)] * array.ndim
            index[axis] = new
            source = [slice(None)] * array.ndim
            source[axis] = old
            out[tuple(index)] = array[tuple(source)]
    return out


class _Aligner:
    def __init__(self, model: onnx.ModelProto, rule: ChannelRule, pad_image: bool, skip: frozenset[str]):
        self.model = model
        self.rule = rule
        self.pad_image = pad_image
        self.skip = skip
        self.inits = {t.name: t for t in model.graph.initializer}
        self.consumers: dict[str, list[onnx.NodeProto]] = {}
        for node in model.graph.node:
            for name in node.input:
                self.consumers.setdefault(name, []).append(node)
        self.maps: dict[str, ChannelMap] = {}  # original tensor name -> its padded channel map
        self.aligned: dict[str, str] = {}  # original name -> the tensor holding it padded
        self.unpadded: dict[str, str] = {}  # original name -> the tensor holding its original channels
        self.nodes: list[onnx.NodeProto] = []
        self.new_inits: list[onnx.TensorProto] = []
        self.report = Alignment()
        self.names = {n.name for n in model.graph.node} | {o for n in model.graph.node for o in n.output}

    def _fresh(self, base: str) -> str:
        name = base
        while name in self.names:
            name += "_"
        self.names.add(name)
        return name

    def _constant(self, base: str, array: np.ndarray) -> str:
        name = self._fresh(base)
        self.new_inits.append(numpy_helper.from_array(array, name))
        return name

    # ---- the map of a convolution's output -------------------------------------------------------------

    def _paddable_conv(self, node: onnx.NodeProto) -> bool:
        weight = self.inits.get(node.input[1]) if len(node.input) > 1 else None
        bias_ok = len(node.input) < 3 or not node.input[2] or node.input[2] in self.inits
        return (weight is not None and len(weight.dims) == 4 and bias_ok
                and _attr(node, "group", 1) in (1, weight.dims[0]))

    def _split_sizes(self, node: onnx.NodeProto, channels: int) -> list[int] | None:
        """A channel Split's original sizes, or None where they are not known constants."""
        if _attr(node, "axis", 0) not in (1, -3):
            return None
        if len(node.input) > 1 and node.input[1]:
            sizes = self.inits.get(node.input[1])
            return None if sizes is None else [int(s) for s in numpy_helper.to_array(sizes)]
        if _attr(node, "split") is not None:
            return [int(s) for s in _attr(node, "split")]
        parts = _attr(node, "num_outputs", len(node.output))
        if parts < 1:
            return None
        size = -(-channels // parts)
        return [size] * (channels // size) + ([channels % size] if channels % size else [])

    def _reader(self, name: str) -> tuple[str, onnx.NodeProto] | None:
        """(tensor, node): the one node past a SiLU (Sigmoid + Mul) or per-channel ops that reads `name`'s values."""
        outputs = {o.name for o in self.model.graph.output}
        for _ in range(4):
            readers = self.consumers.get(name, [])
            if name in outputs or not readers:
                return None
            ops = sorted(r.op_type for r in readers)
            if ops == ["Mul", "Sigmoid"]:
                sigmoid = next(r for r in readers if r.op_type == "Sigmoid")
                mul = next(r for r in readers if r.op_type == "Mul")
                if sorted(mul.input) != sorted([name, sigmoid.output[0]]):
                    return None
                name = mul.output[0]
            elif len(readers) == 1 and readers[0].op_type in CHANNELWISE_OPS and readers[0].input[0] == name:
                name = readers[0].output[0]
            elif len(readers) == 1:
                return name, readers[0]
            else:
                return None
        return None

    def _output_map(self, node: onnx.NodeProto, channels: int) -> ChannelMap | None:
        """Where a dense convolution's output channels go; None to leave them as they are.

        Read by a channel Split: each part rounded up to the output rule.
        Added to (or multiplied with) a tensor already padded, as a residual branch is: that tensor's layout.
        Otherwise the whole rounded up to the output rule.
        """
        found = self._reader(node.output[0])
        tensor, reader = found if found else ("", None)
        sizes = self._split_sizes(reader, channels) if reader is not None and reader.op_type == "Split" else None
        if sizes is not None and sum(sizes) == channels and any(self.rule.padded_output(s) != s for s in sizes):
            layout: list[int | None] = []
            start = 0
            for size in sizes:  # a part is a residual branch's input in C2f: it must fit like a conv output
                layout += list(range(start, start + size)) + [None] * (self.rule.padded_output(size) - size)
                start += size
            return tuple(layout)
        if reader is not None and reader.op_type in ELEMENTWISE_OPS:
            other = next((self.maps[i] for i in reader.input if i != tensor and i in self.maps), None)
            if other is not None and sorted(_real(other)) == list(range(channels)):
                return other
        padded = self.rule.padded_output(channels)
        return None if padded == channels else _identity(channels) + (None,) * (padded - channels)

    def _slice_node(self, name: str, target: str) -> None:
        """Emit the node that makes `target`, `name`'s original channels in their order, from its padded tensor."""
        channel_map = self.maps[name]
        order = [channel_map.index(c) for c in range(len(_real(channel_map)))]
        if order == list(range(len(order))):
            inputs = [self.aligned[name], self._constant(f"{name}:starts", np.array([0], np.int64)),
                      self._constant(f"{name}:ends", np.array([len(order)], np.int64)),
                      self._constant(f"{name}:axes", np.array([1], np.int64))]
            self.nodes.append(helper.make_node("Slice", inputs, [target], name=self._fresh(f"{name}:unpad")))
        else:
            indices = self._constant(f"{name}:channels", np.array(order, np.int64))
            self.nodes.append(helper.make_node("Gather", [self.aligned[name], indices], [target], axis=1,
                                               name=self._fresh(f"{name}:unpad")))
        self.unpadded[name] = target
        self.report.slices.append(name)
        self.report.boundaries[name] = target

    def _original(self, name: str) -> str:
        """The tensor holding `name`'s original channels, sliced from its padded tensor the first time it is asked."""
        if name not in self.unpadded:
            self._slice_node(name, self._fresh(f"{name}{UNPADDED_SUFFIX}"))
        return self.unpadded[name]

    def _emit_padded(self, node: onnx.NodeProto, output_maps: dict[int, ChannelMap]) -> None:
        """Append `node`, its padded outputs recorded; a graph output (or a subgraph's read) is sliced back at once."""
        kept = []
        for index, channel_map in output_maps.items():
            name = node.output[index]
            if channel_map == _identity(len(channel_map)):
                continue
            self.maps[name] = channel_map
            self.aligned[name] = name
            if name in self.kept_names:
                self.aligned[name] = node.output[index] = self._fresh(f"{name}{PADDED_SUFFIX}")
                kept.append(name)
        self.nodes.append(node)
        for name in kept:
            self._slice_node(name, name)

    def _conv(self, node: onnx.NodeProto, in_map: ChannelMap | None) -> dict[int, ChannelMap] | None:
        weight_init = self.inits[node.input[1]]
        weight = numpy_helper.to_array(weight_init)
        out_channels, group_in = weight.shape[0], weight.shape[1]
        depthwise = _attr(node, "group", 1) != 1
        if depthwise:
            if in_map is None:
                return {}
            if group_in != 1:
                return None
            out_map = in_map
            new_weight = _gather_channels(weight, out_map, 0)
            _set_attr(node, "group", len(out_map))
        else:
            in_map = in_map or _identity(group_in)
            if len(_real(in_map)) != group_in:
                return None
            fits_input = len(in_map) % self.rule.input_multiple == 0  # else ConvSym is out of reach anyway
            out_map = (self._output_map(node, out_channels) if fits_input else None) or _identity(out_channels)
            new_weight = _gather_channels(_gather_channels(weight, out_map, 0), in_map, 1)
        if new_weight.shape == weight.shape and out_map == _identity(out_channels) \
                and in_map == _identity(group_in):
            return {}
        node.input[1] = self._constant(weight_init.name + PADDED_SUFFIX, new_weight)
        if len(node.input) > 2 and node.input[2]:
            bias_init = self.inits[node.input[2]]
            node.input[2] = self._constant(bias_init.name + PADDED_SUFFIX,
                                           _gather_channels(numpy_helper.to_array(bias_init), out_map, 0))
        self.report.convs[node.name or node.output[0]] = [
            [len(_real(in_map)) if depthwise else group_in, out_channels],
            [new_weight.shape[1] if not depthwise else len(out_map), new_weight.shape[0]]]
        return {0: out_map}

    def _split(self, node: onnx.NodeProto, in_map: ChannelMap) -> dict[int, ChannelMap] | None:
        real = _real(in_map)
        sizes = self._split_sizes(node, len(real))
        if sizes is None or sum(sizes) != len(real) or real != sorted(real) or len(sizes) != len(node.output):
            return None
        bounds, start = [], 0
        for size in sizes[:-1]:
            start += size
            bounds.append(in_map.index(start))  # padded channels between two parts go to the earlier one
        cuts = [0, *bounds, len(in_map)]
        out_maps, offset = {}, 0
        for index, (lo, hi) in enumerate(zip(cuts, cuts[1:])):
            out_maps[index] = tuple(None if c is None else c - offset for c in in_map[lo:hi])
            offset += sizes[index]
        new_sizes = np.array([hi - lo for lo, hi in zip(cuts, cuts[1:])], np.int64)
        _set_attr(node, "split", None)
        _set_attr(node, "num_outputs", None)
        split_input = self._constant(f"{node.name or node.output[0]}:split", new_sizes)
        if len(node.input) > 1:
            node.input[1] = split_input
        else:
            node.input.append(split_input)
        return out_maps

    def _concat(self, node: onnx.NodeProto) -> dict[int, ChannelMap] | None:
        if _attr(node, "axis") not in (1, -3):
            return None
        combined: list[int | None] = []
        offset = 0
        for name in node.input:
            channel_map = self.maps.get(name)
            if channel_map is None:
                channels = self.channels.get(name)
                if channels is None:
                    return None
                channel_map = _identity(channels)
            combined += [None if c is None else c + offset for c in channel_map]
            offset += len(_real(channel_map))
        return {0: tuple(combined)}

    def _rewrite(self, node: onnx.NodeProto) -> dict[int, ChannelMap] | None:
        """Output maps of `node` with its padded inputs read as padded, or None where it must read originals."""
        padded = [i for i, name in enumerate(node.input) if name in self.maps]
        op = node.op_type
        if node.name in self.skip:
            return None if padded else {}
        if op == "Conv" and self._paddable_conv(node) and padded in ([], [0]):
            return self._conv(node, self.maps.get(node.input[0]))
        if not padded:
            return {}
        in_map = self.maps[node.input[padded[0]]]
        if op in CHANNELWISE_OPS and padded == [0] and len(node.output) == 1:
            if op == "Resize" and not self._resize_keeps_channels(node):
                return None
            return {0: in_map}
        if op == "Split" and padded == [0]:
            return self._split(node, in_map)
        if op == "Concat":
            return self._concat(node)
        if op in ELEMENTWISE_OPS:
            others = [name for i, name in enumerate(node.input) if i not in padded]
            same = all(self.maps[node.input[i]] == in_map for i in padded)
            scalars = all(name in self.inits and np.prod(self.inits[name].dims) == 1 for name in others)
            if same and scalars:
                return {0: in_map}
        return None

    def _resize_keeps_channels(self, node: onnx.NodeProto) -> bool:
        """Resize by scales of 1 on batch and channels (its `sizes` input would name the channel count)."""
        if len(node.input) > 3 and node.input[3]:
            return False
        scales_name = node.input[2] if len(node.input) > 2 else ""
        scales = self.inits.get(scales_name)
        if scales is None:
            return False
        values = numpy_helper.to_array(scales)
        return values.size == 4 and values[0] == 1 and values[1] == 1

    def run(self) -> Alignment:
        self.channels = _known_channels(self.model)
        self.kept_names = {o.name for o in self.model.graph.output} | _subgraph_reads(self.model)
        if self.pad_image:
            self._pad_image()
        for node in self.model.graph.node:
            before = onnx.NodeProto()
            before.CopyFrom(node)
            outputs = self._rewrite(node)
            if outputs is None:
                node.CopyFrom(before)
            for i, name in enumerate(node.input):
                if name in self.maps:
                    node.input[i] = self._original(name) if outputs is None else self.aligned[name]
            if outputs is None:
                self.nodes.append(node)
            else:
                self._emit_padded(node, outputs)
        del self.model.graph.node[:]
        self.model.graph.node.extend(self.nodes)
        self.model.graph.initializer.extend(self.new_inits)
        used = {name for n in self.model.graph.node for name in n.input}
        kept = [t for t in self.model.graph.initializer if t.name in used]
        del self.model.graph.initializer[:]
        self.model.graph.initializer.extend(kept)
        del self.model.graph.value_info[:]  # shapes of padded tensors changed: inferred again downstream
        return self.report

    def _pad_image(self) -> None:
        """Pad a (N, 3, H, W) image input to 4 channels inside the graph when only dense convolutions read it."""
        graph_input = self.model.graph.input[0]
        dims = graph_input.type.tensor_type.shape.dim
        channels = dims[1].dim_value if len(dims) == 4 and dims[1].HasField("dim_value") else 0
        readers = self.consumers.get(graph_input.name, [])
        if (not channels or channels % self.rule.input_multiple == 0 or not readers
                or not all(r.op_type == "Conv" and self._paddable_conv(r) and r.input[0] == graph_input.name
                           and _attr(r, "group", 1) == 1 for r in readers)):
            return
        padded = self.rule.padded_input(channels)
        name = graph_input.name
        self.maps[name] = _identity(channels) + (None,) * (padded - channels)
        self.aligned[name] = self._fresh(f"{name}{PADDED_SUFFIX}")
        self.unpadded[name] = name  # the graph input itself
        pads = self._constant(f"{name}:pads", np.array([0, 0, 0, 0, 0, padded - channels, 0, 0], np.int64))
        self.nodes.append(helper.make_node("Pad", [name, pads], [self.aligned[name]], mode="constant",
                                           name=self._fresh(f"{name}:pad")))
        self.report.image_channels = [channels, padded]


def _subgraph_reads(model: onnx.ModelProto) -> set[str]:
    """Names that nodes inside subgraphs (If, Loop, Scan bodies) read: those must keep their original tensors."""
    reads: set[str] = set()
    for node in model.graph.node:
        for attribute in node.attribute:
            for graph in [attribute.g] if attribute.type == onnx.AttributeProto.GRAPH else list(attribute.graphs):
                for inner in graph.node:
                    reads.update(inner.input)
    return reads


def _known_channels(model: onnx.ModelProto) -> dict[str, int]:
    """Static channel counts of 4-D tensors, from onnx shape inference (for Concat inputs that are not padded)."""
    try:
        inferred = onnx.shape_inference.infer_shapes(model)
    except Exception:  # shape inference fails on some exports; those Concats are then left unpadded
        return {}
    channels = {}
    for info in [*inferred.graph.value_info, *inferred.graph.input, *inferred.graph.output]:
        dims = info.type.tensor_type.shape.dim
        if len(dims) == 4 and dims[1].HasField("dim_value"):
            channels[info.name] = dims[1].dim_value
    return channels


def align_channels(model: onnx.ModelProto, rule: ChannelRule, pad_image: bool = True,
                   skip: frozenset[str] = frozenset()) -> Alignment:
    """Pad `model`'s convolution channels to `rule` in place (exact by construction); returns what changed.

    skip: names of nodes to leave as they are (the head's float decode: nothing there runs in INT8).
    """
    return _Aligner(model, rule, pad_image, skip).run()


def _worst_excess(reference: np.ndarray, padded: np.ndarray, atol: float, rtol: float) -> tuple[float, float]:
    """(max abs difference, max of difference minus its tolerance) of one output; inf where shapes differ."""
    if reference.shape != padded.shape:
        return float("inf"), float("inf")
    if reference.size == 0:
        return 0.0, -1.0
    ref = reference.astype(np.float64)
    diff = np.abs(padded.astype(np.float64) - ref)
    rows = np.moveaxis(np.abs(ref), 1, 0).reshape(ref.shape[1], -1).max(axis=1) if ref.ndim >= 3 else np.abs(ref).max()
    scale = rows.reshape((1, -1) + (1,) * (ref.ndim - 2)) if ref.ndim >= 3 else rows
    if not np.isfinite(diff).all():
        return float("inf"), float("inf")
    return float(diff.max()), float((diff - (atol + rtol * scale)).max())


def _with_outputs(model: onnx.ModelProto, names: Sequence[str]) -> bytes:
    """`model` serialized with `names` added to its outputs (untyped: onnxruntime infers them)."""
    extended = onnx.ModelProto()
    extended.CopyFrom(model)
    present = {o.name for o in extended.graph.output}
    extended.graph.output.extend(onnx.ValueInfoProto(name=n) for n in names if n not in present)
    return extended.SerializeToString()


def _compare(model: onnx.ModelProto, padded: onnx.ModelProto, boundaries: dict[str, str],
             feeds: Sequence[dict], atol: float, rtol: float) -> tuple[float, float, float]:
    """(max abs difference at the boundaries, its worst excess over tolerance, max abs difference of the outputs)."""
    outputs = [o.name for o in model.graph.output]
    reference = inference_session(_with_outputs(model, list(boundaries)))
    candidate = inference_session(_with_outputs(padded, list(boundaries.values())))
    boundary_diff, excess, output_diff = 0.0, -1.0, 0.0
    for feed in feeds:
        ref_values = reference.run([*boundaries, *outputs], feed)
        new_values = candidate.run([*boundaries.values(), *outputs], feed)
        for index, (ref, new) in enumerate(zip(ref_values, new_values)):
            diff, over = _worst_excess(ref, new, atol, rtol)
            if index < len(boundaries):
                boundary_diff, excess = max(boundary_diff, diff), max(excess, over)
            else:
                output_diff = max(output_diff, diff)
    return boundary_diff, excess, output_diff


def aligned_copy(model: onnx.ModelProto, rule: ChannelRule, feeds: Sequence[dict], *, skip: frozenset[str] = frozenset(),
                 atol: float = CHECK_ATOL, rtol: float = CHECK_RTOL) -> tuple[onnx.ModelProto | None, dict]:
    """A copy of `model` padded to `rule` and checked against it on `feeds` (FP32, onnxruntime CPU).

    The check compares every boundary tensor: each original tensor that unchanged nodes read from a padded
    one (the padded graph's graph outputs among them). Past the boundaries both graphs run the same nodes on
    the same values; the graph outputs' own difference is recorded too (an end-to-end head's TopK can swap two
    detections whose scores differ by float rounding, so they are not held to the tolerance).
    Returns (padded model, record) when the check passes, (None, record) when nothing needed padding or the
    check failed: the record says which, what was padded and the largest differences seen.
    """
    record: dict = {"output_multiple": rule.output_multiple, "input_multiple": rule.input_multiple,
                    "min_output": rule.min_output}
    if model.ByteSize() > _PROTOBUF_LIMIT:
        return None, {**record, "status": "skipped: larger than 2 GB, too large to check in memory"}
    padded = onnx.ModelProto()
    padded.CopyFrom(model)
    alignment = align_channels(padded, rule, skip=skip)
    record.update(alignment.as_dict())
    if not alignment.changed:
        return None, {**record, "status": "unchanged: every convolution already fits"}
    try:
        boundary_diff, excess, output_diff = _compare(model, padded, alignment.boundaries, feeds, atol, rtol)
    except Exception as exc:  # onnxruntime's error types share no base class but Exception
        return None, {**record, "status": f"failed: onnxruntime cannot run the padded model: {first_line(exc)}"}
    record.update(max_abs_diff=boundary_diff, output_max_abs_diff=output_diff)
    if not excess <= 0:
        return None, {**record, "status": f"failed: padded tensors differ from the original by up to "
                                          f"{boundary_diff:.3g} on {len(feeds)} input(s), beyond float "
                                          "tolerance; left unpadded"}
    return padded, {**record, "status": "aligned"}


def _kept(array: np.ndarray, axis: int) -> list[int]:
    """Indices along `axis` that hold any non-zero value."""
    other = tuple(a for a in range(array.ndim) if a != axis)
    return [int(i) for i in np.flatnonzero(np.abs(array).max(axis=other) if other else array)]


def compact_padded_weights(model: onnx.ModelProto) -> int:
    """Store each QDQ convolution's INT8 weight without its all-zero rows and columns, in place; returns how many.

    The full tensor is rebuilt in the graph by a Pad (zero row and column at the end) and a Gather per axis
    whose zeros are not all at the end, all on constants: onnxruntime folds them into one initializer when the
    session loads, before it fuses the QDQ convolution, so the kernels and their speed are the same, while
    the file carries the model's weights and not the padding's zeros.
    """
    inits = {t.name: t for t in model.graph.initializer}
    producers = {out: node for node in model.graph.node for out in node.output}
    readers: dict[str, int] = {}
    for node in model.graph.node:
        for name in node.input:
            readers[name] = readers.get(name, 0) + 1
    rebuilt: dict[str, list[onnx.NodeProto]] = {}  # the DequantizeLinear's name -> the nodes that feed it
    removed, added = set(), []
    for conv in model.graph.node:
        dequantize = producers.get(conv.input[1]) if conv.op_type == "Conv" and len(conv.input) > 1 else None
        if dequantize is None or dequantize.op_type != "DequantizeLinear":
            continue
        name = dequantize.input[0]
        weight = numpy_helper.to_array(inits[name]) if name in inits and readers.get(name) == 1 else None
        if weight is None or weight.ndim != 4 or weight.dtype not in (np.int8, np.uint8):
            continue
        rows, cols = _kept(weight, 0), _kept(weight, 1)
        if len(rows) == weight.shape[0] and len(cols) == weight.shape[1]:
            continue
        small = weight[rows][:, cols]
        nodes, source = [], f"{name}:compact"
        added.append(numpy_helper.from_array(small, source))
        pads = [0, 0, 0, 0, 0, 0, 0, 0]
        gathers = []
        for axis, kept in ((0, rows), (1, cols)):
            if kept == list(range(len(kept))):
                pads[4 + axis] = weight.shape[axis] - len(kept)
            else:
                pads[4 + axis] = 1
                where = np.full(weight.shape[axis], len(kept), np.int32)  # the zero row/column Pad appends
                where[kept] = np.arange(len(kept), dtype=np.int32)
                gathers.append((axis, where))
        added.append(numpy_helper.from_array(np.array(pads, np.int64), f"{name}:pads"))
        outputs = [f"{name}:gather{axis}" for axis, _ in gathers][:len(gathers) - 1] + [name] if gathers else [name]
        nodes.append(helper.make_node("Pad", [source, f"{name}:pads"], [f"{name}:pad" if gathers else name],
                                      name=f"{name}:pad"))
        previous = f"{name}:pad"
        for (axis, where), output in zip(gathers, outputs):
            added.append(numpy_helper.from_array(where, f"{name}:where{axis}"))
            nodes.append(helper.make_node("Gather", [previous, f"{name}:where{axis}"], [output], axis=axis,
                                          name=f"{name}:gather{axis}"))
            previous = output
        rebuilt[dequantize.name or dequantize.output[0]] = nodes
        removed.add(name)
    if not removed:
        return 0
    ordered = []
    for node in model.graph.node:
        ordered += rebuilt.get(node.name or node.output[0], [])
        ordered.append(node)
    del model.graph.node[:]
    model.graph.node.extend(ordered)
    kept_inits = [t for t in model.graph.initializer if t.name not in removed]
    del model.graph.initializer[:]
    model.graph.initializer.extend(kept_inits + added)
    return len(removed)
