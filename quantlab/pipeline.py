"""The FP32-vs-INT8 job that both the CLI and the pytest plugin run: build, evaluate, time."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from quantlab.bench import Latency, interleaved_latency, make_session
from quantlab.datasets import Dataset, check_class_names
from quantlab.evaluate import EvalResult, evaluate_models, labelled_samples, unlabelled_samples
from quantlab.images import read_image
from quantlab.memory import MemoryUse, measure_memory
from quantlab.onnxmodel import inspect_model, resolve_input_hw
from quantlab.preprocess import letterbox
from quantlab.quantize import QuantizeResult, quantize_model
from quantlab.recipes import resolve_recipe

FP32 = "fp32"
DYNAMIC = "dynamic"


@dataclass(frozen=True)
class Variant:
    """One model in the comparison: FP32 (quantized is None) or an INT8 build."""

    name: str
    path: Path
    quantized: QuantizeResult | None = None


def variant_names(recipe_names: Sequence[str], include_dynamic: bool = True) -> list[str]:
    """fp32 first, then each recipe, then dynamic (once)."""
    names = [FP32, *dict.fromkeys(recipe_names)]
    if include_dynamic and DYNAMIC not in names:
        names.append(DYNAMIC)
    return names


def build_variant(name: str, model_path: Path, out_dir: Path, calib_images: Sequence[Path],
                  num_calib: int | None = None, input_hw: tuple[int, int] | None = None,
                  exclude_nodes: Sequence[str] = ()) -> Variant:
    """FP32 as given, or the model quantized with the recipe called `name` (plus `exclude_nodes`
    kept in float) into out_dir.

    A build that fails its self-check is kept (force): the gates and the report judge it.
    """
    model_path = Path(model_path)
    if name == FP32:
        return Variant(FP32, model_path)
    recipe = resolve_recipe(name)
    if num_calib is not None:
        recipe = recipe.replace(num_calib=num_calib)
    if exclude_nodes:
        recipe = recipe.replace(exclude_nodes=tuple(recipe.exclude_nodes) + tuple(exclude_nodes))
    output = Path(out_dir) / f"{model_path.stem}.{name}.onnx"
    return Variant(name, output, quantize_model(model_path, output, recipe, calib_images, input_hw, force=True))


def probe_input(model_path: Path, image_path: Path, input_hw: tuple[int, int] | None = None) -> dict:
    """A fixed preprocessed input for timing: {input name: (1, 3, H, W) float32}."""
    info = inspect_model(model_path)
    tensor, _ = letterbox(read_image(image_path), resolve_input_hw(info, input_hw))
    return {info.input_name: tensor}


@dataclass(frozen=True)
class JobResult:
    """Everything the report needs about one run."""

    variants: list[Variant]
    evaluations: dict[str, EvalResult]
    latencies: dict[str, Latency]
    input_hw: tuple[int, int]
    threads: int
    providers: tuple[str, ...]
    eval_source: str
    memories: dict[str, MemoryUse | None]  # None where this platform cannot measure it


def run_job(model_path: Path, out_dir: Path, recipe_names: Sequence[str], calib_images: Sequence[Path],
            dataset: Dataset | None = None, eval_images: Sequence[Path] = (), threads: int = 1,
            runs: int = 100, providers: Sequence[str] = ("CPUExecutionProvider",),
            num_calib: int | None = None, input_hw: tuple[int, int] | None = None,
            progress: Callable[[str, int], Callable[[int], None] | None] = lambda label, total: None,
            on_variant: Callable[[Variant], None] = lambda v: None) -> JobResult:
    """Quantize every variant, evaluate and time them all in this one process, and measure each
    one's session memory in fresh child processes.

    Evaluation uses `dataset` (labels: mAP) or else `eval_images` (agreement and parity only).
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    info = inspect_model(model_path)
    hw = resolve_input_hw(info, input_hw)
    if dataset is not None:
        check_class_names(dataset, info.class_names, Path(model_path))
    variants = []
    for name in variant_names(recipe_names):
        variant = build_variant(name, model_path, out_dir, calib_images, num_calib, input_hw)
        on_variant(variant)
        variants.append(variant)
    sessions = {v.name: make_session(v.path, threads, providers) for v in variants}
    if dataset is not None:
        samples: Iterable = labelled_samples(dataset)
        names, total, source = dataset.names, len(dataset.images), str(dataset.yaml_path)
    else:
        samples = unlabelled_samples(eval_images)
        names, total, source = info.class_names, len(eval_images), "images"
    evaluations = evaluate_models(sessions, samples, hw, names, reference=FP32, progress=progress("evaluate", total),
                                  source=source if dataset is not None else str(Path(eval_images[0]).parent))
    feed = probe_input(model_path, (dataset.images if dataset else eval_images)[0], input_hw)
    latencies = interleaved_latency(sessions, feed, runs=runs, progress=progress("benchmark", runs))
    memories = {v.name: measure_memory(v.path, hw, threads, providers) for v in variants}
    return JobResult(variants, evaluations, latencies, hw, threads, tuple(providers), source, memories)
