"""The suite's options and settings in process, on a real pytest config (pytester.parseconfig): bounds at their
edge, the command line over the ini file over the default, and which option each budget names."""

from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest

from quantlab.demo import DEMO_MODEL
from quantlab.gates import Budgets
from quantlab.settings import PYTEST
from quantlab.suite.options import BY_NAME, SETTINGS, Reader, timing_asked_for
from quantlab.suite.settings import SuiteConfig, read_suite
from quantlab.variant import TUNED

pytest_plugins = ["pytester"]


@pytest.mark.parametrize(
    ("args", "name", "expected"),
    [
        (["--quantlab-num-calib", "1"], "num_calib", 1),  # the smallest count allowed
        (["--quantlab-num-calib", "0"], "num_calib", "must be at least 1"),
        (["--quantlab-threads", "0"], "threads", "must be at least 1"),
        (["--quantlab-max-map-drop", "inf"], "max_map_drop", "must be finite"),
        (["--quantlab-min-speedup", "nan"], "min_speedup", "must be finite"),
        ([], "num_calib", 100),  # the defaults, with no ini key
        ([], "min_speedup", Budgets().min_speedup),
        ([], "max_size_ratio", Budgets().max_size_ratio),
        ([], "max_map_drop", Budgets().max_map_drop),
        ([], "min_agreement", Budgets().min_agreement),
    ],
    ids=["count-1", "count-0", "threads-0", "inf-budget", "nan-budget", "default-num-calib", "default-speedup",
         "default-size", "default-map-drop", "default-agreement"],
)
def test_option_values_at_their_bounds(pytester, args, name, expected):
    reader = Reader(pytester.parseconfig(*args))
    if isinstance(expected, str):
        with pytest.raises(pytest.UsageError, match=expected):
            reader.value(name)
    else:
        assert reader.value(name) == expected


def test_the_command_line_wins_over_the_ini_file_which_wins_over_the_default(pytester):
    pytester.makeini("[pytest]\nquantlab_num_calib = 5\nquantlab_threads = 3\n")
    reader = Reader(pytester.parseconfig("--quantlab-num-calib", "7"))
    assert (reader.value("num_calib"), reader.value("threads"), reader.value("recipes")) == (7, 3, "auto")
    assert (reader.given("num_calib"), reader.given("threads"), reader.given("recipes")) == (
        "--quantlab-num-calib", "quantlab_threads", None)


def test_a_flag_from_either_place_turns_a_bool_on(pytester):
    assert Reader(pytester.parseconfig("--quantlab-tune")).value("tune") is True
    pytester.makeini("[pytest]\nquantlab_tune = true\n")
    assert Reader(pytester.parseconfig()).value("tune") is True


def _suite(**changes) -> SuiteConfig:
    values = dict(model=Path("m.onnx"), dataset=None, calib_images=(), num_calib=8, recipes=("auto", "dynamic"),
                  threads=1, providers=("CPUExecutionProvider",), budgets=Budgets(min_speedup=1.5), tune=True)
    return SuiteConfig(**{**values, **changes})


def test_each_budget_names_its_own_option_and_limit():
    suite = _suite()
    for metric, option, limit in [("speedup", "min_speedup", 1.5), ("size_ratio", "max_size_ratio", 0.30),
                                  ("map_drop", "max_map_drop", 0.01), ("agreement", "min_agreement", 0.95)]:
        check = suite.check(metric)
        assert (check.metric, check.limit, check.source) == (metric, limit, BY_NAME[option].flag)
    assert suite.accuracy_check(labelled=True).source == "--quantlab-max-map-drop"
    assert suite.accuracy_check(labelled=False).source == "--quantlab-min-agreement"


def test_the_tuned_variant_is_gated_and_speed_gated_as_a_static_model():
    suite = _suite()
    assert suite.gated(TUNED) and suite.gated("auto") and not suite.gated("fp32")
    assert TUNED in suite.static_variants and "dynamic" not in suite.static_variants
    assert TUNED not in _suite(tune=False).variants


def test_read_suite_strips_excluded_names_and_finds_calibration_images_in_sub_folders(pytester):
    """' name , ' names a node, and images one folder down are calibration images (folders of classes)."""
    node = onnx.load(DEMO_MODEL).graph.node[0].name
    nested = pytester.path / "calib" / "cats"
    nested.mkdir(parents=True)
    cv2.imwrite(str(nested / "a.png"), np.zeros((8, 8, 3), np.uint8))
    suite = read_suite(pytester.parseconfig("--quantlab-model", str(DEMO_MODEL), "--quantlab-calib", "calib",
                                            "--quantlab-exclude", f" {node} , "))
    assert suite.exclude == (node,) and [p.name for p in suite.calib_images] == ["a.png"]


