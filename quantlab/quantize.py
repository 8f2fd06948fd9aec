"""Static and dynamic INT8 quantization with staging and atomic writes; nothing else writes models.

Everything onnxruntime touches lives in a private ASCII-named staging folder, so its C++ file
I/O (the `<stem>-inferred.onnx` copy) never meets the user's path; the result reaches the
destination through Python I/O, as a temporary file in the same folder renamed into place.
"""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

from quantlab import __version__, ortcompat
from quantlab.atomicio import atomic_write_bytes, check_writable, sha256_file
from quantlab.calibration import ImageCalibrationReader, sample_digest
from quantlab.errors import CompatibilityError, ImageError, OutputError, QuantizationError
from quantlab.head import float_nodes
from quantlab.onnxmodel import inspect_model, load_model, resolve_input_hw
from quantlab.recipes import Mode, Recipe

METADATA_PREFIX = "quantlab."
_PROTOBUF_LIMIT = 2**31 - 1


@dataclass(frozen=True)
class QuantizeResult:
    """What a quantization produced and how."""

    output_path: Path
    recipe: Recipe
    float_nodes: tuple[str, ...]
    num_calib: int  # images that calibrated it (0 for dynamic)
    size_bytes: int
    source_size_bytes: int
    seconds: float
    metadata: dict[str, str] = field(repr=False)

    @property
    def size_ratio(self) -> float:
        return self.size_bytes / self.source_size_bytes


def stage_model(model: onnx.ModelProto, stage: Path) -> Path:
    """Save `model` as stage/model.onnx with Python I/O (external data beside it past 2 GB)."""
    staged = stage / "model.onnx"
    large = model.ByteSize() > _PROTOBUF_LIMIT
    onnx.save_model(model, str(staged), save_as_external_data=large, location="model.data" if large else None)
    return staged


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


def build_metadata(recipe: Recipe, kept_float: Sequence[str], calib: dict | None, source_sha256: str) -> dict:
    """The metadata_props quantlab records: no timestamps, so equal inputs give equal bytes."""
    return {
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


def quantize_model(model_path: str | Path, output_path: str | Path, recipe: Recipe,
                   calib_images: Sequence[Path] = (), input_hw: tuple[int, int] | None = None) -> QuantizeResult:
    """Quantize `model_path` to `output_path` with `recipe`.

    calib_images: candidate image files (static mode); recipe.num_calib of them are sampled
    with recipe.seed. Raises a QuantlabError subclass naming the file and cause on bad input.
    """
    started = time.perf_counter()
    model_path, output_path = Path(model_path), Path(output_path)
    model = load_model(model_path)
    info = inspect_model(model_path, model)
    if output_path.resolve() == model_path.resolve():
        raise OutputError(f"{output_path}: refusing to overwrite the input model; choose another output path")
    check_writable(output_path)
    reader = None
    if recipe.mode is Mode.STATIC:
        if not calib_images:
            raise ImageError(f"{model_path}: static quantization needs calibration images (--calib DIR)")
        reader = ImageCalibrationReader(calib_images, info.input_name, resolve_input_hw(info, input_hw),
                                        recipe.num_calib, recipe.seed)
        if reader.get_next() is None:
            raise ImageError(f"none of the {len(reader)} sampled calibration images could be decoded "
                             f"(first: {reader.paths[0]})")
        reader.rewind()

    with tempfile.TemporaryDirectory(prefix="quantlab-") as stage_dir:
        stage = Path(stage_dir)
        staged = stage_model(model, stage)
        prepared = stage / "prepared.onnx"
        try:
            ortcompat.pre_process(str(staged), str(prepared))
        except Exception as exc:
            raise QuantizationError(f"{model_path}: onnxruntime's quant_pre_process failed: {exc}") from exc
        kept_float = float_nodes(onnx.load(str(prepared)), recipe)
        quantized = stage / "quantized.onnx"
        try:
            if reader is not None:
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
    _sort_value_info(result_model)
    calib = None
    if reader is not None:
        calib = {"num_images": reader.used, "sha256": sample_digest(reader.paths), "seed": recipe.seed,
                 "candidates": len(calib_images)}
    metadata = build_metadata(recipe, sorted(kept_float), calib, sha256_file(model_path))
    onnx.helper.set_model_props(result_model, {
        **{p.key: p.value for p in result_model.metadata_props}, **metadata})
    atomic_write_bytes(output_path, result_model.SerializeToString())
    return QuantizeResult(
        output_path=output_path, recipe=recipe, float_nodes=tuple(sorted(kept_float)),
        num_calib=calib["num_images"] if calib else 0, size_bytes=output_path.stat().st_size,
        source_size_bytes=info.size_bytes, seconds=time.perf_counter() - started, metadata=metadata,
    )
