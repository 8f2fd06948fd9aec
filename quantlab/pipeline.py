"""The FP32-vs-INT8 job that both the CLI and the pytest plugin run: build, evaluate, time."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from quantlab.bench import Latency, interleaved_latency
from quantlab.datasets import Dataset, check_class_names
from quantlab.description import ModelDescription
from quantlab.errors import ConfigError
from quantlab.evaluate import EvalResult, evaluate_models, labelled_samples, unlabelled_samples
from quantlab.images import read_image
from quantlab.memory import MemoryUse, measure_memory
from quantlab.onnxmodel import inspect_model, resolve_input_hw
from quantlab.preprocess import letterbox
from quantlab.quantize import QuantizeResult, quantize_model
from quantlab.recipes import resolve_recipe
from quantlab.sessions import ONNXRUNTIME, open_session

FP32 = "fp32"
DYNAMIC = "dynamic"


@dataclass(frozen=True)
class Variant:
    """One model in the comparison: FP32 (quantized is None) or an INT8 build, and the runtime that runs it."""

    name: str
    path: Path
    quantized: QuantizeResult | None = None
    runtime: str = ONNXRUNTIME


def variant_name(build: str, runtime: str = ONNXRUNTIME) -> str:
    """'auto' on onnxruntime, 'auto@openvino' on another runtime: one name per (build, runtime)."""
    return build if runtime == ONNXRUNTIME else f"{build}@{runtime}"


def split_variant(name: str) -> tuple[str, str]:
    """'auto@openvino' -> ('auto', 'openvino'); 'auto' -> ('auto', 'onnxruntime')."""
    build, _, runtime = name.partition("@")
    return build, runtime or ONNXRUNTIME


def variant_names(recipe_names: Sequence[str], include_dynamic: bool = True,
                  runtimes: Sequence[str] = (ONNXRUNTIME,)) -> list[str]:
    """fp32 first, then each recipe, then dynamic (once), on onnxruntime; then fp32 and each recipe
    on every other runtime (dynamic's ConvInteger is onnxruntime's contrast, not repeated). A recipe
    made for some runtimes only (Recipe.runtimes) runs on those; one that none of `runtimes` fits is an error."""
    recipes = list(dict.fromkeys(recipe_names))
    check_recipes_fit(recipes, runtimes)
    names = [FP32, *(n for n in recipes if _fits(n, ONNXRUNTIME))]
    if include_dynamic and DYNAMIC not in names:
        names.append(DYNAMIC)
    for runtime in dict.fromkeys(runtimes):
        if runtime != ONNXRUNTIME:
            names += [variant_name(n, runtime) for n in [FP32, *recipes] if n != DYNAMIC and _fits(n, runtime)]
    return names


def check_recipes_fit(recipe_names: Sequence[str], runtimes: Sequence[str]) -> None:
    """ConfigError for a recipe made for some runtimes only (Recipe.runtimes) when none of them is in `runtimes`."""
    for name in recipe_names:
        made_for = resolve_recipe(name).runtimes
        if made_for and not set(made_for) & set(runtimes):
            raise ConfigError(f"recipe {name!r} is made for {', '.join(made_for)}, which is not among the "
                              f"runtimes ({', '.join(runtimes)}): add {made_for[0]}")


def _fits(name: str, runtime: str) -> bool:
    return name == FP32 or not resolve_recipe(name).runtimes or runtime in resolve_recipe(name).runtimes


def build_variant(build: str, model_path: Path, out_dir: Path, calib_images: Sequence[Path],
                  num_calib: int | None = None, input_hw: tuple[int, int] | None = None,
                  exclude_nodes: Sequence[str] = ()) -> Variant:
    """FP32 as given, or the model quantized with the recipe `build` (plus `exclude_nodes` kept in
    float) into out_dir, on onnxruntime; dataclasses.replace gives it another runtime, as one file
    serves every runtime.

    A build that fails its self-check is kept (force): the gates and the report judge it.
    """
    model_path = Path(model_path)
    if build == FP32:
        return Variant(build, model_path)
    recipe = resolve_recipe(build)
    if num_calib is not None:
        recipe = recipe.replace(num_calib=num_calib)
    if exclude_nodes:
        recipe = recipe.replace(exclude_nodes=tuple(recipe.exclude_nodes) + tuple(exclude_nodes))
    output = Path(out_dir) / f"{model_path.stem}.{build}.onnx"
    return Variant(build, output, quantize_model(model_path, output, recipe, calib_images, input_hw, force=True))


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
    description: ModelDescription


def run_job(model_path: Path, out_dir: Path, recipe_names: Sequence[str], calib_images: Sequence[Path],
            dataset: Dataset | None = None, eval_images: Sequence[Path] = (), threads: int = 1,
            runs: int = 100, providers: Sequence[str] = ("CPUExecutionProvider",),
            runtimes: Sequence[str] = (ONNXRUNTIME,),
            num_calib: int | None = None, input_hw: tuple[int, int] | None = None,
            progress: Callable[[str, int], Callable[[int], None] | None] = lambda label, total: None,
            on_variant: Callable[[Variant], None] = lambda v: None) -> JobResult:
    """Quantize every variant, evaluate and time them all in this one process, and measure each
    one's onnxruntime session memory in fresh child processes.

    Each recipe is quantized once; its file runs on every runtime in `runtimes` (see variant_names).

    Evaluation uses `dataset` (labels: mAP) or else `eval_images` (agreement and parity only).
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    info = inspect_model(model_path)
    hw = resolve_input_hw(info, input_hw)
    if dataset is not None:
        check_class_names(dataset, info.description, Path(model_path))
    variants, built = [], {}
    for name in variant_names(recipe_names, runtimes=runtimes):
        build, runtime = split_variant(name)
        if build not in built:
            built[build] = build_variant(build, model_path, out_dir, calib_images, num_calib, input_hw)
            on_variant(built[build])
        variants.append(dataclasses.replace(built[build], name=name, runtime=runtime))
    sessions = {v.name: open_session(v.path, v.runtime, threads, providers) for v in variants}
    if dataset is not None:
        samples: Iterable = labelled_samples(dataset, info.description)
        names, total, source = dataset.names, len(dataset.images), str(dataset.yaml_path)
    else:
        samples = unlabelled_samples(eval_images)
        names, total, source = info.class_names, len(eval_images), str(Path(eval_images[0]).parent)
    evaluations = evaluate_models(sessions, samples, hw, names, info.description, reference=FP32, progress=progress("evaluate", total),
                                  source=source)
    feed = probe_input(model_path, (dataset.images if dataset else eval_images)[0], input_hw)
    latencies = interleaved_latency(sessions, feed, runs=runs, progress=progress("benchmark", runs))
    memories = {v.name: measure_memory(v.path, hw, threads, providers) if v.runtime == ONNXRUNTIME else None
                for v in variants}
    return JobResult(variants, evaluations, latencies, hw, threads, tuple(providers), source, memories,
                     info.description)
