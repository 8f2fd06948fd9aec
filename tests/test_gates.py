"""The regression gates: every INT8 variant against FP32 on the suite's model and data.

Budgets come from --max-size-ratio, --max-map-drop and --min-speedup (or pytest.ini).
"""

import pytest

from quantlab.gates import Check
from quantlab.pipeline import FP32

# Output parity bounds for a well-quantized YOLOv8 (head in float), measured on the demo model
# with margin: box channels are pixel coordinates, score channels are probabilities.
MIN_BOX_COSINE = 0.999
MIN_SCORE_COSINE = 0.98
MIN_TOP1_AGREEMENT = 0.95

pytestmark = pytest.mark.slow


def test_size_ratio_within_budget(quantlab_artifacts, int8_variant):
    metrics = quantlab_artifacts.metrics(int8_variant)
    failure = Check("size_ratio", quantlab_artifacts.suite.budgets.max_size_ratio).fails(metrics)
    assert failure is None, failure


def test_accuracy_within_budget(quantlab_artifacts, int8_variant):
    """mAP50-95 drop against FP32 with labels; detection agreement with FP32 without."""
    metrics = quantlab_artifacts.metrics(int8_variant)
    budgets = quantlab_artifacts.suite.budgets
    if metrics["map_drop"] is not None:
        failure = Check("map_drop", budgets.max_map_drop).fails(metrics)
    else:
        failure = Check("agreement", budgets.min_agreement).fails(metrics)
    assert failure is None, failure


def test_output_parity_with_fp32(quantlab_artifacts, int8_variant):
    metrics = quantlab_artifacts.metrics(int8_variant)
    assert metrics["box_cosine"] >= MIN_BOX_COSINE, f"{int8_variant}: box cosine {metrics['box_cosine']:.5f}"
    assert metrics["score_cosine"] >= MIN_SCORE_COSINE, f"{int8_variant}: score cosine {metrics['score_cosine']:.5f}"
    if metrics["top1_agreement"] is not None:
        assert metrics["top1_agreement"] >= MIN_TOP1_AGREEMENT, (
            f"{int8_variant}: top-1 class agreement {metrics['top1_agreement']:.4f}")


def test_fp32_agrees_with_itself(quantlab_artifacts):
    metrics = quantlab_artifacts.metrics(FP32)
    assert metrics["agreement"] in (None, 1.0)  # None only when FP32 detects nothing at all
    assert metrics["box_cosine"] == pytest.approx(1.0) and metrics["score_cosine"] == pytest.approx(1.0)


def test_static_int8_is_faster_than_fp32(quantlab_artifacts, static_variant):
    """A ratio of medians from interleaved runs in this process, never an absolute time."""
    latency = quantlab_artifacts.latency([FP32, static_variant], runs=100)
    speedup = latency[FP32].median_ms / latency[static_variant].median_ms
    failure = Check("speedup", quantlab_artifacts.suite.budgets.min_speedup).fails(
        {"name": static_variant, "speedup": speedup})
    assert failure is None, failure
