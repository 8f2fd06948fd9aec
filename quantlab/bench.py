"""Latency measurement: warm-up, interleaved runs, percentiles, same-run speedups."""

from __future__ import annotations

import hashlib
import platform
import random
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort

from quantlab.cpu import detect_cpu
from quantlab.sessions import run_explained

RUNS_PER_VISIT = 3  # timed runs per session per round, after one untimed run


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


def check_runs(sessions: Mapping[str, ort.InferenceSession], feed: Mapping[str, np.ndarray]) -> None:
    """Run each session once, so a model that cannot run fails before any timing, naming itself."""
    for name, session in sessions.items():
        run_explained(session, None, feed, name)


def _interleaved_samples(sessions: Mapping[str, ort.InferenceSession], feed: Mapping[str, np.ndarray],
                         runs: int, warmup: int, progress=None, seed: int = 0) -> dict[str, list[float]]:
    """`runs` per-run milliseconds of each session, interleaved in rounds so drift hits all alike.

    Each round visits every session once, in a seeded random order (a fixed order would always time one
    model right after the same other one). A visit that follows another model runs its session once
    untimed, to bring its weights back into the caches that model used, then times up to RUNS_PER_VISIT
    runs: the latency of a model running frame after frame, as a deployed detector does, not of one that
    another model just evicted (on the demo, the model timed right after FP32 ran 6% slower).
    """
    names = list(sessions)
    for name in names:
        for _ in range(warmup):
            sessions[name].run(None, feed)
    order = random.Random(seed)
    samples: dict[str, list[float]] = {name: [] for name in names}
    last = names[-1] if warmup else None  # the session that ran last, if known
    for done in range(0, runs, RUNS_PER_VISIT):
        timed = min(RUNS_PER_VISIT, runs - done)
        order.shuffle(names)
        for name in names:
            if name != last:
                sessions[name].run(None, feed)
            last = name
            for _ in range(timed):
                started = time.perf_counter()
                sessions[name].run(None, feed)
                samples[name].append((time.perf_counter() - started) * 1000.0)
        if progress is not None:
            progress(timed)
    return samples


def interleaved_latency(sessions: Mapping[str, ort.InferenceSession], feed: Mapping[str, np.ndarray],
                        runs: int = 100, warmup: int = 10, progress=None) -> dict[str, Latency]:
    """Time each session `runs` times, interleaved (see _interleaved_samples)."""
    samples = _interleaved_samples(sessions, feed, runs, warmup, progress)
    return {name: Latency.from_samples(s) for name, s in samples.items()}


@dataclass(frozen=True)
class Speedup:
    """reference median latency / candidate median latency, with a 95% interval [low, high]."""

    ratio: float
    low: float
    high: float
    blocks: int
    rounds: int


def _ratio_of_medians(reference_ms: np.ndarray, candidate_ms: np.ndarray) -> float:
    return float(np.median(reference_ms) / np.median(candidate_ms))


def interleaved_blocks(sessions: Mapping[str, ort.InferenceSession], feed: Mapping[str, np.ndarray],
                       blocks: int = 10, rounds: int = 20, warmup: int = 10,
                       progress=None) -> dict[str, np.ndarray]:
    """Per-run milliseconds of each session, (blocks, rounds) float64: `blocks` interleaved blocks (see
    _interleaved_samples) of `rounds` timed runs of each session, each block visiting them in its own seeded
    order, warm-up before the first block only."""
    per_block = [_interleaved_samples(sessions, feed, rounds, warmup if b == 0 else 0, progress, seed=b)
                 for b in range(blocks)]
    return {name: np.array([block[name] for block in per_block]) for name in sessions}


