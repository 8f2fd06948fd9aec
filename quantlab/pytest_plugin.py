"""quantlab's pytest plugin, registered through the `pytest11` entry point.

Inert until a model is named: `--quantlab-model PATH` or `quantlab_model = PATH` in the ini file
(or `--quantlab-demo` for the embedded demo model). Then it checks its settings once (a bad one is
pytest's usage error, exit 4), and adds quantlab's own gates and benchmarks (quantlab.suite, marked
`quantlab`) to every run that collects its default paths, so a user repository copies no test file.

Fixtures, all namespaced: `quantlab_suite` (the settings), `quantlab_artifacts` (variants built once
per content hash, shared by pytest-xdist workers), `quantlab_metrics` (a variant's gate metrics),
and `quantlab_variant` / `quantlab_int8_variant` / `quantlab_static_variant`, parametrised with the
suite's variants.
"""

from __future__ import annotations

import importlib
import importlib.util
from pathlib import Path

import pytest

from quantlab.suite.options import Reader, add_options

SUITE_DIR = Path(__file__).resolve().parent / "suite"
SUITE_MODULES = ("gates", "benchmarks")
_SUITE = pytest.StashKey()
_OFF = "quantlab's suite is off: name a model with --quantlab-model (ini quantlab_model) or --quantlab-demo"


def pytest_addoption(parser: pytest.Parser) -> None:
    add_options(parser)


def pytest_configure(config: pytest.Config) -> None:
    reader = Reader(config)
    if config.option.help:
        return
    if not reader.enabled():
        if reader.stray_flags():
            raise pytest.UsageError(f"quantlab: {', '.join(reader.stray_flags())} given, but the suite is off: "
                                    "name the model with --quantlab-model (or --quantlab-demo)")
        return
    for module, extra in (("filelock", "test"), ("pytest_benchmark", "test")):
        if importlib.util.find_spec(module) is None:
            raise pytest.UsageError(f"quantlab: the suite needs {module}: pip install 'quantlab[{extra}]'")
    from quantlab.suite.settings import read_suite

    config.stash[_SUITE] = read_suite(config)
    config.addinivalue_line("markers", "quantlab: quantlab's regression gates and benchmarks (select: -m quantlab)")


class SuiteModule(pytest.Module):
    """A module of quantlab.suite, imported by its package name whatever pytest's import mode."""

    def _getobj(self):
        return importlib.import_module(f"quantlab.suite.{self.path.stem}")


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list[pytest.Item]):
    """Add the suite before -k, -m, --deselect and the other plugins' hooks select from the items.

    Only when pytest collects its default paths (testpaths or the current folder): `pytest FILE`
    runs that file alone, as ever.
    """
    if _SUITE in config.stash and config.args_source is not pytest.Config.ArgsSource.ARGS:
        collected = {item.path for item in items}
        for name in SUITE_MODULES:
            path = SUITE_DIR / f"{name}.py"
            if path not in collected:
                module = SuiteModule.from_parent(session, path=path, nodeid=f"quantlab/suite/{name}.py")
                items.extend(session.genitems(module))
    return (yield)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Parametrise the quantlab_*variant fixtures with the suite's variants, readable ids."""
    suite = metafunc.config.stash.get(_SUITE, None)
    if suite is None:
        return
    choices = {"quantlab_variant": suite.variants, "quantlab_int8_variant": suite.int8_variants,
               "quantlab_static_variant": suite.static_variants}
    for fixture, values in choices.items():
        if fixture in metafunc.fixturenames:
            metafunc.parametrize(fixture, values, ids=values)


@pytest.fixture(scope="session")
def quantlab_suite(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    """The suite's settings; the demo model without data gets the demo data, generated once per run."""
    suite = request.config.stash.get(_SUITE, None)
    if suite is None:
        pytest.skip(_OFF)
    if suite.calib_images:
        return suite
    from dataclasses import replace

    from quantlab.datasets import load_dataset
    from quantlab.demo.shapes import write_dataset
    from quantlab.images import list_images
    from quantlab.suite.store import ArtifactStore, content_key, shared_root

    data_yaml = ArtifactStore(shared_root(tmp_path_factory)).build_once(
        content_key("demo-data", splits=["val", "calib"]), "data.yaml",
        lambda target: write_dataset(target.parent, splits=("val", "calib")))
    return replace(suite, dataset=load_dataset(data_yaml),
                   calib_images=tuple(list_images(data_yaml.parent / "images" / "calib")))


@pytest.fixture(scope="session")
def quantlab_artifacts(quantlab_suite, tmp_path_factory: pytest.TempPathFactory):
    from quantlab.suite.artifacts import Artifacts
    from quantlab.suite.store import ArtifactStore, shared_root

    return Artifacts(quantlab_suite, ArtifactStore(shared_root(tmp_path_factory)))


@pytest.fixture
def quantlab_metrics(quantlab_artifacts):
    """metrics(variant) -> the gate metrics; a variant that cannot be built fails its test in one line."""
    from quantlab.errors import QuantlabError

    def metrics(name: str) -> dict:
        __tracebackhide__ = True
        try:
            return quantlab_artifacts.metrics(name)
        except QuantlabError as exc:
            pytest.fail(f"{name}: {exc}", pytrace=False)
    return metrics


@pytest.fixture
def quantlab_variant():
    pytest.skip(_OFF)


@pytest.fixture
def quantlab_int8_variant():
    pytest.skip(_OFF)


@pytest.fixture
def quantlab_static_variant():
    pytest.skip(_OFF)


def pytest_terminal_summary(terminalreporter, config: pytest.Config) -> None:
    """Say so when pytest-xdist ran quantlab's benchmarks untimed (pytest-benchmark turns itself off)."""
    if _SUITE in config.stash and getattr(config.option, "numprocesses", None) and not config.option.collectonly:
        terminalreporter.write_line("quantlab: pytest-benchmark does not time under pytest-xdist, so quantlab's "
                                    "benchmarks run once each, untimed: time them serially with "
                                    "pytest --benchmark-only (no -n)")
