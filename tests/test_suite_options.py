"""The suite's options and settings in process, on a real pytest config (pytester.parseconfig): bounds at their
edge, the command line over the ini file over the default, and which option each budget names."""

from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest

from quantlab.demo import DEMO_MODEL
from quantlab.gates import Budgets
from quantlab.suite.options import BY_NAME, Reader
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
