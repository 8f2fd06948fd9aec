"""quantlab's pytest plugin, registered through the `pytest11` entry point.

Enabled by the entry point (named `quantlab`), or by name where autoloading is off: `-p quantlab`,
`-p quantlab.pytest_plugin`, `PYTEST_PLUGINS=quantlab.pytest_plugin` or `pytest_plugins = [...]` in a
conftest; any of these together load it once. `-p no:quantlab` (or `no:quantlab.pytest_plugin`) keeps it out.

Inert until a model is named: `--quantlab-model PATH` or `quantlab_model = PATH` in the ini file
(or `--quantlab-demo` for the embedded demo model). Then it checks its settings once (a bad one is
pytest's usage error, exit 4), and adds quantlab's own gates and benchmarks (quantlab.suite, marked
`quantlab`) to every run that collects its default paths, so a user repository copies no test file.

Fixtures, all namespaced: `quantlab_suite` (the settings), `quantlab_artifacts` (variants built once
per content hash, kept across runs in pytest's cache folder and shared by pytest-xdist workers: see
quantlab.suite.store), `quantlab_metrics` (a variant's gate metrics),
and `quantlab_variant` / `quantlab_int8_variant` / `quantlab_static_variant`, parametrised with the
suite's variants.

The suite's node ids (quantlab/suite/gates.py::test_...[auto]) are re-runnable as printed, although the
suite's modules live in the installed package: such an argument selects from the suite the plugin adds.
A run with failed suite tests ends with the command that re-runs them.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import shlex
import types
from pathlib import Path

import pytest

from quantlab.suite.options import SETTINGS, Reader, add_options

SUITE_DIR = Path(__file__).resolve().parent / "suite"
SUITE_MODULES = ("gates", "benchmarks")
_SUITE = pytest.StashKey()
_STORE = pytest.StashKey()
_SELECTED = pytest.StashKey()  # the suite's node ids given as arguments
_OFF = "quantlab's suite is off: name a model with --quantlab-model (ini quantlab_model) or --quantlab-demo"
_NO_BENCHMARK = ("pytest-benchmark is not active (-p no:benchmark, or not installed: "
                 "pip install 'quantlab-yolo[test]'): quantlab's benchmarks need its benchmark fixture")
SHARED_FIXTURES = ("quantlab_suite", "quantlab_artifacts", "quantlab_metrics")  # the gates' own, and users'
PLUGIN_NAMES = ("quantlab", __name__)  # pyproject's pytest11 entry point name, and the module's


class _OtherName:
    """Holds the plugin's other name in pytest's plugin manager: a name pytest finds taken, it loads nothing under."""


def _kept_out(manager: pytest.PytestPluginManager) -> bool:
    """-p no:quantlab or -p no:quantlab.pytest_plugin: either name turns the plugin off, however it was loaded."""
    return any(manager.is_blocked(name) for name in PLUGIN_NAMES)


def pytest_addoption(parser: pytest.Parser, pluginmanager: pytest.PytestPluginManager) -> None:
    if not _kept_out(pluginmanager):
        add_options(parser)


def pytest_plugin_registered(plugin: object, manager: pytest.PytestPluginManager) -> None:
    """Once registered, under the entry point's name or the module's, take the other name too.

    pytest registers a plugin under the name it was asked for: the entry point loads this module as
    `quantlab`, while `pytest_plugins`, `-p` and `PYTEST_PLUGINS` name it `quantlab.pytest_plugin`;
    the second registration of the same module would stop pytest ("Plugin already registered under a
    different name"). Under a blocked name, the plugin unregisters itself (it added no options).
    """
    if not (isinstance(plugin, types.ModuleType) and plugin.__name__ == __name__):
        return
    if _kept_out(manager):
        for name in PLUGIN_NAMES:
            manager.set_blocked(name)  # unregisters this module too
        return
    for name in PLUGIN_NAMES:
        if not manager.has_plugin(name):
            manager.register(_OtherName(), name)


@pytest.hookimpl(wrapper=True)
def pytest_load_initial_conftests(early_config: pytest.Config, parser: pytest.Parser, args: list[str]):
    """A conftest adding an option under one of quantlab's names stops pytest in one line, not a traceback."""
    try:
        return (yield)
    except (ValueError, argparse.ArgumentError) as exc:  # pytest's "dest ... already used", argparse's "conflicting"
        taken = [s.flag for s in SETTINGS if repr(s.key) in str(exc) or f"{s.flag}:" in str(exc)]
        if not taken:
            raise
        raise pytest.UsageError(f"quantlab: a conftest adds the option {taken[0]}, which quantlab's plugin adds: "
                                "rename theirs (or keep quantlab out: -p no:quantlab)") from None


def pytest_configure(config: pytest.Config) -> None:
    reader = Reader(config)
    if config.option.help:
        return
    if not reader.enabled():
        if reader.stray_flags():
            raise pytest.UsageError(f"quantlab: {', '.join(reader.stray_flags())} given, but the suite is off: "
                                    "name the model with --quantlab-model (or --quantlab-demo)")
        return
    from quantlab.suite.settings import read_suite

    suite = config.stash[_SUITE] = read_suite(config)
    config.addinivalue_line("markers", "quantlab: quantlab's regression gates and benchmarks (select: -m quantlab)")
    config.stash[_SELECTED] = _take_suite_ids(config)
    if suite.cache_dir and config.getoption("cacheclear", False) and not hasattr(config, "workerinput"):
        from quantlab.suite.store import ArtifactStore

        ArtifactStore(suite.cache_dir).clear()


def _take_suite_ids(config: pytest.Config) -> list[str]:
    """Take the arguments that name the suite's node ids (quantlab/suite/gates.py[::test...]) out of the
    paths pytest collects: their files are in the installed package, not under the current folder."""
    suite_files = {f"quantlab/suite/{name}.py" for name in SUITE_MODULES}
    where = config.invocation_params.dir
    taken = [arg for arg in config.args
             if (path := arg.split("::")[0]) in suite_files and not (where / path).exists()]
    config.args[:] = [arg for arg in config.args if arg not in taken]
    return taken


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
    selected = config.stash.get(_SELECTED, [])
    if _SUITE in config.stash and (selected or config.args_source is not pytest.Config.ArgsSource.ARGS):
        collected = {item.path for item in items}
        for name in _suite_modules(config):
            path = SUITE_DIR / f"{name}.py"
            nodeid = f"quantlab/suite/{name}.py"
            named = [s for s in selected if s.split("::")[0] == nodeid]
            if path not in collected and (named or not selected):
                module = SuiteModule.from_parent(session, path=path, nodeid=nodeid)
                suite_items = map(_own_fixtures, session.genitems(module))
                items.extend(_benchmarkable(config, _named(suite_items, named) if named else suite_items))
    return (yield)


def _named(items, selected: list[str]) -> list[pytest.Item]:
    """The items `selected` names, as pytest selects by node id: a module, a test (every parameter), one item."""
    chosen = [item for item in items
              if any(item.nodeid == s or item.nodeid.startswith((s + "::", s + "[")) for s in selected)]
    unmatched = [s for s in selected if not any(item.nodeid == s or item.nodeid.startswith((s + "::", s + "["))
                                                for item in chosen)]
    if unmatched:
        raise pytest.UsageError(f"quantlab: not found: {unmatched[0]} (not a test of quantlab's suite in this run)")
    return chosen


def _own_fixtures(item: pytest.Item) -> pytest.Item:
    """The suite's item, unless a fixture of the user's (a conftest's) shadows one the gates rely on.

    pytest prefers a conftest's fixture over a plugin's of the same name; the gates would then
    gate whatever that fixture returns. Shadowing one for the user's own tests alone is fine.
    """
    for name in SHARED_FIXTURES:
        used = item._fixtureinfo.name2fixturedefs.get(name, ())  # pytest's resolution: the last one wins
        if used and used[-1].func.__module__ != __name__:
            where = used[-1].func.__code__.co_filename
            raise pytest.UsageError(f"quantlab: {where} defines the fixture {name}, which shadows quantlab's own "
                                    "for its gates: rename yours, or scope it to your tests' folder")
    return item


def _under_xdist(config: pytest.Config) -> bool:
    """pytest-xdist distributes this run (its controller, or one of its workers)."""
    return hasattr(config, "workerinput") or config.getoption("dist", "no") != "no"


def _suite_modules(config: pytest.Config) -> tuple[str, ...]:
    """The benchmarks stay out of xdist runs: pytest-benchmark cannot time there, and the warning it
    gives at exit for every benchmark it saw fails the runs that make warnings errors."""
    return SUITE_MODULES[:1] if _under_xdist(config) else SUITE_MODULES


def _benchmarkable(config: pytest.Config, items):
    """The items, the benchmarks skipped with the reason where pytest-benchmark is not registered
    (its options come with its plugin): the gates need no benchmark fixture and run all the same."""
    for item in items:
        if not hasattr(config.option, "benchmark_skip") and "benchmark" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.skip(reason=_NO_BENCHMARK))
        yield item


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Parametrise the quantlab_*variant fixtures with the suite's variants, readable ids."""
    suite = metafunc.config.stash.get(_SUITE, None)
    if suite is None:
        return
    choices = {"quantlab_variant": suite.variants, "quantlab_int8_variant": suite.int8_variants,
               "quantlab_static_variant": suite.static_variants}
    for fixture, values in choices.items():
        if fixture in metafunc.fixturenames:
            params = [pytest.param(v, id=v, marks=[pytest.mark.skip(reason=reason)] if (
                reason := suite.skip_reason(v)) else []) for v in values]
            metafunc.parametrize(fixture, params)


