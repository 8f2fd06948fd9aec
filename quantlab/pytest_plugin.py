"""quantlab's pytest plugin: options, session-built artifacts, and variant parametrisation.

Use it in any repository with `pytest_plugins = ["quantlab.pytest_plugin"]` in a conftest.py.
Tests ask for `variant` (fp32 and every INT8 build), `int8_variant`, or `static_variant`
(speed-gated), and for the session fixtures `quantlab_suite` and `quantlab_artifacts`.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path

import pytest

from quantlab.bench import Latency, interleaved_latency, make_session
from quantlab.datasets import Dataset, load_dataset
from quantlab.evaluate import EvalResult, evaluate_models, labelled_samples, unlabelled_samples
from quantlab.gates import Budgets
from quantlab.images import list_images
from quantlab.onnxmodel import ModelInfo, inspect_model, resolve_input_hw
from quantlab.pipeline import FP32, Variant, build_variant, probe_input, variant_names
from quantlab.quantize import read_metadata
from quantlab.recipes import Mode, parse_recipe_list, resolve_recipe
from quantlab.tune import tune

TUNED = "tuned"

_BUDGETS = Budgets()
_BUDGET_OPTIONS = (
    ("max_map_drop", _BUDGETS.max_map_drop, "largest mAP50-95 drop allowed against FP32 (with labels)"),
    ("max_size_ratio", _BUDGETS.max_size_ratio, "largest INT8/FP32 file-size ratio allowed"),
    ("min_speedup", _BUDGETS.min_speedup, "smallest FP32/INT8 median-latency ratio, same run"),
)


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("quantlab", "quantlab: the model and data the regression gates run on")
    group.addoption("--model", help="FP32 ONNX model (default: the embedded demo model)")
    group.addoption("--data", help="Ultralytics data.yaml; its val split gives mAP (default: demo data)")
    group.addoption("--calib", help="calibration image folder (default: the demo calib split, or "
                                    "the dataset's images)")
    group.addoption("--num-calib", type=int, default=100, help="calibration images sampled (default 100)")
    group.addoption("--recipes", default="auto", help="gated recipes, comma-separated (default auto)")
    group.addoption("--threads", type=int, default=1, help="intra-op threads of every session (default 1)")
    group.addoption("--providers", default="CPUExecutionProvider",
                    help="onnxruntime execution providers, comma-separated")
    group.addoption("--tune", action="store_true",
                    help="also gate a 'tuned' variant: the first recipe with its most sensitive layers "
                         "returned to float until --max-map-drop holds (quantlab tune)")
    for name, default, text in _BUDGET_OPTIONS:
        flag = "--" + name.replace("_", "-")
        group.addoption(flag, type=float, help=f"{text} (ini quantlab_{name}; default {default})")
        parser.addini(f"quantlab_{name}", help=text, default=str(default))


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    for marker in ("slow: builds or evaluates several models",
                   "benchmark: latency benchmarks (run by pytest --benchmark-only)",
                   "gpu: needs a GPU execution provider"):
        config.addinivalue_line("markers", marker)
    # Plain `pytest` runs each benchmark once, as a functional test; --benchmark-only times them.
    option = config.option
    if hasattr(option, "benchmark_disable") and not (
            option.benchmark_only or option.benchmark_enable or option.benchmark_json
            or option.benchmark_autosave or option.benchmark_save):
        option.benchmark_disable = True


@dataclass(frozen=True)
class SuiteConfig:
    """The model, data and budgets this run gates."""

    model: Path
    dataset: Dataset | None  # labelled evaluation; None means agreement on the calibration images
    calib_images: tuple[Path, ...]
    num_calib: int
    recipes: tuple[str, ...]
    threads: int
    providers: tuple[str, ...]
    budgets: Budgets
    tune: bool = False

    @property
    def variants(self) -> list[str]:
        return _variants(self.recipes, self.tune)

    @property
    def int8_variants(self) -> list[str]:
        return [v for v in self.variants if v != FP32]

    @property
    def static_variants(self) -> list[str]:
        return [v for v in self.int8_variants if _is_static(v)]


def _variants(recipes: tuple[str, ...], tune: bool) -> list[str]:
    return variant_names(recipes) + ([TUNED] if tune else [])


def _is_static(name: str) -> bool:
    return name == TUNED or resolve_recipe(name).mode is Mode.STATIC


def _budgets(config: pytest.Config) -> Budgets:
    values = {}
    for name, _, _ in _BUDGET_OPTIONS:
        given = config.getoption(name)
        values[name] = given if given is not None else float(config.getini(f"quantlab_{name}"))
    return Budgets(**values)


def _recipes(config: pytest.Config) -> tuple[str, ...]:
    return tuple(parse_recipe_list(config.getoption("recipes")))


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Parametrise `variant`, `int8_variant` and `static_variant` with readable ids."""
    names = _variants(_recipes(metafunc.config), metafunc.config.getoption("tune"))
    choices = {
        "variant": names,
        "int8_variant": [n for n in names if n != FP32],
        "static_variant": [n for n in names if n != FP32 and _is_static(n)],
    }
    for fixture, values in choices.items():
        if fixture in metafunc.fixturenames:
            metafunc.parametrize(fixture, values, ids=values)


