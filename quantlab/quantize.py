"""Static and dynamic INT8 quantization, and FP16 conversion, with staging and atomic writes; nothing else writes
models.

Everything onnxruntime touches lives in a private ASCII-named staging folder, so its C++ file
I/O (the `<stem>-inferred.onnx` copy) never meets the user's path; the result reaches the
destination through Python I/O, as a temporary file in the same folder renamed into place,
and only after it has passed its self-check against the FP32 model (quantlab.verify).
"""

from __future__ import annotations

import json
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

from quantlab import __version__, ortcompat
from quantlab.align import ChannelRule, aligned_copy, compact_padded_weights
from quantlab.atomicio import atomic_write_bytes, check_output_file, sha256_file, temp_folder
from quantlab.calibration import ImageCalibrationReader, sample_digest, sample_images, split_sample
from quantlab.errors import CompatibilityError, ImageError, QuantizationError, SelfCheckError
from quantlab.half import half_model
from quantlab.head import float_nodes, name_unnamed_nodes, softmax_before_transpose, yolo_head_pass
from quantlab.onnxmodel import (ModelInfo, check_quantizable, external_data_files, inspect_model, load_model,
                                resolve_input_hw)
from quantlab.recipes import Mode, Recipe
from quantlab.verify import CHECK_IMAGES, SelfCheck, self_check

METADATA_PREFIX = "quantlab."
_PROTOBUF_LIMIT = 2**31 - 1
MIN_OPSET = 13  # per-axis (per-channel) QuantizeLinear/DequantizeLinear arrived in opset 13


@dataclass(frozen=True)
class QuantizeResult:
    """What a quantization produced and how."""

    output_path: Path
    recipe: Recipe
    float_nodes: tuple[str, ...]
    num_calib: int  # images that calibrated it (0 for dynamic and fp16)
    size_bytes: int
    source_size_bytes: int
    seconds: float
    metadata: dict[str, str] = field(repr=False)
    self_check: SelfCheck | None = None

    @property
    def size_ratio(self) -> float:
        return self.size_bytes / self.source_size_bytes


def raise_opset(model: onnx.ModelProto, path: Path) -> tuple[onnx.ModelProto, str | None]:
    """The model at opset 13 or later (onnx's version converter), and 'old->new' when converted."""
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), MIN_OPSET)
    if opset >= MIN_OPSET:
        return model, None
    try:
        converted = onnx.version_converter.convert_version(model, MIN_OPSET)
    except Exception as exc:  # the converter raises RuntimeError or its own C++ errors
        raise QuantizationError(f"{path}: opset {opset} is too old for per-channel quantization and onnx's "
                                f"version converter could not raise it to {MIN_OPSET}: {exc}; "
                                f"re-export with opset >= {MIN_OPSET}") from exc
    return converted, f"{opset}->{MIN_OPSET}"


def stage_model(model: onnx.ModelProto, stage: Path, name: str = "model.onnx") -> Path:
    """Save `model` as stage/name with Python I/O (external data beside it past 2 GB)."""
    staged = stage / name
    _save_model(model, staged)
    return staged


def _save_model(model: onnx.ModelProto, path: Path) -> None:
    """Save with Python I/O; past protobuf's 2 GB the weights go to an external-data file beside it."""
    large = model.ByteSize() > _PROTOBUF_LIMIT
    onnx.save_model(model, str(path), save_as_external_data=large, location=f"{path.stem}.data" if large else None)


def _fix_degenerate_scales(model: onnx.ModelProto) -> int:
    """Zero or non-finite quantization scales (all-zero pruned channels) -> 1.0; returns how many."""
    scale_inputs = {n.input[1] for n in model.graph.node
                    if n.op_type in ("QuantizeLinear", "DequantizeLinear") and len(n.input) > 1}
    fixed = 0
    for tensor in model.graph.initializer:
        if tensor.name not in scale_inputs:
            continue
        values = numpy_helper.to_array(tensor)
        bad = ~np.isfinite(values) | (values <= 0)
        if bad.any():
            fixed += int(bad.sum())
            values = np.where(bad, np.ones_like(values), values)
            tensor.CopyFrom(numpy_helper.from_array(values.astype(values.dtype), tensor.name))
    return fixed


def _sort_value_info(model: onnx.ModelProto) -> None:
    """Shape annotations in name order: onnxruntime < 1.20 emits them in set order, which varies."""
    ordered = sorted(model.graph.value_info, key=lambda v: v.name)
    del model.graph.value_info[:]
    model.graph.value_info.extend(ordered)


