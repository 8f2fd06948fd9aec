"""This CPU's GEMM peak (quantlab.peak) and each variant's share of it in the report."""

from types import SimpleNamespace

import numpy as np
import pytest

from quantlab import peak
from quantlab.peak import FP32, INT8, Peak, measure_peak
from quantlab.pipeline import Variant
from quantlab.recipes import resolve_recipe
from quantlab.report import render_markdown
from quantlab.sessions import inference_session
from quantlab.variant import plan_variants


@pytest.mark.parametrize("precision", [INT8, FP32])
def test_the_timed_product_is_the_size_cubed_one_the_rate_counts(precision):
    """The rate divides SIZE^3 MACs by the time: the model must compute exactly that product, at that precision."""
    session = inference_session(peak._gemm_model(precision), 1, ("CPUExecutionProvider",))
    a = peak._gemm_input(precision)
    (y,) = session.run(None, {"a": a})
    b = np.random.default_rng(0)
    if precision == INT8:
        assert a.dtype == np.uint8 and y.dtype == np.int32
        b = b.integers(-128, 128, (peak.SIZE, peak.SIZE), dtype=np.int8)
        np.testing.assert_array_equal(y, a.astype(np.int64) @ b.astype(np.int64))
    else:
        assert a.dtype == np.float32 and y.dtype == np.float32
        b = b.standard_normal((peak.SIZE, peak.SIZE)).astype(np.float32)
        np.testing.assert_allclose(y, a @ b, rtol=1e-4, atol=1e-3)
    assert y.shape == (peak.SIZE, peak.SIZE)


def test_the_peak_is_measured_on_the_threads_asked_for(monkeypatch):
    asked = []
    monkeypatch.setattr(peak, "gemm_rate", lambda precision, threads: asked.append((precision, threads)) or 10.0)
    measured = measure_peak(3)
    assert asked == [(INT8, 3), (FP32, 3)] and measured.threads == 3


def test_a_share_is_against_the_peak_of_its_own_precision():
    p = Peak(int8_gmac_per_s=64.0, fp32_gmac_per_s=32.0, threads=1)
    assert p.share(16.0, INT8) == 0.25 and p.share(16.0, FP32) == 0.5
    assert p.share(16.0, None) is None and p.share(None, INT8) is None  # FP16; MACs unknown


def test_a_variant_s_precision_follows_its_recipe(tmp_path):
    plan = {v.name: v for v in plan_variants(["auto", "fp16"], contrast=())}
    built = lambda recipe: SimpleNamespace(recipe=resolve_recipe(recipe))  # noqa: E731  a QuantizeResult's recipe
    assert Variant(plan["fp32"], tmp_path / "m.onnx").precision == FP32
    assert Variant(plan["auto"], tmp_path / "a.onnx", built("auto")).precision == INT8
    assert Variant(plan["auto"], tmp_path / "d.onnx", built("dynamic")).precision == INT8
    assert Variant(plan["fp16"], tmp_path / "h.onnx", built("fp16")).precision is None


def test_the_report_shows_the_peak_and_each_share_in_percent():
    variant = {"metric": "bbox", "name": "auto", "runtime": "onnxruntime", "size_bytes": 2_440_000,
               "latency_ms": {"median": 14.0}, "fps": 71.4, "gmac_per_s": 31.2, "peak_share": 0.4875,
               "size_ratio": 0.29, "speedup": 1.6, "map50": 0.93, "map50_95": 0.73, "map_drop": 0.001,
               "agreement": 0.99, "box_cosine": 0.99, "score_cosine": 0.99, "task_cosine": None, "memory": None,
               "quantize_seconds": 4.0, "gated": True, "failures": [], "verdict": "auto is 1.6x faster"}
    report = {"machine": {"cpu": "AMD EPYC", "arch": "x86_64", "flags": ["avx2"], "cores": 2, "threads": 1,
                          "onnxruntime": "1.32.0", "provider": "CPUExecutionProvider", "runtimes": {},
                          "peak": Peak(64.0, 37.2, 1).as_dict()},
              "model": {"path": "m.onnx", "task": {"task": "detect", "end_to_end": False, "classes": 4},
                        "input_hw": [192, 320], "macs": 437_000_000},
              "evaluation": {"images": 4, "labelled": True}, "variants": [variant], "fastest_accurate": None,
              "budgets": {}}
    text = render_markdown(report)
    assert "Peak (onnxruntime's GEMM on 1 thread(s)): INT8 64, FP32 37 GMAC/s" in text
    assert "| 31.2 | 49 |" in text  # GMAC/s, then its share of the INT8 peak in percent
    report["machine"]["peak"] = None  # on a GPU provider: no CPU peak, no share
    variant["peak_share"] = None
    text = render_markdown(report)
    assert "Peak (" not in text and "| 31.2 | - |" in text


def test_a_measured_peak_is_a_finite_positive_rate_on_both_precisions():
    measured = measure_peak(1)
    assert all(np.isfinite(r) and r > 0 for r in (measured.int8_gmac_per_s, measured.fp32_gmac_per_s))
    assert measured.as_dict()["how"].startswith("onnxruntime's GEMM (512x512x512")


def test_the_rate_is_the_product_s_macs_over_its_fastest_run(monkeypatch):
    """A clock whose runs take 9, 5 and then 7 ms: the rate counts SIZE^3 MACs in the fastest, 5 ms."""
    durations = iter([0.009, 0.005] + [0.007] * (peak.RUNS - 2))
    now = [0.0]

    def clock():
        now[0] += next(durations) if clock.started else 0.0
        clock.started = not clock.started
        return now[0]
    clock.started = False
    monkeypatch.setattr(peak.time, "perf_counter", clock)
    assert peak.gemm_rate(FP32, 1) == pytest.approx(peak.SIZE ** 3 / 0.005 / 1e9)
