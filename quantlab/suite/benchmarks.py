"""Latency benchmarks with pytest-benchmark: one group per model, FP32 first, every variant alike.

`pytest --benchmark-only` (or any --benchmark-json/-save/-autosave/-enable) times them; otherwise
each runs once, as a functional test (the user's own benchmarks are left as pytest-benchmark set them).
The gate metrics and the interleaved same-run speedup ride along in extra_info, so the saved JSON
is the history `quantlab compare` reads; so does the FP32 model's hash, so that compare tells a changed
model from a regression.
"""

import functools

import pytest

from quantlab.bench import bench_setup
from quantlab.onnxmodel import model_sha256
from quantlab.ortcompat import ORT_VERSION
from quantlab.sessions import ONNXRUNTIME, runtime_version
from quantlab.suite.options import timing_asked_for
from quantlab.variant import VariantId

ROUNDS = 100

pytestmark = pytest.mark.quantlab


@functools.cache
def _model_sha256(path) -> str:
    """The FP32 model's hash, read once per session for every variant's benchmark."""
    return model_sha256(path)


def test_latency(benchmark, request, quantlab_suite, quantlab_artifacts, quantlab_metrics, quantlab_variant):
    artifacts, suite, variant = quantlab_artifacts, quantlab_suite, quantlab_variant
    if not timing_asked_for(request.config):
        benchmark.disabled = True  # this benchmark only: run once, untimed
    session, feed = artifacts.session(variant), artifacts.feed
    metrics = quantlab_metrics(variant)
    benchmark.group = suite.model.name
    outputs = benchmark.pedantic(session.run, args=(None, feed), rounds=ROUNDS, warmup_rounds=10, iterations=1)
    if not (outputs[0].ndim == 3 and outputs[0].shape[0] == 1):
        pytest.fail(f"{variant}: output of shape {list(outputs[0].shape)}, not a YOLO detection output",
                    pytrace=False)
    if benchmark.disabled:
        return
    speedup = artifacts.speedup(variant)
    setup = bench_setup(suite.threads, suite.providers)
    runtime = VariantId.parse(variant).runtime
    if runtime != ONNXRUNTIME:  # absolute latency compares only on the same runtime version too
        setup[runtime] = runtime_version(runtime)
    benchmark.extra_info.update(
        metrics, onnxruntime=ORT_VERSION, threads=suite.threads, speedup=speedup.ratio,
        speedup_low=speedup.low, speedup_high=speedup.high, setup=setup, model_sha256=_model_sha256(suite.model))
    if variant in suite.static_variants:
        failure = suite.check("speedup").fails({"variant": variant, "speedup": speedup.ratio})
        if failure:
            pytest.fail(failure, pytrace=False)
