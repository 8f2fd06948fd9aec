"""This CPU's attainable multiply-accumulate rate at INT8 and at FP32, the ceiling a model's GMAC/s is a share of.

Measured, not looked up: a table of MACs per cycle by instruction set and a clock read from the OS are both
unreliable on virtual machines (the clock is a guess, the vector units' count unknown). Instead onnxruntime
times its own GEMM (MLAS: u8 x s8 MatMulInteger and f32 MatMul) on one square product, large enough to run at
full rate, small enough that both take well under a second: the fastest of RUNS, on the threads the models run
on. So it is the peak onnxruntime reaches on this CPU, not the silicon's (on a VNNI CPU measured with a
VPDPBUSD loop, MLAS's convolutions reached about a third of it): a model near 100% has no headroom left in
this runtime; one at 30% has it in its graph (small channels, memory-bound layers, float ops between).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass

import numpy as np
from onnx import TensorProto, helper, numpy_helper

from quantlab.sessions import inference_session

SIZE = 512  # M = N = K: 134 M MACs a product, about 1-5 ms on one core
RUNS = 12  # timed products per precision, after WARMUP untimed; the fastest counts
WARMUP = 3
INT8, FP32 = "int8", "fp32"


@dataclass(frozen=True)
class Peak:
    """GMAC/s onnxruntime's GEMM reached on this CPU at each precision, on `threads` threads."""

    int8_gmac_per_s: float
    fp32_gmac_per_s: float
    threads: int
    how: str = f"onnxruntime's GEMM ({SIZE}x{SIZE}x{SIZE}, u8 x s8 and f32), fastest of {RUNS} runs"

    def share(self, gmac_per_s: float | None, precision: str | None) -> float | None:
        """gmac_per_s as a share of the peak at `precision` (INT8 or FP32); None where either is unknown."""
        peak = {INT8: self.int8_gmac_per_s, FP32: self.fp32_gmac_per_s}.get(precision)
        return gmac_per_s / peak if gmac_per_s is not None and peak else None

    def as_dict(self) -> dict:
        return asdict(self)


def _gemm_model(precision: str) -> bytes:
    """A ONNX model of one SIZE^3 product: input A (SIZE x SIZE) times a constant B."""
    rng = np.random.default_rng(0)
    if precision == INT8:
        a_type, op, out_type = TensorProto.UINT8, "MatMulInteger", TensorProto.INT32
        b = rng.integers(-128, 128, (SIZE, SIZE), dtype=np.int8)
    else:
        a_type, op, out_type = TensorProto.FLOAT, "MatMul", TensorProto.FLOAT
        b = rng.standard_normal((SIZE, SIZE)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node(op, ["a", "b"], ["y"])], f"peak_{precision}",
        [helper.make_tensor_value_info("a", a_type, [SIZE, SIZE])],
        [helper.make_tensor_value_info("y", out_type, [SIZE, SIZE])],
        [numpy_helper.from_array(b, "b")])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]).SerializeToString()


def _gemm_input(precision: str) -> np.ndarray:
    rng = np.random.default_rng(1)
    if precision == INT8:  # 7-bit, as reduce-range models feed it: AVX2's u8 x s8 pairs would saturate past it
        return rng.integers(0, 128, (SIZE, SIZE), dtype=np.uint8)
    return rng.standard_normal((SIZE, SIZE)).astype(np.float32)


def gemm_rate(precision: str, threads: int) -> float:
    """GMAC/s of the fastest of RUNS SIZE^3 products at `precision` on `threads` threads."""
    session = inference_session(_gemm_model(precision), threads, ("CPUExecutionProvider",))
    feed = {"a": _gemm_input(precision)}
    for _ in range(WARMUP):
        session.run(None, feed)
    fastest = float("inf")
    for _ in range(RUNS):
        started = time.perf_counter()
        session.run(None, feed)
        fastest = min(fastest, time.perf_counter() - started)
    return SIZE ** 3 / fastest / 1e9


def measure_peak(threads: int) -> Peak:
    """This CPU's INT8 and FP32 peak as onnxruntime reaches it (see the module's docstring)."""
    return Peak(gemm_rate(INT8, threads), gemm_rate(FP32, threads), threads)

