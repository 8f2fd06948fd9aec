"""Recipes: string-to-enum conversion, validation with the valid choices, auto by CPU."""

from pathlib import Path

import pytest

from quantlab.cpu import CpuInfo, parse_cpuinfo, parse_py_cpuinfo
from quantlab.errors import ConfigError
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


def test_cpuinfo_parsing_x86_and_arm():
    x86 = "processor\t: 0\nmodel name\t: Intel Xeon\nflags\t\t: fpu avx2 avx512_vnni\n"
    arm = "processor\t: 0\nFeatures\t: fp asimd asimddp\nCPU part\t: 0xd0c\n"
    assert parse_cpuinfo(x86) == ("Intel Xeon", frozenset({"fpu", "avx2", "avx512_vnni"}))
    assert parse_cpuinfo(arm)[1] == frozenset({"fp", "asimd", "asimddp"})
    assert _cpu("x86_64", "avx512_vnni").has_vnni and not _cpu("x86_64", "avx2").has_vnni


@pytest.mark.parametrize("py_cpuinfo_flags, kernel_flags", [
    (["avx2", "avx512vnni"], {"avx2", "avx512_vnni"}),  # Windows and macOS x86: CPUID names, without underscores
    (["AVXVNNI", "fma"], {"avx_vnni", "fma"}),  # macOS sysctl lists its features in capitals
    (["asimd", "asimddp"], {"asimd", "asimddp"}),  # ARM names are the kernel's already
], ids=["avx512-vnni", "avx-vnni-sysctl", "arm"])
def test_py_cpuinfo_flags_are_spelt_as_the_kernel_spells_them(py_cpuinfo_flags, kernel_flags):
    model, flags = parse_py_cpuinfo({"brand_raw": "Some CPU", "flags": py_cpuinfo_flags})
    assert (model, flags) == ("Some CPU", frozenset(kernel_flags))
    assert CpuInfo("x86_64", model, flags, 2).has_vnni == bool(kernel_flags & {"avx512_vnni", "avx_vnni"})


@pytest.mark.skipif(not Path("/proc/cpuinfo").is_file(), reason="compares py-cpuinfo with Linux's /proc/cpuinfo")
def test_py_cpuinfo_and_proc_cpuinfo_agree_on_this_cpu():
    """Where there is no /proc/cpuinfo, py-cpuinfo must see what the kernel would have shown."""
    import cpuinfo

    _, kernel = parse_cpuinfo(Path("/proc/cpuinfo").read_text())
    _, seen = parse_py_cpuinfo(cpuinfo.get_cpu_info())
    assert CpuInfo("x86_64", "", seen, 2).notable_flags() == CpuInfo("x86_64", "", kernel, 2).notable_flags()


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"mode": "dynamic", "activation_type": "s8"}, "dynamic quantization computes U8 activations"),
        ({"quant_format": "qlinear"}, r"QuantFormat 'qlinear' is not valid: choose one of qdq, qoperator"),
        ({"calibrate_method": "kl"}, "CalibMethod 'kl' is not valid: choose one of minmax, entropy, percentile"),
        ({"num_calib": -3}, "num_calib must be at least 1, got -3"),
    ],
    ids=["dynamic-s8", "format", "calibration", "negative-calib"],
)
def test_invalid_settings_name_the_value_and_the_choices(changes, message):
    with pytest.raises(ConfigError, match=message):
        Recipe("x", **changes)


def test_enum_values_and_names_in_any_case():
    recipe = Recipe("x", mode="DYNAMIC", quant_format="QOperator", calibrate_method="Entropy")
    assert (recipe.mode.value, recipe.quant_format.value, recipe.calibrate_method.value) == (
        "dynamic", "qoperator", "entropy")
    assert recipe.settings()["mode"] == "dynamic" and recipe.settings()["exclude_nodes"] == []


def test_a_recipe_passes_through_and_auto_records_its_source():
    custom = Recipe("mine", per_channel=False)
    assert resolve_recipe(custom) is custom
    auto = resolve_recipe("auto", _cpu("x86_64", "avx2"))
    assert auto == PRESETS["u8s8-rr"].replace(name="auto", align_channels=8)  # the preset's settings, renamed, padded for AVX2
    assert auto.description.startswith("auto on x86_64: u8s8-rr (")
