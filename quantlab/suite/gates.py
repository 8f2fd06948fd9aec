"""The regression gates: every gated INT8 variant against FP32 on the suite's model and data.

Each budget of quantlab.measures' table is set by its option (--quantlab-max-size-ratio, --quantlab-min-box-cosine,
...) or ini key. A failure is one sentence: variant, metric, value, budget; an accuracy or parity failure adds its
cause where quantlab knows it (quantlab.gates.known_cause, as `quantlab run`'s verdict says it).
"""

import pytest

from quantlab.gates import Check, known_cause
from quantlab.sessions import ONNXRUNTIME
from quantlab.variant import FP32, VariantId

# the budgets with a test of their own below; the output parity test checks every other
OWN_TEST = ("size_ratio", "map_drop", "agreement", "memory_ratio", "speedup")

pytestmark = pytest.mark.quantlab


def _holds(*failures: str | None, metrics: dict | None = None) -> None:
    """Fail with every message given, one line each and no traceback; then the cause `metrics` point to."""
    __tracebackhide__ = True
    failed = [f for f in failures if f]
    if failed and metrics and (cause := known_cause(metrics)):
        failed.append(f"{metrics['variant']}: likely cause: {cause}")
    if failed:
        pytest.fail("\n".join(failed), pytrace=False)


def test_size_ratio_within_budget(quantlab_suite, quantlab_metrics, quantlab_int8_variant):
    if not quantlab_suite.planned(quantlab_int8_variant).size_gated:
        pytest.skip(f"{quantlab_int8_variant}: an FP16 build, half of FP32 by construction; the size budget is for "
                    "INT8 builds")
    _holds(quantlab_suite.check("size_ratio").fails(quantlab_metrics(quantlab_int8_variant)))


def test_accuracy_within_budget(quantlab_suite, quantlab_metrics, quantlab_int8_variant):
    """mAP50-95 drop against FP32 with labels; detection agreement with FP32 without."""
    metrics = quantlab_metrics(quantlab_int8_variant)
    _holds(quantlab_suite.accuracy_check(labelled=metrics["map_drop"] is not None).fails(metrics), metrics=metrics)


def test_memory_within_budget(quantlab_suite, quantlab_metrics, quantlab_int8_variant):
    """Session memory over FP32's, when --quantlab-max-memory-ratio is given."""
    if quantlab_suite.budgets.max_memory_ratio is None:
        pytest.skip("no --quantlab-max-memory-ratio budget")
    if VariantId.parse(quantlab_int8_variant).runtime != ONNXRUNTIME:
        pytest.skip("session memory is measured for onnxruntime sessions only")
    _holds(quantlab_suite.check("memory_ratio").fails(quantlab_metrics(quantlab_int8_variant)))


def test_output_parity_with_fp32(quantlab_suite, quantlab_metrics, quantlab_int8_variant):
    """Box, score and task cosines and top-1 agreement with FP32's outputs, and every other budget without a
    test of its own."""
    metrics = quantlab_metrics(quantlab_int8_variant)
    checks = quantlab_suite.budgets.checks(labelled=metrics["map_drop"] is not None, speed_gated=False)
    _holds(*(quantlab_suite.check(c.metric).fails(metrics) for c in checks if c.metric not in OWN_TEST),
           metrics=metrics)


def test_fp32_agrees_with_itself(quantlab_metrics):
    """Agreement (None only when FP32 detects nothing at all) and output cosines of 1, to rounding."""
    metrics = quantlab_metrics(FP32)
    _holds(*(Check(metric, 1 - 1e-6, source="FP32 against itself").fails(metrics)
             for metric in ("agreement", "box_cosine", "score_cosine", "task_cosine")))


def test_static_int8_is_faster_than_fp32(quantlab_suite, quantlab_artifacts, quantlab_metrics, quantlab_static_variant):
    """A ratio of medians from interleaved runs in this process, never an absolute time."""
    quantlab_metrics(quantlab_static_variant)  # a variant that does not build fails here, in one line
    speedup = quantlab_artifacts.speedup(quantlab_static_variant)
    failure = quantlab_suite.check("speedup").fails({"variant": quantlab_static_variant, "speedup": speedup.ratio})
    if failure and quantlab_static_variant in quantlab_artifacts.timed_before:
        failure += (" (timed by an earlier run on this machine, on the same files and settings: "
                    "--cache-clear times it again)")
    _holds(failure)
