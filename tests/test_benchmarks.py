"""Latency benchmarks with pytest-benchmark: one group per model, FP32 first, every variant alike.

`pytest --benchmark-only` times them; plain `pytest` runs each once as a functional test.
The gate metrics ride along in extra_info, so the saved JSON is the history `quantlab compare` reads.
"""

import pytest

from quantlab.ortcompat import ORT_VERSION
from quantlab.pipeline import FP32

ROUNDS = 100
_medians_s: dict[str, float] = {}


@pytest.mark.benchmark
def test_latency(benchmark, quantlab_artifacts, variant):
    artifacts = quantlab_artifacts
    session, feed = artifacts.session(variant), artifacts.feed
    metrics = artifacts.metrics(variant)
    benchmark.group = artifacts.suite.model.name
    outputs = benchmark.pedantic(session.run, args=(None, feed), rounds=ROUNDS, warmup_rounds=10, iterations=1)
    assert outputs[0].shape[0] == 1 and outputs[0].ndim == 3  # a real YOLOv8 output came back
    benchmark.extra_info.update(metrics, onnxruntime=ORT_VERSION, threads=artifacts.suite.threads)
    if benchmark.disabled:
        return
    _medians_s[variant] = benchmark.stats.stats.median
    if variant == FP32:
        benchmark.extra_info["speedup"] = 1.0
        return
    if FP32 not in _medians_s:  # FP32 was deselected: time it now, interleaved with this variant
        latency = artifacts.latency([FP32, variant])
        speedup = latency[FP32].median_ms / latency[variant].median_ms
    else:
        speedup = _medians_s[FP32] / _medians_s[variant]
    benchmark.extra_info["speedup"] = speedup
    if variant in artifacts.suite.static_variants:
        assert speedup >= artifacts.suite.budgets.min_speedup, (
            f"{variant}: {speedup:.2f}x FP32, below --min-speedup {artifacts.suite.budgets.min_speedup}")