# Reader.model and enabled: which model the suite gates, and whether it is on at all (mutants of these passed
# the fast run: the command-line/ini precedence lived only in the slow pytester-subprocess tests)
@pytest.mark.parametrize(("args", "ini", "expected"), [
    ([], "", None),  # nothing named: off
    (["--quantlab-model", "m.onnx"], "", "m.onnx"),
    (["--quantlab-demo"], "", "demo"),
    ([], "quantlab_model = sub/m.onnx", "sub/m.onnx"),  # relative to the ini file's folder
    ([], "quantlab_demo = true", "demo"),
    (["--quantlab-model", "m.onnx"], "quantlab_demo = true", "m.onnx"),  # the command line wins...
    (["--quantlab-demo"], "quantlab_model = m.onnx", "demo"),  # ...whichever it names
], ids=["none", "cli-model", "cli-demo", "ini-model", "ini-demo", "cli-model-over-ini-demo", "cli-demo-over-ini-model"])
def test_the_model_gated_and_whether_the_suite_is_on(pytester, args, ini, expected):
    if ini:
        pytester.makeini(f"[pytest]\n{ini}\n")
    reader = Reader(pytester.parseconfig(*args))
    model = reader.model()
    if expected is None:
        assert model is None and not reader.enabled()
    elif expected == "demo":
        assert model is None and reader.enabled()
    else:
        base = pytester.path if args else Path(reader.config.inipath).parent
        assert model == base / expected and reader.enabled()


@pytest.mark.parametrize(("args", "ini", "named"), [
    (["--quantlab-model", "m.onnx", "--quantlab-demo"], "", "--quantlab-model and --quantlab-demo"),
    ([], "quantlab_model = m.onnx\nquantlab_demo = true", "quantlab_model and quantlab_demo"),
], ids=["command-line", "ini"])
def test_naming_a_model_and_the_demo_in_one_place_is_refused_naming_both(pytester, args, ini, named):
    if ini:
        pytester.makeini(f"[pytest]\n{ini}\n")
    with pytest.raises(pytest.UsageError, match=f"^quantlab: {named}.* both name the model to gate: give one$"):
        Reader(pytester.parseconfig(*args)).model()


def test_nothing_given_reads_as_nothing_given(pytester):
    """No option and no ini key: no flag counts as given (a bool's default is None, not False), the bools
    are off and each value is the suite's own default (contrast: dynamic, where `quantlab run`'s is wider)."""
    reader = Reader(pytester.parseconfig())
    assert reader.stray_flags() == [] and not reader.enabled()
    assert [reader.given(s.name) for s in SETTINGS] == [None] * len(SETTINGS)
    assert reader.value("tune") is False and reader.value("demo") is False
    assert reader.value("contrast") == BY_NAME["contrast"].default_for(PYTEST) == "dynamic"


def test_a_bool_set_in_the_ini_file_counts_as_given_there(pytester):
    pytester.makeini("[pytest]\nquantlab_tune = true\n")
    assert Reader(pytester.parseconfig()).given("tune") == "quantlab_tune"


@pytest.mark.parametrize(("args", "ini", "message"), [
    (["--quantlab-num-calib", "many"], "", "quantlab: --quantlab-num-calib = 'many' is not an integer"),
    (["--quantlab-min-speedup", "fast"], "", "quantlab: --quantlab-min-speedup = 'fast' is not a number"),
    ([], "quantlab_threads = two", "quantlab: quantlab_threads in {ini} = 'two' is not an integer"),
], ids=["cli-int", "cli-float", "ini-int"])
def test_a_bad_value_is_named_with_where_it_was_set(pytester, args, ini, message):
    name = "threads" if ini else "num_calib" if "num-calib" in args[0] else "min_speedup"
    if ini:
        pytester.makeini(f"[pytest]\n{ini}\n")
    reader = Reader(pytester.parseconfig(*args))
    with pytest.raises(pytest.UsageError) as error:
        reader.value(name)
    assert str(error.value) == message.format(ini=reader.config.inipath)


def test_ini_paths_are_relative_to_the_ini_file_not_the_rootdir(pytester):
    """`-c sub/pytest.ini --rootdir .`: the ini file's folder is sub/, the rootdir is not; with no ini file at
    all (-o only) paths are relative to the rootdir."""
    (pytester.path / "sub").mkdir()
    (pytester.path / "sub" / "pytest.ini").write_text("[pytest]\nquantlab_model = m.onnx\n")
    reader = Reader(pytester.parseconfig("-c", "sub/pytest.ini", "--rootdir", str(pytester.path)))
    assert reader.config.rootpath == pytester.path and reader.model() == pytester.path / "sub" / "m.onnx"
    bare = Reader(pytester.parseconfig("-o", "quantlab_model=m.onnx", "--rootdir", str(pytester.path)))
    assert bare.config.inipath is None and bare.model() == pytester.path / "m.onnx"
    assert Reader(pytester.parseconfig("--quantlab-model", "/abs/m.onnx")).model() == Path("/abs/m.onnx")


