"""The suite's settings, read from its options and checked once, at configure time.

Every problem is a pytest.UsageError ("quantlab: <file or option>: <cause>"): one line, exit 4,
before anything is collected. Only cheap checks: the files exist and decode, names and numbers
are valid; nothing is quantized.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import pytest

from quantlab.datasets import Dataset, check_class_names, load_dataset
from quantlab.demo import DEMO_MODEL
from quantlab.errors import QuantlabError
from quantlab.gates import BUDGET_NAMES, Budgets, Check
from quantlab.images import list_images
from quantlab.memory import require_measurable
from quantlab.onnxmodel import inspect_model, load_model
from quantlab.measures import BY_NAME as BY_METRIC
from quantlab.recipes import parse_recipe_list
from quantlab.sessions import (ONNXRUNTIME, TENSORRT, SessionSettings, parse_providers, parse_runtimes, require,
                               runtime_unavailable)
from quantlab.suite.options import BY_NAME, Reader
from quantlab.textsafe import for_terminal
from quantlab.variant import DYNAMIC, PlannedVariant, VariantId, check_recipes_fit, parse_contrast, plan_variants


def _usage_error(message: str) -> pytest.UsageError:
    """pytest's one-line usage error, with what came from files (model metadata, node names) escaped:
    pytest prints it raw, to a terminal or a CI log."""
    return pytest.UsageError(for_terminal(message))


@dataclass(frozen=True)
class SuiteConfig:
    """The model, data and budgets this run gates; calib_images empty means: generate the demo data."""

    model: Path
    dataset: Dataset | None  # labelled evaluation; None means agreement on the calibration images
    calib_images: tuple[Path, ...]
    num_calib: int
    recipes: tuple[str, ...]
    threads: int
    providers: tuple[str, ...]
    budgets: Budgets
    tune: bool = False
    exclude: tuple[str, ...] = ()  # nodes every gated recipe keeps in float
    runtimes: tuple[str, ...] = (ONNXRUNTIME,)  # every variant runs on each (NAME@RUNTIME past onnxruntime)
    contrast: tuple[str, ...] = (DYNAMIC,)  # built, evaluated and benchmarked, never gated
    cache_dir: Path | None = None  # where the artifact store is kept; None: pytest's cache folder

    @functools.cached_property
    def plan(self) -> tuple[PlannedVariant, ...]:
        """Every variant of the run and its role (quantlab.variant.plan_variants, as `quantlab run` plans)."""
        return plan_variants(self.recipes, self.contrast, runtimes=self.runtimes, tune=self.tune,
                             include_dynamic=False, providers=self.providers)

    @property
    def sessions(self) -> SessionSettings:
        """How every session of the suite is opened: its threads and providers."""
        return SessionSettings(self.threads, self.providers)

    @property
    def variants(self) -> list[str]:
        return [v.name for v in self.plan]

    def planned(self, name: str) -> PlannedVariant:
        """The planned variant `name`: its role, recipe and what it is gated on."""
        return next(v for v in self.plan if v.name == name)

    @functools.cached_property
    def unavailable(self) -> dict[str, str]:
        """{runtime: why it cannot run here} for the runtimes whose variants the suite skips (TensorRT without
        its provider or libraries); the others were required when the settings were read."""
        return {r: reason for r in self.runtimes if r == TENSORRT and (reason := runtime_unavailable(r))}

    def skip_reason(self, name: str) -> str | None:
        """Why the variant `name` is skipped here, or None when it runs."""
        runtime = VariantId.parse(name).runtime
        return f"{name}: runtime {runtime}: {self.unavailable[runtime]}" if runtime in self.unavailable else None

    @property
    def int8_variants(self) -> list[str]:
        """The gated INT8 variants: the recipes asked for (and tuned), on every runtime; not FP32 or dynamic."""
        return [v.name for v in self.plan if v.gated]

    @property
    def static_variants(self) -> list[str]:
        return [v.name for v in self.plan if v.speed_gated]

    def gated(self, name: str) -> bool:
        """A variant the user asked for (a --quantlab-recipes entry, or tuned), not fp32 or the contrast; a
        build's name (its file serves every runtime) is gated when one of its variants is."""
        build = VariantId.parse(name).build
        return any(v.gated and v.id.build == build for v in self.plan)

    def accuracy_check(self, labelled: bool) -> Check:
        """The accuracy budget (mAP drop with labels, agreement without), naming its option."""
        return self.check("map_drop" if labelled else "agreement")

    def check(self, metric: str) -> Check:
        """The budget on `metric`, naming the option that sets it."""
        return self.budgets.check(metric, source=BY_NAME[BY_METRIC[metric].budget_name].flag)