def block_bootstrap_ratio(reference_ms: np.ndarray, candidate_ms: np.ndarray, resamples: int = 2000,
                          seed: int = 0) -> Speedup:
    """median(reference_ms) / median(candidate_ms), two sessions' (blocks, rounds) runs timed interleaved
    (interleaved_blocks), with its 95% interval.

    Interval: a percentile bootstrap over whole blocks (resampling blocks, not runs, keeps the slow drift of
    a shared machine inside the spread): the 2.5th and 97.5th percentiles of the same ratio of medians over
    `resamples` block resamples, both sessions resampled with the same blocks, seeded so a run is reproducible.
    """
    def ratio(picked: np.ndarray) -> np.ndarray:
        n = len(picked)
        return (np.median(reference_ms[picked].reshape(n, -1), axis=1)
                / np.median(candidate_ms[picked].reshape(n, -1), axis=1))

    return _bootstrap_over_blocks(_ratio_of_medians(reference_ms, candidate_ms), ratio, reference_ms.shape,
                                  resamples, seed)


def paired_block_ratio(reference_ms: np.ndarray, candidate_ms: np.ndarray, resamples: int = 2000,
                       seed: int = 0) -> Speedup:
    """The median over blocks of each block's median(reference) / median(candidate), two sessions' (blocks,
    rounds) runs timed interleaved (interleaved_blocks), with its 95% block-bootstrap interval (as
    block_bootstrap_ratio's, of this statistic).

    Each block's ratio pairs runs taken seconds apart: a machine that drifts between blocks
    (a shared runner whose neighbours come and go: block medians of one model moved from 12 to 19.5 ms in
    one run here) moves both sides of every ratio alike, so the drift leaves the interval, where in
    block_bootstrap_ratio's pooled medians it stays (on a loaded 2-core machine the paired interval was 2 to
    3 times narrower on the same runs).
    """
    per_block = np.median(reference_ms, axis=1) / np.median(candidate_ms, axis=1)  # (blocks,)

    def ratio(picked: np.ndarray) -> np.ndarray:
        return np.median(per_block[picked], axis=1)

    return _bootstrap_over_blocks(float(np.median(per_block)), ratio, reference_ms.shape, resamples, seed)


def _bootstrap_over_blocks(estimate: float, statistic, shape: tuple[int, int], resamples: int,
                           seed: int) -> Speedup:
    """`estimate` with the 2.5th and 97.5th percentiles of `statistic` over `resamples` seeded resamples of
    whole blocks; statistic: (resamples, blocks) block indices -> (resamples,) values."""
    blocks, rounds = shape
    picks = np.random.default_rng(seed).integers(0, blocks, size=(resamples, blocks))
    low, high = np.percentile(statistic(picks), [2.5, 97.5])
    return Speedup(estimate, float(low), float(high), blocks, rounds)


def interleaved_speedup(reference: ort.InferenceSession, candidate: ort.InferenceSession,
                        feed: Mapping[str, np.ndarray], blocks: int = 10, rounds: int = 20,
                        warmup: int = 10, resamples: int = 2000, seed: int = 0) -> Speedup:
    """How much faster `candidate` runs than `reference`, both timed interleaved in this process.

    ratio: median of every reference run / median of every candidate run (blocks x rounds each; `rounds`
    counts timed runs of each model per block, made RUNS_PER_VISIT at a time); its interval is
    block_bootstrap_ratio's.
    """
    runs_ms = interleaved_blocks({"reference": reference, "candidate": candidate}, feed, blocks, rounds, warmup)
    return block_bootstrap_ratio(runs_ms["reference"], runs_ms["candidate"], resamples, seed)


def _host_id() -> str:
    """16 hex chars of sha256(hostname + /etc/machine-id): tells machines apart without naming them."""
    machine_id = Path("/etc/machine-id")
    try:
        text = machine_id.read_text()
    except OSError:
        text = ""
    return hashlib.sha256((platform.node() + text).encode()).hexdigest()[:16]


def bench_setup(threads: int, providers: Sequence[str]) -> dict:
    """What a latency depends on besides the model: host, CPU, threads, providers, versions."""
    return {"host": _host_id(), "cpu": detect_cpu().model, "threads": int(threads), "providers": list(providers),
            "onnxruntime": ort.__version__, "python": platform.python_version()}
