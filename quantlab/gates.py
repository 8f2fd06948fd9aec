"""Regression gates: 'speedup:1.3x', 'size_ratio:0.30', 'map_drop:0.01', 'agreement:0.95' as checks."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from quantlab.errors import ConfigError

# metric -> True when larger is better (a minimum), False when smaller is better (a maximum)
HIGHER_IS_BETTER = {"speedup": True, "agreement": True, "map50_95": True, "size_ratio": False, "map_drop": False,
                    "memory_ratio": False, "box_cosine": True, "score_cosine": True, "task_cosine": True,
                    "top1_agreement": True}


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
        return HIGHER_IS_BETTER[self.metric]

    def fails(self, variant: dict) -> str | None:
        """variant: metrics with the variant's name under 'variant' (benchmarks) or 'name' (reports)."""
        value = variant.get(self.metric)
        name = variant.get("variant", variant.get("name"))
        if value is None:  # not measured here (no labels, say): nothing to gate, unless it must be
            return f"{name}: {self.metric} not measured: {self.missing}" if self.missing else None
        if (value < self.limit) if self.is_minimum else (value > self.limit):
            relation = "below the minimum" if self.is_minimum else "above the maximum"
            source = f" ({self.source})" if self.source else ""
            return f"{name}: {self.metric} {value:.4g} is {relation} {self.limit:g}{source}"
        return None

    def __str__(self) -> str:
        return f"{self.metric}:{self.limit:g}{'x' if self.metric == 'speedup' else ''}"


def parse_check(text: str) -> Check:
    """'speedup:1.3x' -> Check('speedup', 1.3)."""
    metric, sep, limit = text.partition(":")
    metric = metric.strip()
    if not sep or metric not in HIGHER_IS_BETTER:
        raise ConfigError(f"gate {text!r} is not valid: write METRIC:LIMIT with METRIC one of "
                          f"{', '.join(HIGHER_IS_BETTER)} (for example speedup:1.3x)")
    try:
        value = float(limit.strip().rstrip("xX"))
    except ValueError:
        raise ConfigError(f"gate {text!r}: limit {limit!r} is not a number") from None
    return Check(metric, value)


NOTHING_TO_AGREE_WITH = "the FP32 model detects nothing on these images, so accuracy is unproven"

# budget -> the range of values that mean something: a fraction [0, 1], or a ratio (0, high]
# (a NaN passes every comparison; a size ratio of 0 fails every model)
BUDGET_RANGES = {"max_map_drop": "[0, 1]", "min_agreement": "[0, 1]", "max_size_ratio": "(0, 10]",
                 "min_speedup": "(0, 100]", "max_memory_ratio": "(0, 10]"}


def check_budget(name: str, value: float) -> float:
    """`value` if it is a finite number within the budget's range; else ConfigError naming both."""
    interval = BUDGET_RANGES[name]
    low, high = (float(x) for x in interval[1:-1].split(","))
    above_low = value >= low if interval[0] == "[" else value > low
    if not isinstance(value, (int, float)) or not math.isfinite(value) or not (above_low and value <= high):
        raise ConfigError(f"budget {name.replace('_', '-')} = {value!r} is not a number in {interval}")
    return float(value)


@dataclass(frozen=True)
class Budgets:
    """The default budgets of the suite and the CLI; each must be finite and in its range."""

    max_map_drop: float = 0.01
    max_size_ratio: float = 0.30
    min_speedup: float = 1.3
    min_agreement: float = 0.95
    max_memory_ratio: float | None = None  # INT8 session memory over FP32's; off by default

    def __post_init__(self):
        for name, value in self.as_dict().items():
            if value is not None:
                check_budget(name, value)

    def accuracy_check(self, labelled: bool) -> Check:
        """mAP50-95 drop with labels; agreement with FP32 without, which must have been measured."""
        if labelled:
            return Check("map_drop", self.max_map_drop)
        return Check("agreement", self.min_agreement, missing=NOTHING_TO_AGREE_WITH)

    def checks(self, labelled: bool, speed_gated: bool = True) -> list[Check]:
        """Checks for one INT8 variant: mAP drop with labels, detection agreement without.

        Dynamic variants are not speed-gated: ConvInteger is slower than FP32 on CPU, by design.
        """
        checks = [Check("size_ratio", self.max_size_ratio), self.accuracy_check(labelled)]
        if self.max_memory_ratio is not None:
            checks.append(Check("memory_ratio", self.max_memory_ratio))
        return checks + ([Check("speedup", self.min_speedup)] if speed_gated else [])

    def as_dict(self) -> dict:
        return {"max_map_drop": self.max_map_drop, "max_size_ratio": self.max_size_ratio,
                "min_speedup": self.min_speedup, "min_agreement": self.min_agreement,
                "max_memory_ratio": self.max_memory_ratio}
