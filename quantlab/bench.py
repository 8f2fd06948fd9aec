"""Latency measurement: pre-built sessions, warm-up, interleaved runs, percentiles."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort

from quantlab.errors import ModelError, first_line
from quantlab.onnxmodel import external_data_files

DEFAULT_PROVIDERS = ("CPUExecutionProvider",)


@dataclass(frozen=True)
class Latency:
    """Per-inference wall time of one model, in milliseconds."""

    median_ms: float
    p90_ms: float
    p99_ms: float
    mean_ms: float
    runs: int

    @property
    def fps(self) -> float:
        return 1000.0 / self.median_ms

    @classmethod
    def from_samples(cls, samples_ms: Sequence[float]) -> Latency:
        a = np.asarray(samples_ms, dtype=np.float64)
        return cls(float(np.median(a)), float(np.percentile(a, 90)), float(np.percentile(a, 99)),
                   float(a.mean()), int(a.size))

    def as_dict(self) -> dict:
        return {"median": self.median_ms, "p90": self.p90_ms, "p99": self.p99_ms,
                "mean": self.mean_ms, "runs": self.runs}


def session_options(threads: int = 1) -> ort.SessionOptions:
    """Fixed threads and sequential execution, so every model is timed alike."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    return options


def make_session(path: str | Path, threads: int = 1,
                 providers: Sequence[str] = DEFAULT_PROVIDERS) -> ort.InferenceSession:
    """An InferenceSession; a self-contained model's bytes are read by Python so any path works
    (a model with external data is opened by path, so onnxruntime finds its data files)."""
    path = Path(path)
    source = str(path) if external_data_files(path) else path.read_bytes()
    try:
        return ort.InferenceSession(source, session_options(threads), providers=list(providers))
    except Exception as exc:  # onnxruntime's error types share no base class but Exception
        raise ModelError(f"{path}: onnxruntime cannot load it: {first_line(exc)}") from exc


def check_runs(sessions: Mapping[str, ort.InferenceSession], feed: Mapping[str, np.ndarray]) -> None:
    """Run each session once; a failure is a ModelError naming the session and the input shape."""
    for name, session in sessions.items():
        try:
            session.run(None, dict(feed))
        except Exception as exc:  # onnxruntime's error types share no base class but Exception
            shape = "x".join(str(d) for d in next(iter(feed.values())).shape)
            raise ModelError(f"{name}: onnxruntime cannot run it on a {shape} input: {first_line(exc)}") from exc


def interleaved_latency(sessions: Mapping[str, ort.InferenceSession], feed: Mapping[str, np.ndarray],
                        runs: int = 100, warmup: int = 10, progress=None) -> dict[str, Latency]:
    """Time each session `runs` times, rotating the order every round so drift hits all alike."""
    names = list(sessions)
    for name in names:
        for _ in range(warmup):
            sessions[name].run(None, feed)
    samples: dict[str, list[float]] = {name: [] for name in names}
    for round_index in range(runs):
        shift = round_index % len(names)
        for name in names[shift:] + names[:shift]:
            started = time.perf_counter()
            sessions[name].run(None, feed)
            samples[name].append((time.perf_counter() - started) * 1000.0)
        if progress is not None:
            progress(1)
    return {name: Latency.from_samples(s) for name, s in samples.items()}
