"""The plan of a run's variants (quantlab.variant), known answers in the fast run: which variants, in which order,
on which runtime, with which role, recipe and providers. The CLI and the suite both follow it, so a slip here
gates the wrong model everywhere (mutmut found 31 of plan_variants' mutants passing the fast run)."""

import pytest

from quantlab.devices import CPU_PROVIDER
from quantlab.errors import ConfigError
from quantlab.recipes import Mode
from quantlab.variant import (DYNAMIC, FP32, ONNXRUNTIME, TUNED, PlannedVariant, Role, VariantId,
                              check_recipes_fit, plan_variants)

CUDA = ("CUDAExecutionProvider", CPU_PROVIDER)


def _table(plan):
    return [(v.name, v.role, v.recipe) for v in plan]


def test_the_default_plan_is_fp32_the_gated_recipe_and_dynamic_as_contrast():
    assert _table(plan_variants(["auto"])) == [
        (FP32, Role.REFERENCE, None), ("auto", Role.GATED, "auto"), (DYNAMIC, Role.CONTRAST, DYNAMIC)]


def test_dynamic_comes_once_and_is_gated_only_when_asked_for():
    assert [v.name for v in plan_variants(["auto"], include_dynamic=False)] == [FP32, "auto"]
    plan = plan_variants(["auto", DYNAMIC])
    assert _table(plan) == [(FP32, Role.REFERENCE, None), ("auto", Role.GATED, "auto"),
                            (DYNAMIC, Role.GATED, DYNAMIC)]
    assert _table(plan_variants(["auto"], contrast=["ort-default"], include_dynamic=False)) == [
        (FP32, Role.REFERENCE, None), ("auto", Role.GATED, "auto"), ("ort-default", Role.CONTRAST, "ort-default")]


def test_another_runtime_repeats_fp32_and_the_recipes_but_not_dynamic():
    plan = plan_variants(["auto"], runtimes=(ONNXRUNTIME, "openvino"))
    assert _table(plan) == [
        (FP32, Role.REFERENCE, None), ("auto", Role.GATED, "auto"), (DYNAMIC, Role.CONTRAST, DYNAMIC),
        ("fp32@openvino", Role.CONTRAST, None), ("auto@openvino", Role.GATED, "auto")]


def test_a_recipe_made_for_one_runtime_runs_only_there_and_is_refused_without_it():
    plan = plan_variants(["auto", "ov-conv"], runtimes=(ONNXRUNTIME, "openvino"), include_dynamic=False)
    assert [v.name for v in plan] == [FP32, "auto", "fp32@openvino", "auto@openvino", "ov-conv@openvino"]
    with pytest.raises(ConfigError, match="recipe 'ov-conv' is made for openvino, which is not among the "
                                          r"runtimes \(onnxruntime\): add openvino"):
        plan_variants(["auto", "ov-conv"])
    check_recipes_fit(["auto", "ov-conv"], ["openvino"])  # fits: no error


def test_tuned_comes_last_gated_and_built_from_the_first_gated_recipe():
    plan = plan_variants(["u8s8", "auto"], tune=True, include_dynamic=False)
    assert _table(plan)[-1] == (TUNED, Role.GATED, "u8s8")
    with pytest.raises(ConfigError, match="^a tuned variant is made from the first gated recipe: name one$"):
        plan_variants([], tune=True)


def test_tune_is_refused_only_when_its_first_recipe_builds_fp16_on_the_providers():
    with pytest.raises(ConfigError, match="^a tuned variant moves quantized layers of 'auto' back to float, but it "
                                          "builds FP16 for CUDAExecutionProvider: put an INT8 recipe first$"):
        plan_variants(["auto"], tune=True, providers=CUDA)
    assert plan_variants(["u8s8", "auto"], tune=True, providers=CUDA)[-1].recipe == "u8s8"  # the second may
    assert plan_variants(["auto"], tune=True)[-1].name == TUNED  # auto on a CPU builds INT8


def test_every_variant_carries_the_providers_and_auto_resolves_for_them():
    plan = plan_variants(["auto"], providers=CUDA)
    assert {v.providers for v in plan} == {CUDA}
    auto = next(v for v in plan if v.name == "auto")
    assert auto.resolved().mode is Mode.FP16 and plan_variants(["auto"])[1].resolved().mode is Mode.STATIC
    assert next(v for v in plan if v.name == FP32).resolved() is None


@pytest.mark.parametrize(("name", "build", "runtime"), [
    ("auto", "auto", ONNXRUNTIME), ("auto@openvino", "auto", "openvino"), ("fp32@tensorrt", FP32, "tensorrt")])
def test_a_variant_name_is_its_build_at_its_runtime_and_back(name, build, runtime):
    parsed = VariantId.parse(name)
    assert (parsed.build, parsed.runtime) == (build, runtime) and str(parsed) == name


def test_a_planned_variant_s_name_and_gating_follow_its_role():
    gated = PlannedVariant(VariantId("auto", "openvino"), Role.GATED, "auto")
    assert gated.name == "auto@openvino" and gated.gated
    assert not PlannedVariant(VariantId(DYNAMIC), Role.CONTRAST, DYNAMIC).gated
