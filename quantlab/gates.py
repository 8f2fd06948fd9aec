"""Regression gates: the budgets of quantlab.measures' table as checks on a variant's measures."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from quantlab.errors import ConfigError
from quantlab.measures import BUDGETED, BY_NAME, Metric


@dataclass(frozen=True)
class Check:
    """A bound on one variant metric; fails() returns a readable message, or None when it holds.

    source: where the limit was set (an option name), quoted at the end of the message.
    missing: when set, a metric that was not measured fails with this reason instead of passing.
    """

    metric: str
    limit: float
    source: str = field(default="", compare=False)
    missing: str = field(default="", compare=False)

    @property
    def is_minimum(self) -> bool:
        return BY_NAME[self.metric].higher_is_better

    def fails(self, variant: dict) -> str | None:
        """variant: metrics with the variant's name under 'variant' (benchmarks) or 'name' (reports)."""
        value = variant.get(self.metric)
        name = variant.get("variant", variant.get("name"))
        if value is None:  # not measured here (no labels, say): nothing to gate, unless it must be
            return f"{name}: {self.metric} not measured: {self.missing}" if self.missing else None
        if not math.isfinite(value):  # a NaN passes every comparison: never let one through
            return f"{name}: {self.metric} is {value}, not a finite number"
        if (value < self.limit) if self.is_minimum else (value > self.limit):
            relation = "below the minimum" if self.is_minimum else "above the maximum"
            source = f" ({self.source})" if self.source else ""
            return f"{name}: {self.metric} {value:.4g} is {relation} {self.limit:g}{source}"
        return None

    def __str__(self) -> str:
        return f"{self.metric}:{self.limit:g}{'x' if self.metric == 'speedup' else ''}"


HEAD_QUANTIZED = "the detection head was quantized: one scale spans box pixels and class probabilities"


def known_cause(variant: dict) -> str | None:
    """Why a variant loses accuracy or parity, where its recipe says (variant: its measures, 'recipe' the
    recipe's settings, None for FP32); None where quantlab knows no cause."""
    recipe = variant.get("recipe")
    return HEAD_QUANTIZED if recipe and not recipe.get("keep_head_float", True) else None


def check_budget(name: str, value: float) -> float:
    """`value` if it is a finite number within the budget's range; else ConfigError naming both."""
    interval = _BY_BUDGET[name].budget.range
    low, high = (float(x) for x in interval[1:-1].split(","))
    number = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if not number or not ((value >= low if interval[0] == "[" else value > low) and value <= high):
        raise ConfigError(f"budget {name.replace('_', '-')} = {value!r} is not a number in {interval}")
    return float(value)


_BY_BUDGET: dict[str, Metric] = {m.budget_name: m for m in BUDGETED}
BUDGET_NAMES = tuple(_BY_BUDGET)


def _budgets(limits: dict) -> Budgets:
    return Budgets(**limits)


class Budgets:
    """The limit of every budget in quantlab.measures' table, by its name (max_size_ratio, min_speedup, ...):
    the table's default unless given; each finite and in its range; None (memory's default) is not gated."""

    __slots__ = ("_limits",)

    def __init__(self, **limits: float | None):
        unknown = sorted(set(limits) - set(_BY_BUDGET))
        if unknown:
            raise ConfigError(f"unknown budget(s) {', '.join(unknown)}: choose from {', '.join(_BY_BUDGET)}")
        values = {name: limits.get(name, m.budget.default) for name, m in _BY_BUDGET.items()}
        for name, value in values.items():
            if value is not None or _BY_BUDGET[name].budget.default is not None:  # only an off-by-default one may be off
                values[name] = check_budget(name, value)
        object.__setattr__(self, "_limits", values)

    def __getattr__(self, name: str) -> float | None:
        if name in _BY_BUDGET:  # not _limits itself: copy and pickle ask before it exists
            return self._limits[name]
        raise AttributeError(name)

    def __reduce__(self):
        return _budgets, (self._limits,)

    def __setattr__(self, name, value):
        raise AttributeError("Budgets are frozen")

    def __eq__(self, other) -> bool:
        return isinstance(other, Budgets) and self._limits == other._limits

    def __hash__(self) -> int:
        return hash(tuple(self._limits.items()))

    def __repr__(self) -> str:
        return f"Budgets({', '.join(f'{k}={v!r}' for k, v in self._limits.items())})"

    def check(self, metric: str, source: str = "") -> Check:
        """The budget on `metric`, naming the option that set it."""
        m = BY_NAME[metric]
        return Check(metric, self._limits[m.budget_name], source=source, missing=m.budget.missing)

    def accuracy_check(self, labelled: bool) -> Check:
        """mAP50-95 drop with labels; agreement with FP32 without, which must have been measured."""
        return self.check("map_drop" if labelled else "agreement")

    def checks(self, labelled: bool, speed_gated: bool = True, size_gated: bool = True) -> list[Check]:
        """The checks of one gated variant, in the table's order: those whose limit is set and that apply to
        it (mAP drop with labels, agreement without; speed for the builds meant to beat FP32 where they run,
        size for INT8 builds: quantlab.variant.PlannedVariant.speed_gated and size_gated)."""
        applies = {"always": True, "labelled": labelled, "unlabelled": not labelled, "fast": speed_gated,
                   "int8": size_gated}
        return [self.check(m.name) for name, m in _BY_BUDGET.items()
                if self._limits[name] is not None and applies[m.budget.when]]

    def as_dict(self) -> dict:
        return dict(self._limits)
