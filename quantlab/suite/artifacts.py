"""The suite's session artifacts: variants, their gate metrics and (in runs pytest-benchmark does not record)
their speedups, built once per content hash and shared by pytest-xdist workers and later runs through the store;
sessions per process."""

from __future__ import annotations

import dataclasses
import functools
import json
from collections.abc import Callable
from pathlib import Path

from quantlab.atomicio import atomic_write_bytes
from quantlab.bench import Speedup, bench_setup, interleaved_speedup
from quantlab.calibration import split_sample
from quantlab.datasets import label_path
from quantlab.jsonio import parse_json, read_json
from quantlab.evaluate import EvalData, EvalResult, evaluate_models
from quantlab.measures import measure
from quantlab.memory import MemoryUse, measure_memory
from quantlab.onnxmodel import ModelInfo, external_data_files, inspect_model, model_size_bytes, resolve_input_hw
from quantlab.pipeline import Variant, build_variant, probe_input
from quantlab.quantize import read_metadata
from quantlab.recipes import Recipe, resolve_recipe
from quantlab.sessions import ONNXRUNTIME, runtime_version
from quantlab.suite.settings import SuiteConfig
from quantlab.suite.store import ArtifactStore, content_key, file_digest
from quantlab.tune import tune
from quantlab.variant import FP32, TUNED, PlannedVariant, VariantId
from quantlab.verify import CHECK_IMAGES


