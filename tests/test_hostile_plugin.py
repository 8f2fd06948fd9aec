"""quantlab's plugin against a user's own pytest configuration: each case works, or stops pytest in one line.

Every case is a tiny user repository (a pytest.ini, tests/test_mine.py, the demo model as m.onnx, an image
folder, the case's own files) and one pytest run, collect-only wherever the suite is on, so nothing is
quantized. "Works" means the expected items are collected (the user's test and the suite's 9 on the demo:
6 gates, 3 benchmarks) or the expected outcomes; "refused" means exit 4 and a line naming the cause
(exactly one line when quantlab says it). Never an INTERNALERROR or a traceback.
"""

import re
import shutil
from dataclasses import dataclass

import pytest

from quantlab.demo import DEMO_MODEL

pytest_plugins = ["pytester"]
pytestmark = pytest.mark.usefixtures("outside_xdist")  # each test starts a pytest of its own

SUITE = 9  # the demo's items: 6 gates (auto; dynamic is contrast), 3 benchmarks (fp32, auto, dynamic)
BENCHMARKS = 3
ALL = 1 + SUITE  # with the user's test_mine
DEMO = ["quantlab_demo = true"]
FIXTURE = "import pytest\n\n@pytest.fixture(scope='session')\ndef quantlab_suite():\n    return 'theirs'\n"
OPTION = "def pytest_addoption(parser):\n    parser.addoption({})\n"


@dataclass(frozen=True)
class Collects:
    """Exit 0 and this many items collected (after -k, -m, --deselect)."""

    count: int


@dataclass(frozen=True)
class Runs:
    """The run's outcomes, as pytester parses them."""

    outcomes: dict


@dataclass(frozen=True)
class Refused:
    """Exit 4 and a stderr line matching `message`; quantlab's own refusals are that one line alone."""

    message: str


