"""Gate checks (quantlab.gates): the budgets of quantlab.measures' table as checks whose bounds are inclusive."""

import re

import pytest

from quantlab.errors import ConfigError
from quantlab.gates import Budgets, Check
from quantlab.measures import METRICS


@pytest.mark.parametrize(
    ("check", "value", "message"),
    [
        # a minimum holds at the limit itself and fails just below it
        (Check("speedup", 1.3), 1.3, None),
        (Check("speedup", 1.3), 1.29, "auto: speedup 1.29 is below the minimum 1.3"),
        (Check("speedup", 1.3), 1.31, None),
        (Check("agreement", 0.95), 0.95, None),
        (Check("agreement", 0.95), 0.9499, "auto: agreement 0.9499 is below the minimum 0.95"),
        (Check("map50_95", 0.6), 0.6, None),
        (Check("map50_95", 0.6), 0.5999, "auto: map50_95 0.5999 is below the minimum 0.6"),
        # a maximum holds at the limit itself and fails just above it
        (Check("size_ratio", 0.3), 0.3, None),
        (Check("size_ratio", 0.3), 0.3001, "auto: size_ratio 0.3001 is above the maximum 0.3"),
        (Check("size_ratio", 0.3), 0.29, None),
        (Check("map_drop", 0.01), 0.01, None),
        (Check("map_drop", 0.01), 0.0101, "auto: map_drop 0.0101 is above the maximum 0.01"),
        # a negative mAP drop (INT8 better than FP32) is well within any budget
        (Check("map_drop", 0.01), -0.02, None),
        # zero is a measurement, not a missing one: the blind head's agreement and mAP
        (Check("agreement", 0.95), 0.0, "auto: agreement 0 is below the minimum 0.95"),
        (Check("map50_95", 0.6), 0.0, "auto: map50_95 0 is below the minimum 0.6"),
        # not measured (no labels, say): nothing to gate, whatever the limit
        (Check("map_drop", 0.01), None, None),
        (Check("speedup", 1.3), None, None),
    ],
    ids=["min-at-limit", "min-below", "min-above", "agreement-at-limit", "agreement-below", "map-at-limit",
         "map-below", "max-at-limit", "max-above", "max-below", "drop-at-limit", "drop-above", "drop-negative",
         "agreement-zero", "map-zero", "drop-unmeasured", "speed-unmeasured"],
)
def test_bounds_are_inclusive_and_failures_read_like_sentences(check, value, message):
    assert check.fails({"name": "auto", check.metric: value}) == message


def test_a_missing_metric_is_not_gated():
    assert Check("speedup", 1.3).fails({"name": "auto"}) is None


def test_a_metric_that_must_be_measured_fails_when_missing():
    """Without labels the accuracy gate is agreement; FP32 detecting nothing leaves it unmeasured."""
    check = Budgets().accuracy_check(labelled=False)
    assert check.fails({"name": "auto", "agreement": None}) == (
        "auto: agreement not measured: the FP32 model detects nothing on these images, so accuracy is unproven")
    assert check.fails({"name": "auto", "agreement": 0.99}) is None
    assert Budgets().accuracy_check(labelled=True) == Check("map_drop", 0.01)


def test_direction_of_every_metric():
    assert {m.name: Check(m.name, 1.0).is_minimum for m in METRICS} == {
        "size_bytes": False, "size_ratio": False, "map50": True, "map50_95": True, "box_map50_95": True,
        "map_drop": False, "agreement": True, "memory_bytes": False, "memory_spread": False, "memory_ratio": False,
        "speedup": True, "box_cosine": True, "score_cosine": True, "task_cosine": True, "top1_agreement": True}


def test_str_is_the_gate_syntax():
    assert [str(Check("speedup", 1.3)), str(Check("size_ratio", 0.3))] == ["speedup:1.3x", "size_ratio:0.3"]


PARITY = object()  # the output parity bounds, gated on every variant in every situation
PARITY_CHECKS = ["box_cosine:0.999", "score_cosine:0.98", "task_cosine:0.98", "top1_agreement:0.95"]


@pytest.mark.parametrize(
    ("labelled", "speed_gated", "expected"),
    [
        (True, True, ["size_ratio:0.3", "map_drop:0.01", "speedup:1.3x", PARITY]),
        (False, True, ["size_ratio:0.3", "agreement:0.95", "speedup:1.3x", PARITY]),  # no labels: agreement
        (True, False, ["size_ratio:0.3", "map_drop:0.01", PARITY]),  # dynamic variants are not speed-gated
    ],
    ids=["labelled", "unlabelled", "not-speed-gated"],
)
def test_budget_checks_by_situation(labelled, speed_gated, expected):
    expected = [c for e in expected for c in (PARITY_CHECKS if e is PARITY else [e])]
    assert [str(c) for c in Budgets().checks(labelled, speed_gated)] == expected


