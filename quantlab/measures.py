"""What a variant measured: one table of metrics (direction, unit, budget, tolerance between runs), and one
frozen record of a variant's values, built by `measure`, written to the report and to pytest-benchmark's
extra_info, and read back by benchjson.

Adding a metric is a row here, a field of `Measures` and its computation in `measure` (and its entry in the
report's schema, which a test checks); a row with a budget is gated by the CLI and the suite, gets its option in
both (quantlab.settings), and is listed in the docs' reference.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from quantlab.evaluate import EvalResult
    from quantlab.memory import MemoryUse


@dataclass(frozen=True)
class Budget:
    """A limit on a metric for each gated variant: `default` (None: not gated unless given), the range a
    limit may take ("[0, 1]", "(0, 10]"), and when it applies."""

    default: float | None
    range: str
    when: str = "always"  # a key of WHEN_WORDS
    missing: str = ""  # when set, a value that was not measured fails with this reason instead of passing


@dataclass(frozen=True)
class Metric:
    """One number measured per variant, under `name` in the report, extra_info and the record."""

    name: str
    unit: str
    higher_is_better: bool
    valid: tuple[float, float]  # the values a run quantlab writes can hold; benchjson refuses a file beyond
    help: str
    budget: Budget | None = None
    tolerance: str | None = None  # the compare.Tolerances field bounding its change from one run to the next

    @property
    def budget_name(self) -> str:
        """'max_size_ratio', 'min_speedup': the option that sets its budget (--max-size-ratio)."""
        return ("min_" if self.higher_is_better else "max_") + self.name


# When a budget applies, in words (quantlab.variant.PlannedVariant says which builds are fast and INT8)
WHEN_WORDS = {"always": "", "labelled": "with labels", "unlabelled": "without labels", "int8": "INT8 builds",
              "fast": "static INT8 on CPU, FP16 on GPU, both on TensorRT"}
NOTHING_TO_AGREE_WITH = "the FP32 model detects nothing on these images, so accuracy is unproven"
FRACTION, COSINE, DIFFERENCE, POSITIVE = (0.0, 1.0), (-1.0, 1.0), (-1.0, 1.0), (0.0, math.inf)

# In gating order: a variant's failures are listed in this order
METRICS = (
    Metric("size_bytes", "bytes", False, POSITIVE, "model file size, external data included",
           tolerance="size_growth"),
    Metric("size_ratio", "ratio", False, POSITIVE, "the build's size over FP32's", Budget(0.30, "(0, 10]", when="int8")),
    Metric("map50", "fraction", True, FRACTION, "mAP at IoU 0.5 against the labels (the task's own metric)"),
    Metric("map50_95", "fraction", True, FRACTION, "mAP at IoU 0.5:0.95 against the labels (the task's own metric)",
           tolerance="map_loss"),
    Metric("box_map50_95", "fraction", True, FRACTION, "box mAP50-95 beside a segment or pose model's own"),
    Metric("map_drop", "fraction", False, DIFFERENCE, "FP32's mAP50-95 minus the variant's",
           Budget(0.01, "[0, 1]", when="labelled")),
    Metric("agreement", "fraction", True, FRACTION, "box mAP50 of the variant's detections against FP32's",
           Budget(0.95, "[0, 1]", when="unlabelled", missing=NOTHING_TO_AGREE_WITH), tolerance="agreement_loss"),
    Metric("memory_bytes", "bytes", False, POSITIVE, "peak memory a session adds (median of 3 fresh processes)"),
    Metric("memory_spread", "ratio", False, POSITIVE, "(max - min) / median of the memory samples"),
    Metric("memory_ratio", "ratio", False, POSITIVE, "INT8 session memory over FP32's",
           Budget(None, "(0, 10]")),
    Metric("speedup", "x", True, (0.0, math.inf), "FP32 median latency over the variant's, interleaved in one "
           "process", Budget(1.3, "(0, 100]", when="fast")),
    Metric("box_cosine", "cosine", True, COSINE, "cosine of the box channels with FP32's output",
           Budget(0.999, "[-1, 1]")),
    Metric("score_cosine", "cosine", True, COSINE, "cosine of the class-score channels with FP32's output",
           Budget(0.98, "[-1, 1]"), tolerance="score_cosine_loss"),
    Metric("task_cosine", "cosine", True, COSINE, "lowest cosine of the task's own outputs (masks, keypoints, "
           "angle) with FP32's; none for detect", Budget(0.98, "[-1, 1]"), tolerance="score_cosine_loss"),
    Metric("top1_agreement", "fraction", True, FRACTION, "share of confident anchors whose top class is FP32's",
           Budget(0.95, "[0, 1]")),
)
BY_NAME = {m.name: m for m in METRICS}
BUDGETED = tuple(m for m in METRICS if m.budget)


@dataclass(frozen=True)
class Measures:
    """What one variant measured, against FP32 on onnxruntime (the reference); None where not measured."""

    variant: str
    runtime: str
    gated: bool
    task: str
    recipe: dict | None  # the recipe's settings; None for FP32
    size_bytes: int
    size_ratio: float
    map50: float | None
    map50_95: float | None
    box_map50_95: float | None
    map_drop: float | None
    agreement: float | None
    memory_bytes: int | None
    memory_spread: float | None
    memory_ratio: float | None
    speedup: float | None
    box_cosine: float | None
    score_cosine: float | None
    task_cosine: float | None
    top1_agreement: float | None

    def as_dict(self) -> dict:
        return asdict(self)

    @property
    def labelled(self) -> bool:
        return self.map_drop is not None


def measure(variant: str, runtime: str, gated: bool, task: str, recipe: dict | None, size_bytes: int,
            reference_size: int, evaluation: EvalResult, reference: EvalResult, memory: MemoryUse | None = None,
            reference_memory: MemoryUse | None = None, speedup: float | None = None) -> Measures:
    """The record of one variant, from its evaluation against the reference and their sizes and memory."""
    from quantlab.parity import detection_parity, task_cosine

    parity = detection_parity(evaluation.parity)
    own_map = evaluation.map
    return Measures(
        variant=variant, runtime=runtime, gated=gated, task=task, recipe=recipe,
        size_bytes=size_bytes, size_ratio=size_bytes / reference_size,
        map50=own_map.map50 if own_map else None,
        map50_95=own_map.map50_95 if own_map else None,
        box_map50_95=evaluation.box_map.map50_95 if evaluation.box_map else None,
        map_drop=reference.map.map50_95 - own_map.map50_95 if own_map and reference.map else None,
        agreement=evaluation.agreement,
        memory_bytes=memory.session_bytes if memory else None,
        memory_spread=memory.spread if memory else None,
        memory_ratio=(memory.session_bytes / reference_memory.session_bytes
                      if memory and reference_memory and reference_memory.session_bytes else None),
        speedup=speedup,
        box_cosine=parity.get("boxes", {}).get("cosine"),
        score_cosine=parity.get("scores", {}).get("cosine"),
        task_cosine=task_cosine(parity),
        top1_agreement=parity.get("top1_agreement"),
    )