def test_an_ini_key_declared_again_by_a_plugin_is_refused_naming_it(pytester):
    pytester.makeconftest("def pytest_addoption(parser):\n    parser.addini('quantlab_threads', 'theirs', type='linelist')\n")
    pytester.makeini("[pytest]\nquantlab_threads = 2\n")
    with pytest.raises(pytest.UsageError) as error:
        Reader(pytester.parseconfig()).value("threads")
    assert str(error.value) == ("quantlab: ini key quantlab_threads is declared again by a conftest or plugin (it now "
                                "reads as list, not int): rename theirs")


def test_every_option_s_help_names_its_ini_key_and_the_suite_s_default(pytester, monkeypatch):
    monkeypatch.setenv("COLUMNS", "400")  # one line per option
    lines = pytester.runpytest_inprocess("--help").stdout.lines
    assert "quantlab: the model and data the regression gates run on:" in lines

    def help_of(flag):  # the text beside the flag, or on the next line where the flag is too long for its column
        at = next(i for i, line in enumerate(lines) if line.strip().startswith(flag))
        return lines[at].split(flag, 1)[1].strip() or lines[at + 1].strip()
    assert help_of("--quantlab-num-calib=QUANTLAB_NUM_CALIB").endswith("(ini quantlab_num_calib; default 100)")
    assert help_of("--quantlab-contrast=QUANTLAB_CONTRAST").endswith("(ini quantlab_contrast; default dynamic)")
    assert help_of("--quantlab-calib=QUANTLAB_CALIB").startswith(
        "calibration image folder (default: the data.yaml's val images)")
    assert help_of("--quantlab-tune").endswith("(ini quantlab_tune)")  # a flag: no default shown
    assert help_of("quantlab_num_calib (string):") == BY_NAME["num_calib"].help_for(PYTEST)


@pytest.mark.parametrize(("args", "timed"), [
    ([], False), (["--benchmark-only"], True), (["--benchmark-enable"], True), (["--benchmark-json", "b.json"], True),
    (["--benchmark-autosave"], True), (["--benchmark-save", "x"], True), (["-p", "no:benchmark"], False),
], ids=["plain", "only", "enable", "json", "autosave", "save", "no-benchmark-plugin"])
def test_a_run_is_timed_when_pytest_benchmark_is_asked_to_time_or_save(pytester, args, timed):
    assert timing_asked_for(pytester.parseconfig(*args)) is timed


# read_suite in process (its checks lived only in the slow pytester-subprocess tests)
@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    """4 labelled val images and 4 calibration images of the demo dataset."""
    from quantlab.demo.shapes import write_dataset

    return write_dataset(tmp_path_factory.mktemp("tiny"), splits=("val", "calib"), sizes={"val": 4, "calib": 4})


def test_a_dataset_is_read_and_its_images_calibrate_where_no_folder_is_given(pytester, tiny_data):
    suite = read_suite(pytester.parseconfig("--quantlab-model", str(DEMO_MODEL), "--quantlab-data", str(tiny_data)))
    assert suite.model == DEMO_MODEL and suite.dataset is not None and len(suite.dataset.images) == 4
    assert suite.calib_images == tuple(suite.dataset.images)
    calib = tiny_data.parent / "images" / "calib"
    suite = read_suite(pytester.parseconfig("--quantlab-model", str(DEMO_MODEL), "--quantlab-data", str(tiny_data),
                                            "--quantlab-calib", str(calib)))
    assert sorted(p.parent for p in suite.calib_images) == [calib] * 4  # the folder wins for calibration
    assert read_suite(pytester.parseconfig("--quantlab-demo")).calib_images == ()  # demo data made later


def test_a_dataset_whose_classes_do_not_match_the_model_is_refused(pytester, tiny_data):
    wrong = tiny_data.with_name("two_classes.yaml")
    wrong.write_text("train: images/val\nval: images/val\nnames: [circle, rectangle]\n")
    with pytest.raises(pytest.UsageError, match=rf"^quantlab: {wrong}: lists 2 class names but the model {DEMO_MODEL} "
                                                "has 4 classes"):
        read_suite(pytester.parseconfig("--quantlab-model", str(DEMO_MODEL), "--quantlab-data", str(wrong)))


