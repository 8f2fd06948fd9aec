"""The whole job into one output folder: FP32 and its variants built, evaluated, timed and reported, the
folder replaced whole when it completes. `quantlab run` and `quantlab.run` both call `run_to_folder`."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence
from contextlib import suppress
from pathlib import Path

from quantlab.atomicio import refuse_overwriting_inputs, staged_folder
from quantlab.datasets import Dataset, label_path, load_dataset
from quantlab.demo import DEMO_MODEL
from quantlab.demo.shapes import write_dataset
from quantlab.errors import InputError
from quantlab.evaluate import EvalData
from quantlab.gates import Budgets
from quantlab.images import list_images
from quantlab.onnxmodel import external_data_files
from quantlab.pipeline import run_job
from quantlab.report import build_report, write_report
from quantlab.sessions import SessionSettings
from quantlab.variant import FP32, PlannedVariant

Progress = Callable[[str, int], Callable[[int], None] | None]


def input_paths(models: Iterable[str | Path | None], dataset: Dataset | None = None,
                folders: Iterable[str | Path | None] = ()) -> list[Path]:
    """Every path a job reads, which no output may be or lie in: each model and its external-data files, the
    image folders, the data.yaml and the folders of its images and labels."""
    paths = []
    for model in (Path(m) for m in models if m):
        paths.append(model)
        with suppress(Exception):  # an unreadable model is refused, in its own words, when it is loaded
            paths += external_data_files(model)
    paths += [Path(folder) for folder in folders if folder]
    if dataset is not None:
        paths.append(Path(dataset.yaml_path))
        paths += sorted({p.parent for p in dataset.images} | {label_path(p).parent for p in dataset.images})
    return paths


def eval_data(dataset: Dataset | None, images: str | Path | None, recursive: bool = False) -> EvalData:
    """What to evaluate on: the labelled dataset, else the image folder (exactly one of them)."""
    if dataset is not None:
        return EvalData(dataset=dataset)
    if images:
        return EvalData(images=tuple(list_images(images, recursive=recursive)))
    raise InputError("give --data data.yaml (labels: mAP) or --images DIR (agreement with FP32)")


def run_to_folder(out_dir: str | Path, plan: Sequence[PlannedVariant], budgets: Budgets,
                  model: str | Path | None = None, data: str | Path | Dataset | None = None,
                  images: str | Path | None = None, calib: str | Path | None = None, *, recursive: bool = False,
                  sessions: SessionSettings = SessionSettings(), runs: int = 100,
                  num_calib: int | None = None, input_hw: tuple[int, int] | None = None,
                  progress: Progress = lambda label, total: None,
                  say: Callable[[str], None] = lambda text: None,
                  step: Callable[[str], None] = lambda text: None) -> tuple[dict, dict[str, Path]]:
    """Run the job of `plan` (quantlab.variant.plan_variants) and write its report and models into `out_dir`.

    Without a model and data, the embedded demo model on generated shapes (written into the folder too).
    `say` tells what was made; `step` what starts, for the quantizations that show no progress bar.
    Returns the report and the files written, by kind ("json", "markdown", "chart"), at their final paths.
    Raises OutputError when an output would overwrite or mix into an input, InputError without data.
    """
    out_dir = Path(os.path.abspath(out_dir))
    model_path = Path(model) if model else DEMO_MODEL
    dataset = load_dataset(data) if isinstance(data, (str, Path)) else data
    refuse_overwriting_inputs(input_paths([model_path], dataset, [images, calib]), folders=[out_dir])
    with staged_folder(out_dir, "run") as stage:
        if not model and not (dataset or images):
            say(f"no --model/--data: the embedded demo ({model_path.name}) on generated shapes")
            dataset = load_dataset(write_dataset(stage / "demo-data", splits=("val", "calib")))
            calib = calib or dataset.yaml_path.parent / "images" / "calib"
        data_used = eval_data(dataset, images, recursive)
        calib_images = list_images(calib, recursive=recursive) if calib else data_used.paths
        builds = list(dict.fromkeys(p.id.build for p in plan if p.id.build != FP32))

        def built(variant) -> None:
            say(f"built {variant.name}: {out_dir / variant.path.name}")
            following = builds.index(variant.plan.id.build) + 1
            if following < len(builds):
                step(f"building {builds[following]} ({following + 1}/{len(builds)})...")

        if builds:
            step(f"building {builds[0]} (1/{len(builds)})...")
        job = run_job(model_path, stage, plan, calib_images, data_used, sessions=sessions, runs=runs,
                      num_calib=num_calib, input_hw=input_hw, progress=progress, on_variant=built)
        report = build_report(job, model_path, budgets, out_dir=stage)
        paths = write_report(report, stage)
    return report, {kind: out_dir / path.name for kind, path in paths.items()}