CASES = [
    # --- the ways to enable it: each loads the plugin once, whatever else also loads it
    ("conftest-pytest_plugins-module", [], {"conftest.py": 'pytest_plugins = ["quantlab.pytest_plugin"]'},
     ["--quantlab-demo"], {}, Collects(ALL)),
    ("conftest-pytest_plugins-entry-name", [], {"conftest.py": 'pytest_plugins = ["quantlab"]'},
     ["--quantlab-demo"], {}, Collects(ALL)),
    ("p-module", [], {}, ["-p", "quantlab.pytest_plugin", "--quantlab-demo"], {}, Collects(ALL)),
    ("p-entry-name", [], {}, ["-p", "quantlab", "--quantlab-demo"], {}, Collects(ALL)),
    ("env-PYTEST_PLUGINS", [], {}, ["--quantlab-demo"], {"PYTEST_PLUGINS": "quantlab.pytest_plugin"}, Collects(ALL)),
    ("every-way-at-once", [], {"conftest.py": 'pytest_plugins = ["quantlab.pytest_plugin", "quantlab"]'},
     ["-p", "quantlab.pytest_plugin", "-p", "quantlab", "--quantlab-demo"],
     {"PYTEST_PLUGINS": "quantlab,quantlab.pytest_plugin"}, Collects(ALL)),
    ("addopts-p-module", ["addopts = -p quantlab.pytest_plugin", *DEMO], {}, [], {}, Collects(ALL)),
    # --- autoloading off: only an explicit -p loads it
    ("no-autoload", [], {}, ["--quantlab-demo"], {"PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"},
     Refused("unrecognized arguments: --quantlab-demo")),
    ("no-autoload-p-entry-name", [], {}, ["-p", "quantlab", "--quantlab-demo"],
     {"PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"}, Collects(ALL)),
    ("no-autoload-p-module", [], {}, ["-p", "quantlab.pytest_plugin", "--quantlab-demo"],
     {"PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"}, Collects(ALL)),
    # without pytest-benchmark (not autoloaded) the gates still run; the benchmarks skip with the reason
    ("no-autoload-benchmarks-skip", [], {}, ["-p", "quantlab", "--quantlab-demo", "-k", "latency"],
     {"PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"}, Runs({"skipped": BENCHMARKS, "deselected": ALL - BENCHMARKS})),
    # --- keeping it out: either name, whatever else would load it
    ("p-no-quantlab", [], {}, ["-p", "no:quantlab"], {}, Collects(1)),
    ("p-no-quantlab-with-model", [], {}, ["-p", "no:quantlab", "--quantlab-demo"], {},
     Refused("unrecognized arguments: --quantlab-demo")),
    ("p-no-module-name", [], {}, ["-p", "no:quantlab.pytest_plugin", "--quantlab-demo"], {},
     Refused("unrecognized arguments: --quantlab-demo")),
    ("p-no-beats-conftest", [], {"conftest.py": 'pytest_plugins = ["quantlab.pytest_plugin"]'},
     ["-p", "no:quantlab", "--quantlab-demo"], {}, Refused("unrecognized arguments: --quantlab-demo")),
    ("p-no-strict-config-ini-key", DEMO, {}, ["-p", "no:quantlab", "--strict-config"], {},
     Refused("Unknown config option: quantlab_demo")),
    # --- pytest-benchmark off or told to skip: the gates are untouched, the benchmarks skip
    ("p-no-benchmark", DEMO, {}, ["-p", "no:benchmark", "-k", "latency"], {},
     Runs({"skipped": BENCHMARKS, "deselected": ALL - BENCHMARKS})),
    ("p-no-benchmark-in-addopts", ["addopts = -p no:benchmark", *DEMO], {}, [], {}, Collects(ALL)),
    ("benchmark-skip", DEMO, {}, ["--benchmark-skip", "-k", "latency"], {},
     Runs({"skipped": BENCHMARKS, "deselected": ALL - BENCHMARKS})),
    ("benchmark-disable", DEMO, {}, ["--benchmark-disable"], {}, Collects(ALL)),
    # --- pytest-xdist: the benchmarks (untimeable there) stay out, and pytest-benchmark's exit warning with them
    ("xdist-n2-warnings-as-errors", [*DEMO, "filterwarnings = error"], {}, ["-n", "2"], {}, Collects(ALL - BENCHMARKS)),
    ("p-no-xdist", DEMO, {}, ["-p", "no:xdist"], {}, Collects(ALL)),
    # --- warnings, markers, import modes, caching and selection of the user's
    ("W-error", DEMO, {}, ["-W", "error"], {}, Collects(ALL)),
    ("ini-filterwarnings-error", [*DEMO, "filterwarnings = error"], {}, [], {}, Collects(ALL)),
    ("strict-markers-own-markers", [*DEMO, "markers =\n    mine: theirs"],
     {"tests/test_marked.py": "import pytest\n\n@pytest.mark.mine\ndef test_marked():\n    pass\n"},
     ["--strict-markers"], {}, Collects(ALL + 1)),
    ("strict-markers-m-quantlab", DEMO, {}, ["--strict-markers", "-m", "quantlab"], {}, Collects(SUITE)),
    ("import-mode-importlib", DEMO, {}, ["--import-mode=importlib"], {}, Collects(ALL)),
    ("import-mode-append", DEMO, {}, ["--import-mode=append"], {}, Collects(ALL)),
    ("last-failed-with-cache", DEMO, {}, ["--lf", "-p", "cacheprovider"], {}, Collects(ALL)),
    ("exitfirst", DEMO, {}, ["-x"], {}, Collects(ALL)),
    ("keyword", DEMO, {}, ["-k", "fp32"], {}, Collects(4)),  # parity, fp32 self-agreement, speed, fp32 latency
    ("deselect-one", DEMO, {}, ["--deselect", "quantlab/suite/benchmarks.py::test_latency[fp32]"], {},
     Collects(ALL - 1)),
    ("verbose", DEMO, {}, ["-v"], {}, Collects(ALL)),
    ("python-files-everything", [*DEMO, "python_files = *.py"], {}, [], {}, Collects(ALL)),
    ("randomly-style-reordering", DEMO,
     {"conftest.py": "def pytest_collection_modifyitems(items):\n    items.reverse()\n"}, [], {}, Collects(ALL)),
    ("basetemp-elsewhere", DEMO, {}, ["--basetemp", "elsewhere/tmp"], {}, Collects(ALL)),
    ("missing-plugin-p", DEMO, {}, ["-p", "randomly"], {}, Refused('Error importing plugin "randomly"')),
    # --- paths: ini keys follow the ini file, command-line paths (addopts too) the current folder
    # (from a subfolder pytest collects that folder: the suite, not tests/)
    ("ini-paths-from-subfolder", ["quantlab_model = m.onnx", "quantlab_calib = calib"], {"cwd": "sub"}, [], {},
     Collects(SUITE)),
    ("addopts-paths-from-subfolder", ["addopts = --quantlab-model m.onnx --quantlab-calib calib"], {"cwd": "sub"},
     [], {}, Refused(r"quantlab: .*sub/m\.onnx: model file not found")),
    ("empty-model-option", [], {}, ["--quantlab-model="], {}, Refused(r"quantlab: .*: is a directory")),
    # --- the same setting in the ini file and on the command line: the command line wins
    ("cli-model-over-ini-model", ["quantlab_model = absent.onnx", "quantlab_calib = calib"], {},
     ["--quantlab-model", "m.onnx"], {}, Collects(ALL)),
    ("cli-demo-over-ini-model", ["quantlab_model = absent.onnx"], {}, ["--quantlab-demo"], {}, Collects(ALL)),
    ("cli-budget-bad-over-ini-good", [*DEMO, "quantlab_max_size_ratio = 0.5"], {},
     ["--quantlab-max-size-ratio", "half"], {}, Refused(r"quantlab: --quantlab-max-size-ratio = 'half' is not")),
    ("cli-model-and-demo", [], {}, ["--quantlab-model", "m.onnx", "--quantlab-demo"], {},
     Refused("quantlab: --quantlab-model and --quantlab-demo both name the model to gate")),
    ("ini-model-and-demo", ["quantlab_model = m.onnx", *DEMO], {}, [], {},
     Refused("quantlab: quantlab_model and quantlab_demo .* both name the model to gate")),
    # --- a user's conftest taking quantlab's names
    ("conftest-option-same-flag", [], {"conftest.py": OPTION.format('"--quantlab-model"')}, [], {},
     Refused("quantlab: a conftest adds the option --quantlab-model")),
    ("conftest-option-same-flag-other-dest", [], {"conftest.py": OPTION.format('"--quantlab-demo", dest="x"')},
     [], {}, Refused("quantlab: a conftest adds the option --quantlab-demo")),
    ("conftest-option-after-p-no", [], {"conftest.py": OPTION.format('"--quantlab-model"')},
     ["-p", "no:quantlab"], {}, Collects(1)),
    ("conftest-ini-key-other-type", ["quantlab_model = m.onnx"],
     {"conftest.py": "def pytest_addoption(parser):\n    parser.addini('quantlab_model', 'theirs', type='args')\n"},
     [], {}, Refused("quantlab: ini key quantlab_model is declared again")),
    ("conftest-ini-key-same-type", DEMO,
     {"conftest.py": "def pytest_addoption(parser):\n    parser.addini('quantlab_threads', 'theirs')\n"},
     [], {}, Collects(ALL)),
    ("root-fixture-shadows-the-gates", DEMO, {"conftest.py": FIXTURE}, [], {},
     Refused("quantlab: .*conftest.py defines the fixture quantlab_suite, which shadows")),
    ("tests-folder-fixture-is-theirs-alone", DEMO, {"tests/conftest.py": FIXTURE}, [], {}, Collects(ALL)),
    ("root-fixture-suite-off", [], {"conftest.py": FIXTURE}, [], {}, Collects(1)),
    # --- pyproject.toml instead of pytest.ini
    ("pyproject-ini-options", None,
     {"pyproject.toml": '[tool.pytest.ini_options]\nquantlab_demo = true\nquantlab_num_calib = "8"\n'}, [], {},
     Collects(ALL)),
    ("pyproject-native-toml-integer", None, {"pyproject.toml": "[tool.pytest]\nquantlab_demo = true\n"
                                                              "quantlab_num_calib = 8\n"}, [], {},
     Refused("config option 'quantlab_num_calib' expects a string")),
]


