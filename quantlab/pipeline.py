"""The FP32-vs-INT8 job that both the CLI and the pytest plugin run: build, evaluate, time."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from quantlab.bench import Latency, interleaved_latency
from quantlab.datasets import check_class_names
from quantlab.description import ModelDescription
from quantlab.devices import CPU_PROVIDER, TENSORRT_PROVIDER, on_gpu
from quantlab.evaluate import EvalData, EvalResult, default_workers, evaluate_models
from quantlab.images import read_image
from quantlab.memory import MemoryUse, measure_memory
from quantlab.macs import count_macs
from quantlab.onnxmodel import ModelInfo, inspect_model, load_model, resolve_input_hw
from quantlab.peak import FP32 as FP32_PRECISION
from quantlab.peak import INT8, Peak, measure_peak
from quantlab.preprocess import letterbox
from quantlab.quantize import QuantizeResult, quantize_model
from quantlab.providers import explain_slow_int8, memcpy_nodes
from quantlab.recipes import Mode, resolve_recipe
from quantlab.sessions import ONNXRUNTIME, TENSORRT, SessionSettings
from quantlab.variant import FP32, PlannedVariant, Role


@dataclass(frozen=True)
class Variant:
    """A planned variant and its model file: FP32 as given (quantized None), or an INT8 build and how it was
    made. One file serves every runtime."""

    plan: PlannedVariant
    path: Path
    quantized: QuantizeResult | None = None

    @property
    def name(self) -> str:
        return self.plan.name

    @property
    def runtime(self) -> str:
        return self.plan.id.runtime

    @property
    def precision(self) -> str | None:
        """The precision of its MACs, as quantlab.peak names them: fp32, int8, or None (FP16)."""
        if self.quantized is None:
            return FP32_PRECISION
        return None if self.quantized.recipe.mode is Mode.FP16 else INT8


def build_variant(build: str, model_path: Path, out_dir: Path, calib_images: Sequence[Path],
                  num_calib: int | None = None, input_hw: tuple[int, int] | None = None,
                  exclude_nodes: Sequence[str] = (), providers: Sequence[str] = ()) -> tuple[Path, QuantizeResult | None]:
    """(path, None) for FP32 as given; else the model quantized with the recipe `build` (auto picked for
    `providers`; plus `exclude_nodes` kept in float) into out_dir, and how.

    A build that fails its self-check is kept (force): the gates and the report judge it.
    """
    model_path = Path(model_path)
    if build == FP32:
        return model_path, None
    recipe = resolve_recipe(build, providers=providers)
    if num_calib is not None:
        recipe = recipe.replace(num_calib=num_calib)
    if exclude_nodes:
        recipe = recipe.replace(exclude_nodes=tuple(recipe.exclude_nodes) + tuple(exclude_nodes))
    output = Path(out_dir) / f"{model_path.stem}.{build}.onnx"
    return output, quantize_model(model_path, output, recipe, calib_images, input_hw, force=True)


def probe_input(info: ModelInfo, image_path: Path, input_hw: tuple[int, int]) -> dict:
    """A fixed preprocessed input for timing: {input name: (1, 3, H, W) float32}."""
    tensor, _ = letterbox(read_image(image_path), input_hw)
    return {info.input_name: tensor}


@dataclass(frozen=True)
class JobResult:
    """Everything the report needs about one run."""

    variants: list[Variant]
    evaluations: dict[str, EvalResult]
    latencies: dict[str, Latency]
    input_hw: tuple[int, int]
    sessions: SessionSettings
    eval_source: str
    memories: dict[str, MemoryUse | None]  # None where this platform cannot measure it
    description: ModelDescription
    model_size: int  # the FP32 model's bytes, external data included
    macs: int | None  # multiply-accumulates of one inference (quantlab.macs); None where a shape is unknown
    provider_notes: dict[str, str]  # {variant: why its INT8 is slow on the device provider}; empty on CPU
    eval_seconds: float  # the evaluation's wall time: every variant on every image
    peak: Peak | None  # this CPU's GEMM peak (quantlab.peak) on the job's threads; None on a GPU provider

    @property
    def reference(self) -> Variant:
        return next(v for v in self.variants if v.plan.role is Role.REFERENCE)


def run_job(model_path: Path, out_dir: Path, plan: Sequence[PlannedVariant], calib_images: Sequence[Path],
            data: EvalData, sessions: SessionSettings = SessionSettings(), runs: int = 100,
            num_calib: int | None = None, input_hw: tuple[int, int] | None = None,
            progress: Callable[[str, int], Callable[[int], None] | None] = lambda label, total: None,
            on_variant: Callable[[Variant], None] = lambda v: None) -> JobResult:
    """Quantize every variant of `plan` (quantlab.variant.plan_variants), evaluate and time them all in this
    one process, and measure each one's onnxruntime session memory in fresh child processes.

    Each build is quantized once; its file runs on every runtime the plan names.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if any(v.id.runtime == TENSORRT for v in plan):  # its engines kept beside the models, reused by the next run
        sessions = dataclasses.replace(sessions, engine_cache=out_dir / "tensorrt-cache")
    fp32_model = load_model(model_path)
    info = inspect_model(model_path, fp32_model)
    hw = resolve_input_hw(info, input_hw)
    macs = count_macs(fp32_model, hw)
    if data.dataset is not None:
        check_class_names(data.dataset, info.description, Path(model_path))
    variants, built = [], {}
    for planned in plan:
        build = planned.id.build
        if build not in built:
            built[build] = build_variant(build, model_path, out_dir, calib_images, num_calib, input_hw,
                                         providers=planned.providers)
            if built[build][1] is not None:
                on_variant(Variant(planned, *built[build]))
        variants.append(Variant(planned, *built[build]))
    opened = {v.name: sessions.open(v.path, v.runtime) for v in variants}
    reference = next(v.name for v in variants if v.plan.role is Role.REFERENCE)
    started = time.perf_counter()
    evaluations = evaluate_models(opened, data.samples(info.description), hw, data.class_names(info.class_names),
                                  info.description, reference=reference,
                                  progress=progress("evaluate", len(data.paths)), source=data.source,
                                  workers=default_workers(sessions.threads))
    eval_seconds = time.perf_counter() - started
    feed = probe_input(info, data.paths[0], hw)
    latencies = interleaved_latency(opened, feed, runs=runs, progress=progress("benchmark", runs))
    memories = {v.name: measure_memory(v.path, hw, sessions.threads, sessions.providers)
                if v.runtime == ONNXRUNTIME else None
                for v in variants}
    notes = {v.name: note for v in variants if (note := provider_note(v, sessions))}
    peak = None if on_gpu(sessions.providers) else measure_peak(sessions.threads)
    return JobResult(variants, evaluations, latencies, hw, sessions, data.source, memories,
                     info.description, info.size_bytes, macs, notes, eval_seconds, peak)


def provider_note(variant: Variant, sessions: SessionSettings) -> str | None:
    """Why an INT8 build is slow on a device provider (the copies onnxruntime adds around the ops it runs on the
    CPU, counted in its optimised graph), or None: FP32, a float build, another runtime, or the CPU provider."""
    q = variant.quantized
    if q is None or q.recipe.mode not in (Mode.STATIC, Mode.DYNAMIC) or variant.runtime != ONNXRUNTIME \
            or sessions.providers[0] in (CPU_PROVIDER, TENSORRT_PROVIDER):  # TensorRT compiles: no graph to save
        return None
    return explain_slow_int8(sessions.providers[0], memcpy_nodes(variant.path, sessions.providers, sessions.threads))