def read_suite(config: pytest.Config) -> SuiteConfig:
    """The checked settings of a suite that is on (see options.Reader.enabled)."""
    reader = Reader(config)
    try:
        return _checked(reader, reader.model() or DEMO_MODEL)
    except QuantlabError as exc:
        raise _usage_error(f"quantlab: {exc}") from None


def _checked(reader: Reader, model: Path) -> SuiteConfig:
    """Every cheap check: the files exist and decode, the names and numbers are valid. Nothing is built."""
    loaded = load_model(model)
    info = inspect_model(model, loaded)
    exclude = tuple(n.strip() for n in (reader.value("exclude") or "").split(",") if n.strip())
    unknown = sorted(set(exclude) - {n.name for n in loaded.graph.node})
    if unknown:
        raise _usage_error(f"quantlab: {reader.given('exclude')}: node(s) {', '.join(unknown)} not in {model}")
    data, calib = reader.value("data"), reader.value("calib")
    dataset = load_dataset(data) if data else None
    if dataset is not None:
        check_class_names(dataset, info.description, model)
    if calib:
        calib_images = tuple(list_images(calib, recursive=True))
    elif dataset is not None:
        calib_images = tuple(dataset.images)
    elif model.resolve() == DEMO_MODEL:
        calib_images = ()  # the demo model on demo data, generated once the session starts
    else:
        raise _usage_error(f"quantlab: {model}: give --quantlab-data (a data.yaml: mAP) or "
                                "--quantlab-calib (an image folder: agreement with FP32) to gate it on")
    providers = parse_providers(reader.value("providers"))
    try:
        contrast = parse_contrast(reader.value("contrast"))
    except QuantlabError as exc:
        raise _usage_error(f"quantlab: {reader.given('contrast')}: {exc}") from None
    try:
        recipes = tuple(parse_recipe_list(reader.value("recipes")))
    except QuantlabError as exc:
        raise _usage_error(f"quantlab: {reader.given('recipes') or BY_NAME['recipes'].flag}: {exc}") from None
    try:
        runtimes = parse_runtimes(reader.value("runtimes"), required=False)
        for runtime in runtimes:
            if runtime != TENSORRT:  # TensorRT's variants are skipped where it cannot run: one config, many runners
                require(runtime)
        check_recipes_fit([*recipes, *contrast], runtimes)
    except QuantlabError as exc:
        raise _usage_error(f"quantlab: {reader.given('runtimes') or BY_NAME['runtimes'].flag}: {exc}") from None
    budgets = {}
    for name in BUDGET_NAMES:
        budgets[name] = reader.value(name)
        try:
            Budgets(**{name: budgets[name]})
        except QuantlabError as exc:
            raise _usage_error(f"quantlab: {reader.given(name)}: {exc}") from None
    if budgets["max_memory_ratio"] is not None:
        require_measurable(reader.given("max_memory_ratio"))
    return SuiteConfig(model, dataset, calib_images, reader.value("num_calib"),
                       recipes, reader.value("threads"), providers,
                       Budgets(**budgets), reader.value("tune"), exclude, runtimes, tuple(contrast),
                       reader.value("cache_dir"))