def _user_repo(pytester, ini_lines, files) -> None:
    """An optional pytest.ini, the user's test, m.onnx, calib/ (one image name), sub/ and `files` (but "cwd":
    the folder pytest starts in)."""
    if ini_lines is not None:
        pytester.makefile(".ini", pytest="\n".join(["[pytest]", *ini_lines]))
    pytester.mkdir("tests").joinpath("test_mine.py").write_text("def test_mine():\n    pass\n")
    shutil.copyfile(DEMO_MODEL, pytester.path / "m.onnx")
    pytester.mkdir("calib").joinpath("a.jpg").write_bytes(b"")  # listed, never read: collect-only
    pytester.mkdir("sub")
    for name, text in files.items():
        if name != "cwd":
            (pytester.path / name).write_text(text)


def _collected(out: str) -> int | None:
    """The count pytest reports after selection: 'N tests collected' or 'N/M tests collected'."""
    found = re.search(r"(\d+)(?:/\d+)? tests? collected", out)
    return int(found.group(1)) if found else None


@pytest.mark.parametrize(("ini_lines", "files", "args", "env", "expected"), [case[1:] for case in CASES],
                         ids=[case[0] for case in CASES])
def test_a_users_configuration_works_or_stops_in_one_line(pytester, monkeypatch, ini_lines, files, args, env,
                                                          expected):
    _user_repo(pytester, ini_lines, files)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    if "cwd" in files:
        monkeypatch.chdir(pytester.path / files["cwd"])
    collect = [] if isinstance(expected, Runs) else ["--collect-only"]
    cache = [] if "cacheprovider" in args else ["-p", "no:cacheprovider"]
    result = pytester.runpytest(*cache, *collect, *args)  # in this process: a second each, not five
    out, err = result.stdout.str(), "\n".join(line for line in result.stderr.lines if line.strip())
    assert "INTERNALERROR" not in out + err and "Traceback" not in out + err, out + err
    if isinstance(expected, Refused):
        assert result.ret == pytest.ExitCode.USAGE_ERROR, out + err
        assert re.search(expected.message, err), err
        if expected.message.startswith("quantlab:"):
            assert len(err.splitlines()) == 1 and err.startswith("ERROR: quantlab: "), err
    elif isinstance(expected, Runs):
        result.assert_outcomes(**expected.outcomes)
    else:
        assert result.ret == pytest.ExitCode.OK and _collected(out) == expected.count, out + err


