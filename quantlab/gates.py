"""Regression gates: 'speedup:1.3x', 'size_ratio:0.30', 'map_drop:0.01', 'agreement:0.95' as checks."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from quantlab.errors import ConfigError

# metric -> True when larger is better (a minimum), False when smaller is better (a maximum)
HIGHER_IS_BETTER = {"speedup": True, "agreement": True, "map50_95": True, "size_ratio": False, "map_drop": False,
                    "box_cosine": True, "score_cosine": True, "top1_agreement": True}


@dataclass(frozen=True)
class Check:
    """A bound on one variant metric; fails() returns a readable message, or None when it holds.

    source: where the limit was set (an option name), quoted at the end of the message.
    """

    metric: str
    limit: float
    source: str = field(default="", compare=False)

    @property
    def is_minimum(self) -> bool:
        return HIGHER_IS_BETTER[self.metric]

    def fails(self, variant: dict) -> str | None:
        """variant: metrics with the variant's name under 'variant' (benchmarks) or 'name' (reports)."""
        value = variant.get(self.metric)
        if value is None:
            return None  # not measured here (no labels, say): nothing to gate
        if (value < self.limit) if self.is_minimum else (value > self.limit):
            relation = "below the minimum" if self.is_minimum else "above the maximum"
            name = variant.get("variant", variant.get("name"))
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


@dataclass(frozen=True)
class Budgets:
    """The default budgets of the suite and the CLI; each must be finite and in its range."""

    max_map_drop: float = 0.01
    max_size_ratio: float = 0.30
    min_speedup: float = 1.3
    min_agreement: float = 0.95

    def __post_init__(self):
        # (low, high, whether low itself is allowed): a fraction, or a positive ratio
        ranges = {"max_map_drop": (0.0, 1.0, True), "max_size_ratio": (0.0, math.inf, False),
                  "min_speedup": (0.0, math.inf, False), "min_agreement": (0.0, 1.0, True)}
        for name, (low, high, low_ok) in ranges.items():
            value = getattr(self, name)
            if not (math.isfinite(value) and (value >= low if low_ok else value > low) and value <= high):
                expected = f"from {low:g} to {high:g}" if math.isfinite(high) else f"a finite number above {low:g}"
                raise ConfigError(f"budget {name} = {value!r} is out of range: expected {expected}")

    def checks(self, labelled: bool, speed_gated: bool = True) -> list[Check]:
        """Checks for one INT8 variant: mAP drop with labels, detection agreement without.

        Dynamic variants are not speed-gated: ConvInteger is slower than FP32 on CPU, by design.
        """
        checks = [Check("size_ratio", self.max_size_ratio),
                  Check("map_drop", self.max_map_drop) if labelled else Check("agreement", self.min_agreement)]
        return checks + ([Check("speedup", self.min_speedup)] if speed_gated else [])

    def as_dict(self) -> dict:
        return {"max_map_drop": self.max_map_drop, "max_size_ratio": self.max_size_ratio,
                "min_speedup": self.min_speedup, "min_agreement": self.min_agreement}