def test_budgets_carry_their_values():
    budgets = Budgets(max_map_drop=0.02, max_size_ratio=0.4, min_speedup=1.1, min_agreement=0.9)
    parity = {"min_box_cosine": 0.999, "min_score_cosine": 0.98, "min_task_cosine": 0.98, "min_top1_agreement": 0.95}
    assert budgets.as_dict() == {"max_size_ratio": 0.4, "max_map_drop": 0.02, "min_agreement": 0.9,
                                 "max_memory_ratio": None, "min_speedup": 1.1, **parity}
    assert [str(c) for c in budgets.checks(labelled=False)] == ["size_ratio:0.4", "agreement:0.9", "speedup:1.1x",
                                                                *PARITY_CHECKS]
    assert Budgets().as_dict() == {"max_size_ratio": 0.30, "max_map_drop": 0.01, "min_agreement": 0.95,
                                   "max_memory_ratio": None, "min_speedup": 1.3, **parity}
    assert [str(c) for c in Budgets(max_memory_ratio=0.9).checks(labelled=True, speed_gated=False)] == [
        "size_ratio:0.3", "map_drop:0.01", "memory_ratio:0.9", *PARITY_CHECKS]
    assert Budgets(min_box_cosine=0.5).check("box_cosine").limit == 0.5  # a parity bound is a budget too
    with pytest.raises(ConfigError, match="unknown budget"):
        Budgets(min_fastness=2.0)


def test_gate_checks_read_like_sentences():
    assert Check("speedup", 1.3).fails({"name": "auto", "speedup": 1.1}) == (
        "auto: speedup 1.1 is below the minimum 1.3")
    # benchmark metrics name the variant under 'variant'; the source names the option that set the limit
    assert Check("size_ratio", 0.1, source="--quantlab-max-size-ratio").fails(
        {"variant": "auto", "size_ratio": 0.291}) == (
        "auto: size_ratio 0.291 is above the maximum 0.1 (--quantlab-max-size-ratio)")
    assert Check("map_drop", 0.01).fails({"name": "auto", "map_drop": 0.005}) is None


@pytest.mark.parametrize(
    ("changes", "raises"),
    [
        ({}, None),  # the defaults
        ({"max_map_drop": 0.0, "min_agreement": 1.0}, None),  # the strictest fractions
        ({"max_map_drop": float("nan")}, "max-map-drop = nan is not a number in [0, 1]"),
        ({"max_map_drop": -0.01}, "max-map-drop = -0.01"),
        ({"min_agreement": 1.5}, "min-agreement = 1.5 is not a number in [0, 1]"),
        ({"max_size_ratio": 0.0}, "max-size-ratio = 0.0 is not a number in (0, 10]"),  # nothing is smaller
        ({"min_speedup": float("inf")}, "min-speedup = inf is not a number in (0, 100]"),
        ({"max_memory_ratio": None}, None),  # off by default
        ({"max_memory_ratio": 0.0}, "max-memory-ratio = 0.0"),
    ],
)
def test_budgets_must_be_finite_and_in_range(changes, raises):
    if raises is None:
        Budgets(**changes)
    else:
        with pytest.raises(ConfigError, match=re.escape(raises)):
            Budgets(**changes)


def test_budgets_copy_and_pickle_as_values():
    import copy
    import pickle

    budgets = Budgets(min_speedup=1.1, max_memory_ratio=0.9)
    assert copy.deepcopy(budgets) == budgets and pickle.loads(pickle.dumps(budgets)) == budgets


@pytest.mark.parametrize("changes", [{"max_map_drop": None}, {"max_size_ratio": "0.3"}, {"min_speedup": True}],
                         ids=["none-for-a-budget-on-by-default", "text", "bool"])
def test_only_an_off_by_default_budget_may_be_off_and_a_limit_is_a_number(changes):
    with pytest.raises(ConfigError, match="is not a number in"):
        Budgets(**changes)


def test_a_value_that_is_not_finite_fails_every_check():
    """A NaN passes every comparison; a cosine is NaN when an output holds inf."""
    for check in (Check("box_cosine", 0.999), Check("size_ratio", 0.3)):
        assert check.fails({"name": "auto", check.metric: float("nan")}) == (
            f"auto: {check.metric} is nan, not a finite number")
