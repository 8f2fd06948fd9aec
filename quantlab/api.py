"""The functions of quantlab's public API (re-exported, lazily, by `quantlab`): thin calls of the same
functions the `quantlab` command runs, returning the results instead of printing them.

No public name is a module's name (quantize, evaluate, compare): importing the submodule would replace the
package attribute, so `quantlab.quantize` could be the module or the function depending on import order."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from quantlab.atomicio import refuse_overwriting_inputs, staged_folder
from quantlab.bench import Latency, check_runs, interleaved_latency
from quantlab.benchjson import newest
from quantlab.compare import Comparison, Tolerances
from quantlab.compare import compare_runs as _compare_runs
from quantlab.datasets import check_class_names, load_dataset
from quantlab.demo.shapes import write_dataset
from quantlab.errors import ConfigError, InputError
from quantlab.evaluate import EvalData, EvalResult, evaluate_models
from quantlab.gates import Budgets
from quantlab.images import list_images
from quantlab.job import input_paths, run_to_folder
from quantlab.memory import require_measurable
from quantlab.onnxmodel import inspect_model, resolve_input_hw
from quantlab.quantize import QuantizeResult
from quantlab.quantize import quantize_model as _quantize_model
from quantlab.recipes import Mode, Recipe, resolve_recipe
from quantlab.sessions import DEFAULT_PROVIDERS, ONNXRUNTIME, SessionSettings, open_session, parse_runtimes
from quantlab.variant import plan_variants

PathLike = str | os.PathLike


def _images(source: PathLike | Sequence[PathLike] | None, recursive: bool) -> list[Path]:
    """A folder's images, or the image paths given."""
    if source is None:
        return []
    if isinstance(source, (str, os.PathLike)):
        return list_images(source, recursive=recursive)
    return [Path(p) for p in source]


def quantize_model(model: PathLike, output: PathLike, recipe: str | Recipe = "auto",
                   calib: PathLike | Sequence[PathLike] | None = None, *, num_calib: int | None = None,
                   exclude: Sequence[str] = (), input_hw: tuple[int, int] | None = None, recursive: bool = False,
                   force: bool = False) -> QuantizeResult:
    """Quantize an FP32 ONNX model to INT8, as `quantlab quantize` does.

    Args:
        model: the FP32 ONNX model.
        output: where to write the INT8 model (missing folders are created; written atomically).
        recipe: a recipe name ("auto" picks by this CPU; "dynamic", "ort-default", ...) or a `Recipe`.
        calib: calibration images: a folder, or a list of image files (static recipes need them).
        num_calib: images sampled for calibration (default: the recipe's, 100).
        exclude: node names to keep in float, beside the head the recipe keeps in float.
        input_hw: letterbox size (H, W) for a model whose input size is dynamic.
        recursive: look for calibration images in sub-folders too.
        force: write the model even if it fails its self-check against FP32.

    Returns:
        QuantizeResult: output_path, recipe, float_nodes, size_bytes, size_ratio, self_check, ...

    Raises:
        InputError: the model, images or output cannot be used (ModelError, ImageError, OutputError...).
        SelfCheckError: the INT8 model disagrees with FP32 and was not written (without `force`).
    """
    chosen = resolve_recipe(recipe)
    changes = {"num_calib": num_calib} if num_calib is not None else {}
    if exclude:
        changes["exclude_nodes"] = (*chosen.exclude_nodes, *exclude)
    chosen = chosen.replace(**changes)
    if chosen.mode is Mode.STATIC and calib is None:
        raise InputError(f"{model}: the static recipe {chosen.name} needs calibration images (calib=...)")
    images = _images(calib, recursive)
    folders = [calib] if isinstance(calib, (str, os.PathLike)) else []
    refuse_overwriting_inputs(input_paths([model], folders=folders), files=[output])
    return _quantize_model(model, output, chosen, images, input_hw, force=force)