def build_metadata(recipe: Recipe, kept_float: Sequence[str], calib: dict | None, source_sha256: str,
                   opset_change: str | None = None, alignment: dict | None = None) -> dict:
    """The metadata_props quantlab records: no timestamps, so equal inputs give equal bytes."""
    return {
        **({f"{METADATA_PREFIX}opset_converted": opset_change} if opset_change else {}),
        **({f"{METADATA_PREFIX}alignment": json.dumps(alignment, sort_keys=True)} if alignment else {}),
        f"{METADATA_PREFIX}version": __version__,
        f"{METADATA_PREFIX}onnxruntime": ortcompat.ORT_VERSION,
        f"{METADATA_PREFIX}onnx": onnx.__version__,
        f"{METADATA_PREFIX}recipe": json.dumps(recipe.settings(), sort_keys=True),
        f"{METADATA_PREFIX}float_nodes": json.dumps(sorted(kept_float)),
        f"{METADATA_PREFIX}calibration": json.dumps(calib or {"num_images": 0}, sort_keys=True),
        f"{METADATA_PREFIX}source_sha256": source_sha256,
    }


def read_metadata(path: str | Path) -> dict[str, str]:
    """quantlab's metadata_props of a model, without the prefix."""
    model = onnx.load(str(path), load_external_data=False)
    return {p.key[len(METADATA_PREFIX):]: p.value for p in model.metadata_props
            if p.key.startswith(METADATA_PREFIX)}


def _check_feeds(check_images: Sequence[Path], reader: ImageCalibrationReader | None, input_name: str,
                 input_hw: tuple[int, int]) -> tuple[list[dict], bool]:
    """(feeds, held_out): the preprocessed images the self-check judges on, and whether they were kept
    out of calibration; the calibration sample's first images only when no held-out image decodes."""
    feeds = _feeds(ImageCalibrationReader(check_images, input_name, input_hw, len(check_images), seed=0)) \
        if check_images else []
    if feeds or reader is None:
        return feeds, bool(feeds)
    return _feeds(reader), False


def _feeds(reader: ImageCalibrationReader) -> list[dict]:
    reader.rewind()
    feeds = []
    while len(feeds) < CHECK_IMAGES and (feed := reader.get_next()) is not None:
        feeds.append(feed)
    return feeds


def _random_feed(input_name: str, input_hw: tuple[int, int], seed: int) -> dict:
    """A seeded uniform image in [0, 1): alignment must hold for any input, not only the folder's images."""
    image = np.random.default_rng(seed).random((1, 3, *input_hw), dtype=np.float32)
    return {input_name: image}


def _stage_aligned(model_path: Path, model: onnx.ModelProto, staged: Path, recipe: Recipe, input_hw: tuple[int, int],
                   feeds: list[dict]) -> tuple[Path, dict]:
    """(the model file to quantize, the alignment record): the channel-padded copy when it passed its exactness
    check on `feeds`, the staged original otherwise (the record says why). The head's float decode is left as is."""
    head = frozenset(yolo_head_pass(model, input_hw)[1]) if recipe.keep_head_float else frozenset()
    padded, record = aligned_copy(model, ChannelRule(recipe.align_channels), feeds, skip=head)
    if padded is None:
        if record["status"].startswith("failed"):
            warnings.warn(f"{model_path}: channel alignment {record['status']}", UserWarning, stacklevel=3)
        return staged, record
    return stage_model(padded, staged.parent, "aligned.onnx"), record


def _failure_cause(recipe: Recipe, prepared: onnx.ModelProto, input_hw: tuple[int, int], info: ModelInfo) -> str:
    """The likeliest reason an INT8 or FP16 model disagrees with FP32, in words."""
    if recipe.mode is Mode.FP16:
        return ("a layer's values overflow or lose too much in half precision (keep it in float32 with "
                "--exclude NODE ...)")
    head = yolo_head_pass(prepared, input_hw)[1]
    if head & set(recipe.include_nodes):
        return (f"--include quantized head node(s) {', '.join(sorted(head & set(recipe.include_nodes))[:3])}: one "
                "INT8 scale then spans box pixels and class probabilities")
    if not recipe.keep_head_float:
        return (f"recipe '{recipe.name}' quantizes the detection head: one INT8 scale spans box pixels and "
                "class probabilities (use recipe auto)")
    if not head:
        return (f"the YOLO head was not found, so it was quantized (outputs seen: {', '.join(info.output_names)}; "
                "keep it in float with --exclude NODE ...)")
    return "the quantized layers lose too much (try quantlab tune, or --exclude the most sensitive layers)"