@pytest.fixture(scope="session")
def quantlab_suite(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> SuiteConfig:
    """The suite's settings; with no --model/--data, the demo model and freshly generated demo data."""
    from quantlab.demo import DEMO_MODEL
    from quantlab.demo.shapes import write_dataset

    config = request.config
    model = Path(config.getoption("model")) if config.getoption("model") else DEMO_MODEL
    data, calib = config.getoption("data"), config.getoption("calib")
    dataset = load_dataset(data) if data else None
    if not data and not calib and not config.getoption("model"):
        data_yaml = write_dataset(tmp_path_factory.mktemp("demo-data"), splits=("val", "calib"))
        dataset = load_dataset(data_yaml)
        calib = data_yaml.parent / "images" / "calib"
    if calib:
        calib_images = list_images(calib, recursive=True)
    elif dataset is not None:
        calib_images = list(dataset.images)
    else:
        raise pytest.UsageError("--model without --data needs --calib DIR (images to calibrate and compare on)")
    return SuiteConfig(model, dataset, tuple(calib_images), config.getoption("num_calib"), _recipes(config),
                       config.getoption("threads"), tuple(config.getoption("providers").split(",")),
                       _budgets(config), config.getoption("tune"))


class Artifacts:
    """Builds each variant once per session; a failed build re-raises its real error for every test."""

    def __init__(self, suite: SuiteConfig, workdir: Path):
        self.suite = suite
        self.workdir = workdir
        self.info: ModelInfo = inspect_model(suite.model)
        self.input_hw = resolve_input_hw(self.info)
        self._variants: dict[str, Variant | BaseException] = {}
        self._sessions: dict = {}
        self._evaluations: dict[str, EvalResult] = {}

    def variant(self, name: str) -> Variant:
        if name not in self._variants:
            try:
                self._variants[name] = self._tuned() if name == TUNED else build_variant(
                    name, self.suite.model, self.workdir, self.suite.calib_images, self.suite.num_calib)
            except Exception as exc:  # remembered, so every test that needs it fails with the cause
                self._variants[name] = exc
        built = self._variants[name]
        if isinstance(built, BaseException):
            raise built
        return built

    def _tuned(self) -> Variant:
        """The first recipe, tuned until the suite's accuracy budget holds."""
        suite = self.suite
        recipe = resolve_recipe(suite.recipes[0]).replace(num_calib=suite.num_calib)
        budget = suite.budgets.max_map_drop if suite.dataset else 1 - suite.budgets.min_agreement
        path = self.workdir / f"{suite.model.stem}.{TUNED}.onnx"
        tune(suite.model, path, recipe, suite.calib_images, suite.dataset, suite.calib_images, max_loss=budget,
             threads=suite.threads)
        return Variant(TUNED, path)

    def session(self, name: str):
        if name not in self._sessions:
            self._sessions[name] = make_session(self.variant(name).path, self.suite.threads, self.suite.providers)
        return self._sessions[name]

    def evaluation(self, name: str) -> EvalResult:
        """Evaluate `name` (with every suite variant not yet evaluated, in one pass) against FP32."""
        if name not in self._evaluations:
            others = [n for n in self.suite.int8_variants if n not in self._evaluations and self._builds(n)]
            wanted = list(dict.fromkeys([FP32, name, *others]))
            sessions = {n: self.session(n) for n in wanted}
            suite = self.suite
            samples = labelled_samples(suite.dataset) if suite.dataset else unlabelled_samples(suite.calib_images)
            names = suite.dataset.names if suite.dataset else self.info.class_names
            self._evaluations.update(evaluate_models(sessions, samples, self.input_hw, names, reference=FP32))
        return self._evaluations[name]

    def _builds(self, name: str) -> bool:
        """Whether `name` builds; its failure stays for the tests that ask for it by name."""
        try:
            self.variant(name)
        except Exception:
            return False
        return True

    @functools.cached_property
    def feed(self) -> dict:
        """A fixed preprocessed input: the first calibration image."""
        return probe_input(self.suite.model, self.suite.calib_images[0])

    def latency(self, names: list[str], runs: int = 100) -> dict[str, Latency]:
        """Interleaved latencies of `names`, measured now in this process."""
        return interleaved_latency({n: self.session(n) for n in names}, self.feed, runs=runs)

    def metrics(self, name: str) -> dict:
        """The gate metrics of one variant, as the report and benchmark extra_info spell them."""
        variant = self.variant(name)
        evaluation, fp32 = self.evaluation(name), self.evaluation(FP32)
        parity = next(iter((evaluation.parity or {}).values()), None) or {}
        size = variant.path.stat().st_size
        return {
            "variant": name,
            "size_bytes": size,
            "size_ratio": size / self.info.size_bytes,
            "map50": evaluation.map.map50 if evaluation.map else None,
            "map50_95": evaluation.map.map50_95 if evaluation.map else None,
            "map_drop": fp32.map.map50_95 - evaluation.map.map50_95 if evaluation.map else None,
            "agreement": evaluation.agreement,
            "box_cosine": parity.get("boxes", {}).get("cosine"),
            "score_cosine": parity.get("scores", {}).get("cosine"),
            "top1_agreement": parity.get("top1_agreement"),
            "recipe": json.loads(read_metadata(variant.path)["recipe"]) if name != FP32 else None,
        }


@pytest.fixture(scope="session")
def quantlab_artifacts(quantlab_suite: SuiteConfig, tmp_path_factory: pytest.TempPathFactory) -> Artifacts:
    return Artifacts(quantlab_suite, tmp_path_factory.mktemp("artifacts"))

