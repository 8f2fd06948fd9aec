"""What a variant is: a build (fp32 or a recipe) on a runtime, with its role, and the one plan of a run's
variants that the CLI and the pytest suite both follow."""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass

from quantlab.errors import ConfigError
from quantlab.devices import CPU_PROVIDER, on_gpu
from quantlab.recipes import Mode, Recipe, parse_recipe_list, resolve_recipe

ONNXRUNTIME = "onnxruntime"  # the reference runtime (quantlab.sessions opens sessions on it and the others)
TENSORRT = "tensorrt"  # onnxruntime with TensorRT first (quantlab.providers.tensorrt_session)
FP32 = "fp32"
DYNAMIC = "dynamic"
TUNED = "tuned"  # the first gated recipe with its most sensitive layers in float (quantlab tune)
NO_CONTRAST = "none"


class Role(enum.Enum):
    REFERENCE = "reference"  # FP32 on onnxruntime: every comparison's baseline
    GATED = "gated"  # a recipe the user asked for (or tuned): the budgets apply
    CONTRAST = "contrast"  # shown beside them, never gated: FP32 on another runtime, dynamic, contrast recipes


@dataclass(frozen=True)
class VariantId:
    """A build on a runtime; written 'auto' on onnxruntime and 'auto@openvino' on another runtime."""

    build: str
    runtime: str = ONNXRUNTIME

    @classmethod
    def parse(cls, name: str) -> VariantId:
        build, _, runtime = name.partition("@")
        return cls(build, runtime or ONNXRUNTIME)

    def __str__(self) -> str:
        return self.build if self.runtime == ONNXRUNTIME else f"{self.build}@{self.runtime}"

    @property
    def is_fp32(self) -> bool:
        return self.build == FP32


@dataclass(frozen=True)
class PlannedVariant:
    """One variant of a run, its role in it, the recipe its build quantizes with (None for FP32; tuned's is
    the first gated recipe's), and the execution providers its onnxruntime sessions run on (auto picks by them)."""

    id: VariantId
    role: Role
    recipe: str | None = None
    providers: tuple[str, ...] = (CPU_PROVIDER,)

    @property
    def name(self) -> str:
        return str(self.id)

    @property
    def gated(self) -> bool:
        return self.role is Role.GATED

    def resolved(self) -> Recipe | None:
        """The recipe the build is made with, auto resolved for the variant's providers; None for FP32."""
        return None if self.recipe is None else resolve_recipe(self.recipe, providers=self.providers)

    @property
    def speed_gated(self) -> bool:
        """Gated on speed too: a build meant to beat FP32 where it runs. Static INT8 on a CPU (onnxruntime's and
        OpenVINO's; dynamic's ConvInteger is slower than FP32 there, by design), FP16 on a GPU provider, either on
        TensorRT. INT8 on onnxruntime's CUDA provider is not: its QLinear ops go back to the CPU (report's note)."""
        recipe = self.resolved()
        if not self.gated or recipe is None:
            return False
        if self.id.runtime == TENSORRT:
            return recipe.mode in (Mode.STATIC, Mode.FP16)
        if self.id.runtime == ONNXRUNTIME and on_gpu(self.providers):
            return recipe.mode is Mode.FP16
        return recipe.mode is Mode.STATIC

    @property
    def size_gated(self) -> bool:
        """Gated on size: an INT8 build (an FP16 one is half of FP32 by construction, never the INT8 budget)."""
        recipe = self.resolved()
        return self.gated and recipe is not None and recipe.mode is not Mode.FP16


def plan_variants(gated: Sequence[str], contrast: Sequence[str] = (), runtimes: Sequence[str] = (ONNXRUNTIME,),
                  tune: bool = False, include_dynamic: bool = True,
                  providers: Sequence[str] = (CPU_PROVIDER,)) -> tuple[PlannedVariant, ...]:
    """fp32 first, then each recipe, then dynamic (once), on onnxruntime; then fp32 and each recipe on every
    other runtime (dynamic's ConvInteger is onnxruntime's contrast, not repeated); then tuned. A recipe made
    for some runtimes only (Recipe.runtimes) runs on those; one that none of `runtimes` fits is an error.

    A recipe in `gated` is gated on every runtime it runs on, and so is tuned (on onnxruntime, built from the
    first gated recipe); the rest are contrast, FP32 on onnxruntime the reference. `providers`: the onnxruntime
    sessions' execution providers, which decide what auto builds and what is gated on speed (speed_gated).
    """
    if tune and not gated:
        raise ConfigError("a tuned variant is made from the first gated recipe: name one")
    if tune and resolve_recipe(gated[0], providers=providers).mode is Mode.FP16:
        raise ConfigError(f"a tuned variant moves quantized layers of {gated[0]!r} back to float, but it builds FP16 "
                          f"for {providers[0]}: put an INT8 recipe first")
    recipes = list(dict.fromkeys([*gated, *contrast]))
    check_recipes_fit(recipes, runtimes)
    builds = [FP32, *recipes] + ([DYNAMIC] if include_dynamic and DYNAMIC not in recipes else [])
    ids = [VariantId(b) for b in builds if _fits(b, ONNXRUNTIME)]
    for runtime in dict.fromkeys(runtimes):
        if runtime != ONNXRUNTIME:
            ids += [VariantId(b, runtime) for b in [FP32, *recipes] if b != DYNAMIC and _fits(b, runtime)]
    if tune:
        ids.append(VariantId(TUNED))

    def role(v: VariantId) -> Role:
        if v.is_fp32:
            return Role.REFERENCE if v.runtime == ONNXRUNTIME else Role.CONTRAST
        return Role.GATED if v.build in gated or v.build == TUNED else Role.CONTRAST

    def recipe(v: VariantId) -> str | None:
        return None if v.is_fp32 else gated[0] if v.build == TUNED else v.build

    return tuple(PlannedVariant(v, role(v), recipe(v), tuple(providers)) for v in ids)


def parse_contrast(text: str) -> list[str]:
    """The contrast recipes a --contrast (--quantlab-contrast) value names: built, evaluated and timed, never gated.

    One rule for both faces: the list is every contrast there is (dynamic too, only when named), and 'none'
    is no contrast at all. Plan with plan_variants(gated, contrast, include_dynamic=False).
    """
    return [] if text.strip().lower() == NO_CONTRAST else parse_recipe_list(text)


def check_recipes_fit(recipe_names: Sequence[str], runtimes: Sequence[str]) -> None:
    """ConfigError for a recipe made for some runtimes only (Recipe.runtimes) when none of them is in `runtimes`."""
    for name in recipe_names:
        made_for = resolve_recipe(name).runtimes
        if made_for and not set(made_for) & set(runtimes):
            raise ConfigError(f"recipe {name!r} is made for {', '.join(made_for)}, which is not among the "
                              f"runtimes ({', '.join(runtimes)}): add {made_for[0]}")


def _fits(build: str, runtime: str) -> bool:
    return build == FP32 or not resolve_recipe(build).runtimes or runtime in resolve_recipe(build).runtimes