def evaluate_model(model: PathLike, data: PathLike | None = None, images: PathLike | Sequence[PathLike] | None = None,
             reference: PathLike | None = None, *, threads: int = 1, providers: Sequence[str] = DEFAULT_PROVIDERS,
             runtime: str = ONNXRUNTIME, input_hw: tuple[int, int] | None = None,
             recursive: bool = False) -> EvalResult:
    """Evaluate a model, as `quantlab eval` does: mAP against labels, and agreement and output parity
    against a reference model.

    Args:
        model: the ONNX model to evaluate (FP32 or INT8).
        data: an Ultralytics data.yaml; its val split and labels give mAP.
        images: unlabelled images (a folder or a list of files), instead of `data`; needs `reference`.
        reference: the FP32 model to compare against (agreement, parity).
        threads: intra-op threads of each session.
        providers: onnxruntime execution providers in priority order.
        runtime: "onnxruntime" or "openvino" (pip install 'quantlab-yolo[openvino]').
        input_hw: letterbox size (H, W) for a model whose input size is dynamic.
        recursive: look for images in sub-folders too.

    Returns:
        EvalResult of `model`: images, map (map50, map50_95), agreement and parity (None where not measured);
        `.as_dict()` gives them as plain values.

    Raises:
        InputError: no data, unlabelled images without a reference, or an unusable model or dataset.
    """
    if data is None and images is None:
        raise InputError(f"{model}: give data= (a data.yaml: mAP) or images= (agreement with a reference)")
    if data is None and reference is None:
        raise InputError(f"{model}: unlabelled images need reference= (the FP32 model) to compare against")
    info = inspect_model(model)
    dataset = load_dataset(data) if data is not None else None
    source = EvalData(dataset=dataset) if dataset else EvalData(images=tuple(_images(images, recursive)))
    if dataset:
        check_class_names(dataset, info.description, Path(model))
    names = [str(model)] + ([str(reference)] if reference is not None else [])
    if reference is not None:
        inspect_model(reference)
    sessions = {name: open_session(name, runtime, threads, providers) for name in dict.fromkeys(names)}
    results = evaluate_models(sessions, source.samples(info.description), resolve_input_hw(info, input_hw),
                              source.class_names(info.class_names), info.description,
                              reference=str(reference) if reference is not None else None, source=source.source)
    return results[str(model)]


def benchmark(models: Sequence[PathLike], runs: int = 100, threads: int = 1, *, warmup: int = 10,
              providers: Sequence[str] = DEFAULT_PROVIDERS,
              input_hw: tuple[int, int] | None = None) -> dict[str, Latency]:
    """Time models interleaved in this process, as `quantlab bench` does (one fixed random input).

    Args:
        models: ONNX models with the same input; the first is the one the others are compared with.
        runs: timed runs per model.
        threads: intra-op threads of each session.
        warmup: untimed runs per model first.
        providers: onnxruntime execution providers in priority order.
        input_hw: input size (H, W) for models whose input size is dynamic.

    Returns:
        {model path: Latency} in the order given; Latency has median_ms, p90_ms, p99_ms, mean_ms, runs, fps.

    Raises:
        InputError: the models have different input names, or one cannot run.
    """
    import numpy as np

    _at_least_one(runs=runs, threads=threads)
    infos = [inspect_model(m) for m in models]
    if len({i.input_name for i in infos}) > 1:
        raise InputError("the models have different input names; benchmark compares models of one input")
    sessions = {str(m): open_session(m, ONNXRUNTIME, threads, providers) for m in models}
    hw = resolve_input_hw(infos[0], input_hw)
    feed = {infos[0].input_name: np.random.default_rng(0).random((1, 3, *hw), dtype=np.float32)}
    check_runs(sessions, feed)
    return interleaved_latency(sessions, feed, runs=runs, warmup=warmup)


