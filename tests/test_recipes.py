"""Recipes: string-to-enum conversion, validation with the valid choices, auto by CPU."""

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from quantlab.cpu import CpuInfo, parse_cpuinfo
from quantlab.errors import ConfigError
from quantlab.gates import Budgets, Check, parse_check
from quantlab.recipes import PRESETS, QType, Recipe, auto_recipe, parse_recipe_list, resolve_recipe


def _cpu(arch, *flags):
    return CpuInfo(arch=arch, model="test", flags=frozenset(flags), cores=2)


@pytest.mark.parametrize(
    ("cpu", "activation", "weight", "reduce_range"),
    [
        (_cpu("x86_64", "avx2", "avx512_vnni"), "u8", "s8", False),  # VNNI takes u8 x s8
        (_cpu("x86_64", "avx2", "avx_vnni"), "u8", "s8", False),  # AVX-VNNI (client cores)
        (_cpu("x86_64", "avx2"), "u8", "s8", True),  # no VNNI: 7-bit weights avoid saturation
        (_cpu("arm64", "asimddp"), "s8", "s8", False),  # ARM dot-product takes s8 x s8
    ],
    ids=["avx512-vnni", "avx-vnni", "avx2-only", "arm64"],
)
def test_auto_follows_onnxruntime_guidance(cpu, activation, weight, reduce_range):
    recipe = auto_recipe(cpu)
    assert (recipe.activation_type.value, recipe.weight_type.value, recipe.reduce_range) == (
        activation, weight, reduce_range)
    assert recipe.name == "auto" and recipe.keep_head_float and recipe.per_channel


def test_strings_become_enums_and_bad_values_list_choices():
    assert Recipe("x", activation_type="S8").activation_type is QType.S8
    with pytest.raises(ConfigError, match="choose one of u8, s8"):
        Recipe("x", weight_type="int4")
    with pytest.raises(ConfigError, match="num_calib"):
        Recipe("x", num_calib=0)


def test_replace_never_mutates_the_preset():
    before = PRESETS["u8s8"]
    changed = before.replace(num_calib=7)
    assert PRESETS["u8s8"] is before and before.num_calib == 100 and changed.num_calib == 7


def test_recipe_lists_are_checked():
    assert parse_recipe_list(" auto, s8s8 ,") == ["auto", "s8s8"]
    with pytest.raises(ConfigError, match="unknown: choose auto or one of"):
        parse_recipe_list("auto,fastest")
    assert resolve_recipe("ort-default").keep_head_float is False


@given(metric=st.sampled_from(["speedup", "size_ratio", "map_drop", "agreement"]),
       limit=st.floats(0.001, 100, allow_nan=False), suffix=st.sampled_from(["", "x"]))
def test_gate_strings_round_trip(metric, limit, suffix):
    check = parse_check(f"{metric}:{limit!r}{suffix if metric == 'speedup' else ''}")
    assert check == Check(metric, limit)


def test_gate_checks_read_like_sentences():
    assert parse_check("speedup:1.3x").fails({"name": "auto", "speedup": 1.1}) == (
        "auto: speedup 1.1 is below the minimum 1.3")
    # benchmark metrics name the variant under 'variant'; the source names the option that set the limit
    assert Check("size_ratio", 0.1, source="--quantlab-max-size-ratio").fails(
        {"variant": "auto", "size_ratio": 0.291}) == (
        "auto: size_ratio 0.291 is above the maximum 0.1 (--quantlab-max-size-ratio)")
    assert parse_check("map_drop:0.01").fails({"name": "auto", "map_drop": 0.005}) is None
    with pytest.raises(ConfigError, match="METRIC:LIMIT"):
        parse_check("fastness:2")


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


def test_cpuinfo_parsing_x86_and_arm():
    x86 = "processor\t: 0\nmodel name\t: Intel Xeon\nflags\t\t: fpu avx2 avx512_vnni\n"
    arm = "processor\t: 0\nFeatures\t: fp asimd asimddp\nCPU part\t: 0xd0c\n"
    assert parse_cpuinfo(x86) == ("Intel Xeon", frozenset({"fpu", "avx2", "avx512_vnni"}))
    assert parse_cpuinfo(arm)[1] == frozenset({"fp", "asimd", "asimddp"})
    assert _cpu("x86_64", "avx512_vnni").has_vnni and not _cpu("x86_64", "avx2").has_vnni