def quantize_model(model_path: str | Path, output_path: str | Path, recipe: Recipe,
                   calib_images: Sequence[Path] = (), input_hw: tuple[int, int] | None = None,
                   force: bool = False) -> QuantizeResult:
    """Quantize `model_path` to `output_path` with `recipe`.

    calib_images: candidate image files (static mode); recipe.num_calib of them are sampled
    with recipe.seed. The result is written only if it passes its self-check against FP32
    (raises SelfCheckError), or with `force` (the check is still recorded in the result).
    Raises a QuantlabError subclass naming the file and cause on bad input.
    """
    started = time.perf_counter()
    model_path, output_path = Path(model_path), Path(output_path)
    model = load_model(model_path)
    info = inspect_model(model_path, model)
    check_quantizable(model, model_path)
    check_output_file(output_path, inputs=[model_path, *external_data_files(model_path)])
    hw = resolve_input_hw(info, input_hw)
    reader = None  # dynamic and fp16: nothing calibrates, so any of the images can judge
    check_images = sample_images(calib_images, CHECK_IMAGES, recipe.seed) if calib_images else []
    if recipe.mode is Mode.STATIC:
        if not calib_images:
            raise ImageError(f"{model_path}: static quantization needs calibration images (--calib DIR)")
        calib_sample, check_images = split_sample(calib_images, recipe.num_calib, CHECK_IMAGES, recipe.seed)
        reader = ImageCalibrationReader(calib_sample, info.input_name, hw, recipe.num_calib, recipe.seed)
        if reader.get_next() is None:
            raise ImageError(f"none of the {len(reader)} sampled calibration images could be decoded "
                             f"(first: {reader.paths[0]})")
        reader.rewind()
    model, opset_change = raise_opset(model, model_path)
    softmax_before_transpose(model)  # exact, and faster on onnxruntime (the YOLOv8 DFL)

    with temp_folder("quantlab-") as stage_dir:
        stage = Path(stage_dir)
        staged = stage_model(model, stage)
        to_prepare, alignment = staged, None
        feeds, held_out = None, False
        if recipe.align_channels:
            feeds, held_out = _check_feeds(check_images, reader, info.input_name, hw)
            if reader is not None:
                reader.rewind()
            to_prepare, alignment = _stage_aligned(model_path, model, staged, recipe, hw,
                                                   [*feeds, _random_feed(info.input_name, hw, recipe.seed)])
        prepared = stage / "prepared.onnx"
        try:
            ortcompat.pre_process(str(to_prepare), str(prepared))
        except Exception as exc:
            raise QuantizationError(f"{model_path}: onnxruntime's quant_pre_process failed: {exc}") from exc
        prepared_model = onnx.load(str(prepared))
        if name_unnamed_nodes(prepared_model):
            _save_model(prepared_model, prepared)
        kept_float = float_nodes(prepared_model, recipe, hw)
        quantized = stage / "quantized.onnx"
        try:
            if recipe.mode is Mode.FP16:
                halved, kept_float = half_model(prepared_model, kept_float)
                _save_model(halved, quantized)
            elif reader is not None:
                ortcompat.quantize_static(str(prepared), str(quantized), reader, recipe, kept_float)
            else:
                ortcompat.quantize_dynamic(str(prepared), str(quantized), recipe, kept_float)
        except CompatibilityError:
            raise
        except Exception as exc:
            raise QuantizationError(f"{model_path}: onnxruntime failed to quantize with recipe "
                                    f"'{recipe.name}': {type(exc).__name__}: {exc}") from exc
        result_model = onnx.load(str(quantized))
        _fix_degenerate_scales(result_model)
        if to_prepare != staged:
            compact_padded_weights(result_model)
        _sort_value_info(result_model)
        calib = None
        if reader is not None:
            calib = {"num_images": reader.used, "sha256": sample_digest(reader.paths), "seed": recipe.seed,
                     "candidates": len(calib_images)}
        metadata = build_metadata(recipe, sorted(kept_float), calib, sha256_file(model_path), opset_change,
                                  alignment)
        onnx.helper.set_model_props(result_model, {
            **{p.key: p.value for p in result_model.metadata_props}, **metadata})
        result_bytes = result_model.SerializeToString()
        checked = stage / "checked.onnx"
        checked.write_bytes(result_bytes)
        try:
            if feeds is None:
                feeds, held_out = _check_feeds(check_images, reader, info.input_name, hw)
            check = self_check(staged, checked, feeds, info.description, held_out)
        except QuantizationError as exc:
            raise QuantizationError(f"{model_path}: the quantized model is unusable, so it was not written: "
                                    f"{exc}") from exc
    if not check.passed and not force:
        precision = "FP16" if recipe.mode is Mode.FP16 else "INT8"
        raise SelfCheckError(f"{model_path}: the {precision} model disagrees with FP32 ({check.summary()}), so it was "
                             f"not written: {_failure_cause(recipe, prepared_model, hw, info)}; --force writes it anyway")
    atomic_write_bytes(output_path, result_bytes)
    return QuantizeResult(
        output_path=output_path, recipe=recipe, float_nodes=tuple(sorted(kept_float)),
        num_calib=calib["num_images"] if calib else 0, size_bytes=output_path.stat().st_size,
        source_size_bytes=info.size_bytes, seconds=time.perf_counter() - started, metadata=metadata,
        self_check=check,
    )