def run(model: PathLike | None = None, data: PathLike | None = None, images: PathLike | None = None,
        out: PathLike = "quantlab-out", recipes: Sequence[str] = ("auto",),
        contrast: Sequence[str] = ("ort-default", "dynamic"), *, calib: PathLike | None = None, num_calib: int = 100,
        runs: int = 100, threads: int = 1, providers: Sequence[str] = DEFAULT_PROVIDERS,
        runtimes: Sequence[str] = (ONNXRUNTIME,), budgets: Budgets | Mapping[str, float | None] | None = None,
        input_hw: tuple[int, int] | None = None, recursive: bool = False) -> dict:
    """The whole job, as `quantlab run` does: FP32 and its INT8 variants built, evaluated, timed, gated and
    reported into `out` (report.json, report.md, report.png with matplotlib, the models).

    Args:
        model: the FP32 ONNX model; with neither model nor data, the embedded demo on generated shapes.
        data: an Ultralytics data.yaml (mAP against its labels).
        images: unlabelled image folder instead of `data` (agreement with FP32).
        out: output folder: new, empty, or one quantlab wrote (replaced whole when the run completes).
        recipes: gated recipes ("auto", ...).
        contrast: recipes shown beside them but never gated, as `quantlab run --contrast` ("dynamic" is one;
            () for none).
        calib: calibration image folder (default: the evaluation images).
        num_calib: calibration images sampled.
        runs: timed runs per model, interleaved.
        threads: intra-op threads of every session.
        providers: onnxruntime execution providers in priority order.
        runtimes: "onnxruntime" (always: its FP32 is the reference) and optionally "openvino".
        budgets: a `Budgets`, or its limits by name ({"max_map_drop": 0.02}); the defaults otherwise.
        input_hw: letterbox size (H, W) for a model whose input size is dynamic.
        recursive: look for images in sub-folders too.

    Returns:
        The report (the content of report.json): "variants", each with its name, role, metrics and
        "failures" (the budgets it fails; empty when it passes), "fastest_accurate", "budgets", "machine", ...

    Raises:
        ConfigError: an unknown recipe, runtime or budget. InputError: unusable model, data or output folder.
    """
    recipes, contrast, runtimes = ([x] if isinstance(x, str) else list(x) for x in (recipes, contrast, runtimes))
    plan = plan_variants(recipes, contrast, parse_runtimes(",".join(runtimes)), include_dynamic=False,
                         providers=providers)
    budgets = budgets if isinstance(budgets, Budgets) else Budgets(**(budgets or {}))
    if budgets.max_memory_ratio is not None:
        require_measurable("budgets: max_memory_ratio")
    _at_least_one(runs=runs, num_calib=num_calib, threads=threads)
    report, _ = run_to_folder(out, plan, budgets, model, data, images, calib, recursive=recursive,
                              sessions=SessionSettings(threads, tuple(providers)), runs=runs, num_calib=num_calib,
                              input_hw=input_hw)
    return report


def _at_least_one(**counts: int) -> None:
    """ConfigError for a count below 1, as the CLI refuses it (before any work)."""
    for name, value in counts.items():
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ConfigError(f"{name} = {value!r}: a whole number of at least 1")


def compare_runs(baseline: PathLike, candidate: PathLike, tolerances: Tolerances = Tolerances()) -> Comparison:
    """Compare two runs saved by the quantlab pytest suite (pytest-benchmark JSON), as `quantlab compare` does.

    Args:
        baseline: a pytest-benchmark JSON file, or a storage folder (its newest run).
        candidate: the run judged against it, the same way.
        tolerances: how far each metric may move before it counts as a regression.

    Returns:
        Comparison: `rows` (one per variant and metric), `regressions` (the rows that failed), `judged`
        (whether any gated metric could be compared).

    Raises:
        InputError: a file that is not a quantlab run, or a folder without one.
    """
    return _compare_runs(newest(baseline), newest(candidate), tolerances)


def demo_data(folder: PathLike, splits: Sequence[str] = ("val", "calib"), *, task: str = "detect",
              seed: int = 0) -> Path:
    """Write the demo shapes dataset (Ultralytics layout), as `quantlab demo-data` does.

    Args:
        folder: a new or empty folder (or one this wrote before: it is replaced whole).
        splits: of "train" (1000 images), "val" (200) and "calib" (600).
        task: the labels' format: "detect", "segment", "pose" or "obb" (the images are the same).
        seed: the generator's seed.

    Returns:
        The data.yaml's path.
    """
    out_dir = Path(os.path.abspath(folder))
    with staged_folder(out_dir, "demo-data") as stage:
        data_yaml = write_dataset(stage, seed=seed, splits=tuple(splits), task=task)
    return out_dir / data_yaml.name
