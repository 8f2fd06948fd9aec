"""The suite's settings, read from its options and checked once, at configure time.

Every problem is a pytest.UsageError ("quantlab: <file or option>: <cause>"): one line, exit 4,
before anything is collected. Only cheap checks: the files exist and decode, names and numbers
are valid; nothing is quantized.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import pytest

from quantlab.datasets import Dataset, check_class_names, load_dataset
from quantlab.demo import DEMO_MODEL
from quantlab.errors import QuantlabError
from quantlab.gates import Budgets, Check
from quantlab.images import list_images
from quantlab.memory import require_measurable
from quantlab.onnxmodel import inspect_model, load_model
from quantlab.pipeline import FP32, check_recipes_fit, split_variant, variant_names
from quantlab.recipes import Mode, parse_recipe_list, resolve_recipe
from quantlab.sessions import ONNXRUNTIME, parse_providers, parse_runtimes
from quantlab.suite.options import BUDGET_NAMES, BY_NAME, Reader
from quantlab.textsafe import for_terminal

TUNED = "tuned"


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

    @property
    def variants(self) -> list[str]:
        return variant_names(self.recipes, runtimes=self.runtimes) + ([TUNED] if self.tune else [])

    @property
    def int8_variants(self) -> list[str]:
        return [v for v in self.variants if split_variant(v)[0] != FP32]

    @property
    def static_variants(self) -> list[str]:
        return [v for v in self.int8_variants if v == TUNED or resolve_recipe(split_variant(v)[0]).mode is Mode.STATIC]

    def gated(self, name: str) -> bool:
        """A variant the user asked for (a --quantlab-recipes entry, or tuned), not fp32 or the contrast."""
        build = split_variant(name)[0]
        return build in self.recipes or build == TUNED

    def accuracy_check(self, labelled: bool) -> Check:
        """The accuracy budget (mAP drop with labels, agreement without), naming its option."""
        check = self.budgets.accuracy_check(labelled)
        return dataclasses.replace(check, source=self.check(check.metric).source)

    def check(self, metric: str) -> Check:
        """The budget on `metric`, naming the option that sets it."""
        budget = {"map_drop": "max_map_drop", "size_ratio": "max_size_ratio", "speedup": "min_speedup",
                  "agreement": "min_agreement", "memory_ratio": "max_memory_ratio"}[metric]
        return Check(metric, getattr(self.budgets, budget), source=BY_NAME[budget].flag)


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
        runtimes = parse_runtimes(reader.value("runtimes"))
        check_recipes_fit(parse_recipe_list(reader.value("recipes")), runtimes)
    except QuantlabError as exc:
        raise _usage_error(f"quantlab: {reader.given('runtimes')}: {exc}") from None
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
                       tuple(parse_recipe_list(reader.value("recipes"))), reader.value("threads"), providers,
                       Budgets(**budgets), reader.value("tune"), exclude, runtimes)