def test_a_model_of_one_s_own_needs_images_to_gate_on(pytester):
    own = pytester.path / "own.onnx"
    own.write_bytes(DEMO_MODEL.read_bytes())
    with pytest.raises(pytest.UsageError) as error:
        read_suite(pytester.parseconfig("--quantlab-model", str(own)))
    assert str(error.value) == (f"quantlab: {own}: give --quantlab-data (a data.yaml: mAP) or --quantlab-calib (an "
                                "image folder: agreement with FP32) to gate it on")


@pytest.mark.parametrize(("args", "message"), [
    (["--quantlab-exclude", "nope,/model.0/conv/Conv,nah"],
     "quantlab: --quantlab-exclude: node(s) nah, nope not in {model}"),
    (["--quantlab-contrast", "bogus"], "quantlab: --quantlab-contrast: recipe 'bogus' is unknown"),
    (["--quantlab-recipes", "bogus"], "quantlab: --quantlab-recipes: recipe 'bogus' is unknown"),
    (["--quantlab-recipes", "ov-conv"], "quantlab: --quantlab-runtimes: recipe 'ov-conv' is made for openvino"),
    (["--quantlab-max-map-drop", "2"], "quantlab: --quantlab-max-map-drop: "),
    (["--quantlab-model", "missing.onnx"], "quantlab: {missing}"),
], ids=["exclude", "contrast", "recipes", "runtimes", "budget", "missing-model"])
def test_each_bad_setting_is_one_line_naming_the_option_it_came_from(pytester, args, message):
    config = pytester.parseconfig(*(args if "--quantlab-model" in args else ["--quantlab-demo", *args]))
    with pytest.raises(pytest.UsageError) as error:
        read_suite(config)
    text = str(error.value)
    assert text.startswith(message.format(model=DEMO_MODEL, missing=pytester.path / "missing.onnx")), text
    assert "\n" not in text


def test_every_setting_read_reaches_the_suite_s_config(pytester, tmp_path):
    suite = read_suite(pytester.parseconfig(
        "--quantlab-demo", "--quantlab-num-calib", "7", "--quantlab-threads", "3", "--quantlab-tune",
        "--quantlab-max-map-drop", "0.02", "--quantlab-min-speedup", "1.1", "--quantlab-max-memory-ratio", "0.9",
        "--quantlab-recipes", "auto,u8s8", "--quantlab-contrast", "none", "--quantlab-cache-dir", str(tmp_path)))
    assert (suite.num_calib, suite.threads, suite.tune, suite.cache_dir) == (7, 3, True, tmp_path)
    assert (suite.budgets.max_map_drop, suite.budgets.min_speedup, suite.budgets.max_memory_ratio) == (0.02, 1.1, 0.9)
    assert (suite.recipes, suite.contrast, suite.model) == (("auto", "u8s8"), (), DEMO_MODEL)


def test_a_bad_recipe_in_the_ini_file_names_the_ini_key(pytester):
    pytester.makeini("[pytest]\nquantlab_demo = true\nquantlab_recipes = bogus\n")
    with pytest.raises(pytest.UsageError, match="^quantlab: quantlab_recipes: recipe 'bogus' is unknown"):
        read_suite(pytester.parseconfig())


def test_tensorrt_where_it_cannot_run_is_kept_for_a_skip_while_an_unknown_runtime_is_refused(pytester, monkeypatch):
    """One configuration for many runners: TensorRT's variants are skipped, with the reason, where it cannot run;
    every other runtime must be able to run here."""
    from quantlab import sessions
    from quantlab.suite import settings

    monkeypatch.setattr(sessions, "runtime_unavailable", lambda runtime: "no TensorRT here")
    monkeypatch.setattr(settings, "runtime_unavailable", lambda runtime: "no TensorRT here")
    monkeypatch.setattr(settings, "require", lambda runtime: runtime == "tensorrt" and pytest.fail("TensorRT required"))
    suite = read_suite(pytester.parseconfig("--quantlab-demo", "--quantlab-runtimes", "tensorrt"))
    assert suite.runtimes == ("onnxruntime", "tensorrt") and suite.unavailable == {"tensorrt": "no TensorRT here"}
    assert suite.skip_reason("auto@tensorrt") == "auto@tensorrt: runtime tensorrt: no TensorRT here"
    assert suite.skip_reason("auto") is None
    with pytest.raises(pytest.UsageError, match="^quantlab: --quantlab-runtimes: "):
        read_suite(pytester.parseconfig("--quantlab-demo", "--quantlab-runtimes", "nosuchruntime"))