@pytest.fixture(scope="session")
def quantlab_suite(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    """The suite's settings; the demo model without data gets the demo data, generated once into the store."""
    suite = request.config.stash.get(_SUITE, None)
    if suite is None:
        pytest.skip(_OFF)
    if suite.calib_images:
        return suite
    from dataclasses import replace

    from quantlab.datasets import load_dataset
    from quantlab.demo.shapes import write_dataset
    from quantlab.images import list_images

    from quantlab.suite.store import content_key

    def write(target: Path) -> None:
        _say(request.config)("writing the demo data (val and calib)...")
        write_dataset(target.parent, splits=("val", "calib"))

    data_yaml = _store(request.config, tmp_path_factory).build_once(
        content_key("demo-data", splits=["val", "calib"]), "data.yaml", write)
    return replace(suite, dataset=load_dataset(data_yaml),
                   calib_images=tuple(list_images(data_yaml.parent / "images" / "calib")))


@pytest.fixture(scope="session")
def quantlab_artifacts(request: pytest.FixtureRequest, quantlab_suite, tmp_path_factory: pytest.TempPathFactory):
    from quantlab.suite.artifacts import Artifacts

    from quantlab.suite.options import timing_asked_for

    return Artifacts(quantlab_suite, _store(request.config, tmp_path_factory), _say(request.config),
                     keep_timings=not timing_asked_for(request.config))


def _say(config: pytest.Config):
    """say(message): one 'quantlab: ...' line on the terminal now, past pytest's capture, as live logging writes;
    silent where there is no terminal reporter (an xdist worker) or with -qq."""
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    capture = config.pluginmanager.get_plugin("capturemanager")
    if reporter is None or config.get_verbosity() < -1:
        return lambda message: None

    def say(message: str) -> None:
        from quantlab.textsafe import for_terminal

        with capture.global_and_fixture_disabled() if capture is not None else contextlib.nullcontext():
            reporter.ensure_newline()
            reporter.write_line(for_terminal(f"quantlab: {message}"))
    return say


def _store(config: pytest.Config, tmp_path_factory: pytest.TempPathFactory):
    """This run's artifact store: --quantlab-cache-dir, else pytest's cache folder (emptied by --cache-clear),
    else (-p no:cacheprovider) the base temp folder this run's xdist workers share."""
    from quantlab.suite.store import ArtifactStore, shared_root

    if _STORE not in config.stash:
        cache = getattr(config, "cache", None)
        root = (config.stash[_SUITE].cache_dir or (cache.mkdir("quantlab") if cache is not None else None)
                or shared_root(tmp_path_factory))
        config.stash[_STORE] = ArtifactStore(root)
    return config.stash[_STORE]


@pytest.fixture
def quantlab_metrics(quantlab_artifacts):
    """metrics(variant) -> the gate metrics; a variant that cannot be built fails its test in one line."""
    from quantlab.errors import QuantlabError
    from quantlab.textsafe import for_terminal

    def metrics(name: str) -> dict:
        __tracebackhide__ = True
        try:
            return quantlab_artifacts.metrics(name)
        except QuantlabError as exc:
            pytest.fail(for_terminal(f"{name}: {exc}"), pytrace=False)
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
    """What the artifact store built and reused; the command that re-runs the failed suite tests; and, when an xdist
    run left quantlab's benchmarks out, that it did."""
    if _SUITE not in config.stash or config.option.collectonly:
        return
    store = config.stash.get(_STORE, None)
    failed = [r.nodeid for r in terminalreporter.stats.get("failed", ()) if r.nodeid.startswith("quantlab/suite/")]
    if store is None and not failed and not _under_xdist(config):
        return
    terminalreporter.write_sep("=", "quantlab")
    if store is not None:
        terminalreporter.write_line(f"quantlab: {store.built} artifact(s) built, {store.reused} reused from "
                                    f"{store.root} (--cache-clear rebuilds them)")
    if failed:
        terminalreporter.write_line(f"quantlab: re-run the failed tests: {rerun_command(config, failed)}")
    if _under_xdist(config):
        terminalreporter.write_line("quantlab: pytest-benchmark does not time under pytest-xdist, so quantlab's "
                                    "benchmarks were left out: time them serially with pytest --benchmark-only (no -n)")


def rerun_command(config: pytest.Config, nodeids: list[str]) -> str:
    """pytest with the --quantlab-* options this run was given and `nodeids`, quoted for a POSIX shell."""
    options = []
    for s in SETTINGS:
        value = config.getoption(s.key)
        if value is not None:
            options += [s.flag] if s.kind is bool else [s.flag, str(value)]
    return shlex.join(["pytest", *options, *dict.fromkeys(nodeids)])