class Artifacts:
    """Builds each variant once per run (once per session per worker at most, through the store);
    a failed build re-raises its real error for every test that needs it. `say` shows each long step as it
    starts (quantizing, evaluating, timing): the first gate would otherwise be silent for half a minute.
    keep_timings: the same-run speedups are kept in the store too (see speedup)."""

    def __init__(self, suite: SuiteConfig, store: ArtifactStore, say: Callable[[str], None] = lambda message: None,
                 keep_timings: bool = False):
        self.suite = suite
        self.store = store
        self.say = say
        self.keep_timings = keep_timings
        self.timed_before: set[str] = set()  # the variants whose speedup an earlier run measured
        self.info: ModelInfo = inspect_model(suite.model)
        self.input_hw = resolve_input_hw(self.info)
        self._files: dict[str, Path | BaseException] = {}
        self._sessions: dict = {}
        self._evaluations: dict[str, EvalResult] = {}
        self._speedups: dict[str, Speedup] = {}
        self._shared_metrics: dict[str, dict | None] | None = None
        self._memories: dict[str, MemoryUse | None] = {}

    @functools.cached_property
    def _model_digest(self) -> str:
        return file_digest([self.suite.model, *external_data_files(self.suite.model)])

    def _key(self, name: str) -> str:
        """The content hash of one INT8 build: model bytes, recipe, calibration sample, versions."""
        suite = self.suite
        name = VariantId.parse(name).build  # one build serves every runtime
        recipe = self._recipe(name)
        calib, check = split_sample(suite.calib_images, recipe.num_calib, CHECK_IMAGES, recipe.seed)
        parts = {"model": self._model_digest, "recipe": recipe.settings(), "calib": file_digest(calib),
                 "check": file_digest(check)}
        if name == TUNED:
            evaluated = suite.dataset.images if suite.dataset else suite.calib_images
            parts.update(tuned=self._tune_budget(), evaluated=file_digest(evaluated))
        return content_key(name, **parts)

    def _recipe(self, name: str) -> Recipe:
        """The recipe `name` builds with: the suite's calibration count, and its float nodes when gated."""
        suite = self.suite
        recipe = resolve_recipe(suite.recipes[0] if name == TUNED else name, providers=suite.providers).replace(
            num_calib=suite.num_calib)
        if suite.gated(name) and suite.exclude:
            recipe = recipe.replace(exclude_nodes=tuple(recipe.exclude_nodes) + suite.exclude)
        return recipe

    def variant(self, name: str) -> Variant:
        """The planned variant on its build's file: one file serves every runtime."""
        planned = self._plan[name]
        return Variant(planned, self._file(planned.id.build))

    def _file(self, build: str) -> Path:
        """A build's file, made once; a failed build re-raises its error for every variant and test that asks."""
        if build not in self._files:
            try:
                self._files[build] = self._build_file(build)
            except Exception as exc:  # remembered, so every test that needs it fails with the cause
                self._files[build] = exc
        file = self._files[build]
        if isinstance(file, BaseException):
            raise file
        return file

    def _build_file(self, build: str) -> Path:
        """The model file of a build: FP32 as given, or quantized once per content hash (through the store)."""
        suite = self.suite
        if build == FP32:
            return suite.model
        filename = f"{suite.model.stem}.{build}.onnx"
        if build == TUNED:
            return self.store.build_once(self._key(build), filename, self._tune)

        def quantize(target: Path) -> None:
            self.say(f"building {build} from {suite.model.name}...")
            build_variant(build, suite.model, target.parent, suite.calib_images, suite.num_calib,
                          exclude_nodes=self._recipe(build).exclude_nodes, providers=suite.providers)
        return self.store.build_once(self._key(build), filename, quantize)

    def _tune_budget(self) -> float:
        budgets = self.suite.budgets
        return budgets.max_map_drop if self.suite.dataset else 1 - budgets.min_agreement

    def _tune(self, path: Path) -> None:
        """The first recipe, tuned until the suite's accuracy budget holds."""
        suite = self.suite
        recipe = self._recipe(TUNED)
        self.say(f"tuning {recipe.name} (its most sensitive layers back to float)...")
        tune(suite.model, path, recipe, suite.calib_images, self._eval_data, max_loss=self._tune_budget(),
             threads=suite.threads)

    def session(self, name: str):
        if name not in self._sessions:
            variant = self.variant(name)
            self._sessions[name] = self.suite.sessions.open(variant.path, variant.runtime)
        return self._sessions[name]

    def evaluation(self, name: str) -> EvalResult:
        """Evaluate `name` (with every suite variant not yet evaluated, in one pass) against FP32."""
        if name not in self._evaluations:
            others = [n for n in self._builds_named if n not in self._evaluations and self._builds(n)]
            wanted = list(dict.fromkeys([FP32, name, *others]))
            sessions = {n: self.session(n) for n in wanted}
            data = self._eval_data
            self.say(f"evaluating {', '.join(sessions)} on {len(data.paths)} images...")
            self._evaluations.update(evaluate_models(sessions, data.samples(self.info.description), self.input_hw,
                                                     data.class_names(self.info.class_names), self.info.description,
                                                     reference=FP32))
        return self._evaluations[name]

    def _builds(self, name: str) -> bool:
        """Whether `name` builds; its failure stays for the tests that ask for it by name."""
        try:
            self.variant(name)
        except Exception:
            return False
        return True

    @functools.cached_property
    def _plan(self) -> dict[str, PlannedVariant]:
        """The suite's variants that run here (SuiteConfig.skip_reason: TensorRT's are skipped where it cannot)."""
        return {v.name: v for v in self.suite.plan if not self.suite.skip_reason(v.name)}

    @functools.cached_property
    def _builds_named(self) -> list[str]:
        """Every variant that runs here and is not FP32 (on any runtime): each is a build of the model."""
        return [name for name, v in self._plan.items() if not v.id.is_fp32]

    @functools.cached_property
    def _eval_data(self) -> EvalData:
        """The dataset (mAP) or else the calibration images (agreement with FP32)."""
        suite = self.suite
        return EvalData(dataset=suite.dataset) if suite.dataset else EvalData(images=suite.calib_images)

    @functools.cached_property
    def feed(self) -> dict:
        """A fixed preprocessed input: the first calibration image."""
        return probe_input(self.info, self.suite.calib_images[0], self.input_hw)

    def speedup(self, name: str) -> Speedup:
        """FP32 / `name` median latency, interleaved in one process, with its 95% interval.

        Measured once per variant: the speed gate and the benchmark's extra_info share it. With keep_timings
        (runs whose benchmarks pytest-benchmark does not record), it is kept in the store, keyed by both
        files, the input and the timing setup (this host, its CPU, threads, providers, versions): an unchanged
        second run reuses it instead of timing for ten seconds. Recorded runs always time anew: history's
        run-to-run spread needs each run's own measurement.
        """
        if name == FP32:
            return Speedup(1.0, 1.0, 1.0, 0, 0)
        if name not in self._speedups:
            if self.keep_timings:
                measured = []
                path = self.store.build_once(self._speedup_key(name), "speedup.json",
                                             lambda target: measured.append(self._time(name, target)))
                if not measured:
                    self.timed_before.add(name)
                self._speedups[name] = Speedup(**read_json(path, "quantlab's stored speedup"))
            else:
                self._speedups[name] = self._time(name)
        return self._speedups[name]

    def _time(self, name: str, target: Path | None = None) -> Speedup:
        """Time `name` against FP32, interleaved; written as JSON to `target` where given."""
        self.say(f"timing {name} against fp32, interleaved...")
        speedup = interleaved_speedup(self.session(FP32), self.session(name), self.feed)
        if target is not None:
            target.write_text(json.dumps(dataclasses.asdict(speedup)))
        return speedup

    def _speedup_key(self, name: str) -> str:
        runtime = self._plan[name].id.runtime
        return content_key("speedup", fp32=self._model_digest, variant=self._key(name), runtime=runtime,
                           runtime_version=runtime_version(runtime), input_hw=list(self.input_hw),
                           feed=file_digest(self.suite.calib_images[:1]),
                           setup=bench_setup(self.suite.threads, self.suite.providers))

    def metrics(self, name: str) -> dict:
        """The gate metrics of one variant, measured once per run for every variant (see _write_metrics)."""
        if self._shared_metrics is None:
            path = self.store.build_once(self._metrics_key(), "metrics.json", self._write_metrics)
            self._shared_metrics = read_json(path, "quantlab's metrics of this run")
        shared = self._shared_metrics.get(name)
        return shared if shared is not None else self._measure(name)  # a failed build raises its error here

    def _metrics_key(self) -> str:
        """Every variant's content hash and role, the evaluation images and labels, the session settings and
        every runtime's version (the store keeps the metrics across runs)."""
        suite = self.suite
        if suite.dataset:
            evaluated = [*suite.dataset.images, *(p for p in map(label_path, suite.dataset.images) if p.is_file())]
        else:
            evaluated = list(suite.calib_images)
        return content_key("metrics", variants={n: self._key(n) for n in self._builds_named},
                           roles={v.name: v.role.value for v in suite.plan}, threads=suite.threads,
                           runtimes={r: runtime_version(r) for r in suite.runtimes},
                           providers=suite.providers, fp32=self._model_digest, evaluated=file_digest(evaluated))

    def _write_metrics(self, path: Path) -> None:
        """{variant: metrics, or null when it does not build} as JSON, written atomically."""
        metrics = {n: self._measure(n) if self._builds(n) else None for n in self._plan}
        atomic_write_bytes(path, json.dumps(metrics).encode())

    def _measure(self, name: str) -> dict:
        """The measures of one variant (quantlab.measures), as the report and benchmark extra_info spell them;
        its speedup is timed per process (see speedup)."""
        variant = self.variant(name)
        recipe = (parse_json(read_metadata(variant.path)["recipe"], f"{variant.path}: quantlab.recipe")
                  if variant.path != self.suite.model else None)
        return measure(name, variant.runtime, variant.plan.gated, self.info.description.task, recipe,
                       model_size_bytes(variant.path), self.info.size_bytes, self.evaluation(name),
                       self.evaluation(FP32), self.memory(name), self.memory(FP32)).as_dict()

    def memory(self, name: str) -> MemoryUse | None:
        """Session memory of `name`, measured in fresh child processes (None where unmeasurable)."""
        if name not in self._memories and self._plan[name].id.runtime != ONNXRUNTIME:
            self._memories[name] = None  # measured for onnxruntime sessions only
        if name not in self._memories:
            self._memories[name] = measure_memory(self.variant(name).path, self.input_hw, self.suite.threads,
                                                  self.suite.providers)
        return self._memories[name]