def test_the_benchmarks_skip_with_the_reason_when_pytest_benchmark_is_off(pytester):
    """-p no:benchmark: the reason names pytest-benchmark and how to get it back."""
    _user_repo(pytester, DEMO, {})
    result = pytester.runpytest("-p", "no:cacheprovider", "-p", "no:benchmark", "-rs", "-k", "latency")
    result.assert_outcomes(skipped=BENCHMARKS, deselected=ALL - BENCHMARKS)
    result.stdout.fnmatch_lines(["*SKIPPED [[]3[]] *benchmarks.py: pytest-benchmark is not active (-p no:benchmark*"])


def test_text_a_model_carries_reaches_pytests_output_escaped(pytester):
    """A model whose task metadata holds a newline, a CI runner's log commands and a terminal escape: the
    suite refuses it in one line, shown as text (was: printed raw, a forged `::error` line in the CI log)."""
    import onnx

    model = onnx.load(str(DEMO_MODEL))
    onnx.helper.set_model_props(model, {**{p.key: p.value for p in model.metadata_props},
                                        "task": "x\n::error title=forged::passed\n##[section]evil\x1b[2J"})
    onnx.save(model, str(pytester.path / "m.onnx"))
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--quantlab-model", "m.onnx", "--co")
    text = result.stdout.str() + result.stderr.str()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "\x1b" not in text and "##[" not in text
    assert not any(line.lstrip().startswith("::") for line in text.splitlines())
    assert len([line for line in result.stderr.str().splitlines() if "quantlab" in line]) == 1
