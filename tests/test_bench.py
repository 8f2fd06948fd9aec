"""Latency measurement (quantlab.bench): interleaved rounds in a seeded order, warm visits, robust statistics.

Fake sessions log their calls and a fake clock gives each call a known duration, so the order of calls
and the statistics are exact, whatever the machine's load.
"""

import re
import types

import numpy as np
import pytest

from quantlab import bench
from quantlab.bench import Latency, interleaved_latency

UNTIMED_MS = 1000.0  # a warm-up or re-warming call is slow; it must never reach the statistics


class FakeClock:
    """perf_counter() alternately starts and ends a timing, so a run between the two is a timed one."""

    def __init__(self):
        self.now_s, self.reads = 0.0, 0

    def perf_counter(self) -> float:
        self.reads += 1
        return self.now_s

    @property
    def timing(self) -> bool:
        return self.reads % 2 == 1


class FakeSession:
    """run() logs its name in a shared log and takes `durations_ms[i]` on the fake clock for the i-th timed
    call, UNTIMED_MS for any other."""

    def __init__(self, name, durations_ms, clock, log):
        self.name, self.durations_ms, self.clock, self.log = name, list(durations_ms), clock, log
        self.timed = 0

    def run(self, output_names, feed):
        assert output_names is None and feed is FEED  # every model gets the same, pre-built input
        self.log.append((self.name, self.clock.timing))
        if self.clock.timing:
            self.clock.now_s += self.durations_ms[self.timed] / 1000.0
            self.timed += 1
        else:
            self.clock.now_s += UNTIMED_MS / 1000.0
        return [np.zeros((1, 8, 10), np.float32)]


FEED = {"images": np.zeros((1, 3, 8, 8), np.float32)}


@pytest.fixture
def fake_timing(monkeypatch):
    clock, log = FakeClock(), []
    monkeypatch.setattr(bench, "time", types.SimpleNamespace(perf_counter=clock.perf_counter))

    def sessions(durations_ms: dict):
        return {name: FakeSession(name, d, clock, log) for name, d in durations_ms.items()}
    return sessions, log


def _timed(log: list[tuple[str, bool]]) -> list[str]:
    return [name for name, timed in log if timed]


def _longest_streak(names: list[str]) -> int:
    longest = streak = 0
    for i, name in enumerate(names):
        streak = streak + 1 if i and names[i - 1] == name else 1
        longest = max(longest, streak)
    return longest


def test_rounds_visit_every_model_in_a_changing_order_after_all_warmups(fake_timing):
    make, log = fake_timing
    names = ["fp32", "auto", "dynamic"]
    runs = bench.RUNS_PER_VISIT * 18
    interleaved_latency(make({name: [1] * runs for name in names}), FEED, runs=runs, warmup=2)
    assert log[:6] == [(name, False) for name in ("fp32", "fp32", "auto", "auto", "dynamic", "dynamic")]
    timed = _timed(log)
    assert all(timed.count(name) == runs for name in names)
    # a model is timed only right after itself ran: its untimed re-warming run, or its own timed run;
    # and re-warmed only where another model ran before it (no untimed run wasted)
    assert all(log[i - 1][0] == name for i, (name, is_timed) in enumerate(log) if is_timed)
    assert all(log[i - 1][0] != name for i, (name, is_timed) in enumerate(log) if not is_timed and i >= 6)
    # interleaved a visit at a time, and no model always timed after the same one
    assert _longest_streak(timed) <= 2 * bench.RUNS_PER_VISIT
    switches = {(a, b) for a, b in zip(timed, timed[1:]) if a != b}
    assert switches == {(a, b) for a in names for b in names if a != b}


def test_the_order_is_seeded_so_a_measurement_can_be_repeated(fake_timing):
    make, log = fake_timing
    durations = {name: [1] * 30 for name in ("fp32", "auto", "dynamic", "s8s8")}
    interleaved_latency(make(durations), FEED, runs=30, warmup=0)
    first = list(log)
    log.clear()
    interleaved_latency(make(durations), FEED, runs=30, warmup=0)
    assert log == first


def test_each_call_is_timed_alone_and_reported_by_its_median(fake_timing):
    make, _ = fake_timing
    durations = {"fp32": [9, 30, 10, 11, 12], "auto": [5, 1, 7, 6, 100]}
    sessions = make(durations)
    progress = []
    latency = interleaved_latency(sessions, FEED, runs=5, warmup=3, progress=progress.append)
    # medians 11 and 6; the minimum (9, 1) or the mean (14.4, 23.8) would be other numbers
    assert latency["fp32"].median_ms == pytest.approx(11.0) and latency["auto"].median_ms == pytest.approx(6.0)
    assert latency["fp32"].mean_ms == pytest.approx(14.4) and latency["auto"].mean_ms == pytest.approx(23.8)
    assert latency["auto"].p99_ms == pytest.approx(np.percentile(durations["auto"], 99))
    assert latency["fp32"].runs == latency["auto"].runs == 5
    assert sum(progress) == 5 and len(progress) == 2  # a tick per round, of the runs it timed (3, then 2)


def test_one_model_alone_is_measured_too(fake_timing):
    make, log = fake_timing
    latency = interleaved_latency(make({"fp32": [3, 1, 2]}), FEED, runs=3, warmup=1)
    # no other model evicts it: after its warm-up, every run is timed
    assert log == [("fp32", False)] + [("fp32", True)] * 3 and latency["fp32"].median_ms == pytest.approx(2.0)


@pytest.mark.parametrize(
    ("samples_ms", "median", "p90", "p99", "mean"),
    [
        # odd count: the middle value; p90 at rank 3.6 = 4 + 0.6 * 96, p99 at rank 3.96 = 4 + 0.96 * 96
        ([100, 2, 4, 1, 3], 3.0, 61.6, 96.16, 22.0),
        # even count: the mean of the two middle values
        ([1, 2, 3, 10], 2.5, 7.9, 9.79, 4.0),
        # one sample: every statistic is that sample
        ([7.5], 7.5, 7.5, 7.5, 7.5),
    ],
    ids=["odd", "even", "one"],
)
def test_statistics_known_answers(samples_ms, median, p90, p99, mean):
    latency = Latency.from_samples(samples_ms)
    assert (latency.median_ms, latency.p90_ms, latency.p99_ms, latency.mean_ms) == pytest.approx(
        (median, p90, p99, mean))
    assert latency.runs == len(samples_ms)
    assert latency.fps == pytest.approx(1000.0 / median)  # frames per second from the median, not the mean
    assert latency.as_dict() == {"median": latency.median_ms, "p90": latency.p90_ms, "p99": latency.p99_ms,
                                 "mean": latency.mean_ms, "runs": len(samples_ms)}


def test_default_rounds_and_warmups(fake_timing):
    make, log = fake_timing
    interleaved_latency(make({"fp32": [1] * 100, "auto": [1] * 100}), FEED)
    assert log[:20] == [("fp32", False)] * 10 + [("auto", False)] * 10
    assert _timed(log).count("fp32") == _timed(log).count("auto") == 100


def test_speedup_is_a_ratio_of_medians_of_interleaved_runs(fake_timing):
    """One run in five is a 50x outlier: the median ignores it, a mean would not (ratio of means ~0.36)."""
    make, log = fake_timing
    durations = {"fp32": [10.0, 10.0, 10.0, 10.0, 500.0] * 8, "int8": [5.0, 5.0, 5.0, 5.0, 4000.0] * 8}
    sessions = make(durations)
    speedup = bench.interleaved_speedup(sessions["fp32"], sessions["int8"], FEED, blocks=4, rounds=10, warmup=3)
    assert speedup.ratio == pytest.approx(2.0)
    assert speedup.low == pytest.approx(2.0) and speedup.high == pytest.approx(2.0)
    assert (speedup.blocks, speedup.rounds) == (4, 10)
    timed = _timed(log)
    assert timed.count("int8") == timed.count("fp32") == 4 * 10
    # interleaved: the two models take turns a visit at a time, never a whole block of one
    assert _longest_streak(timed) <= 2 * bench.RUNS_PER_VISIT


def test_speedup_interval_spans_the_block_ratios(fake_timing):
    """The candidate drifts slower block after block (10 rounds each): the interval must widen."""
    make, _ = fake_timing
    durations = {"fp32": [10.0] * 40, "int8": [5.0] * 10 + [6.0] * 10 + [7.0] * 10 + [8.0] * 10}
    sessions = make(durations)
    speedup = bench.interleaved_speedup(sessions["fp32"], sessions["int8"], FEED, blocks=4, rounds=10, warmup=0)
    assert 10 / 8 - 1e-9 <= speedup.low < speedup.ratio < speedup.high <= 10 / 5 + 1e-9
    assert speedup.ratio == pytest.approx(10 / 6.5)


def test_bench_setup_names_the_machine_without_revealing_it():
    setup = bench.bench_setup(2, ["CPUExecutionProvider"])
    assert re.fullmatch(r"[0-9a-f]{16}", setup["host"])
    assert setup["threads"] == 2 and setup["providers"] == ["CPUExecutionProvider"]
    assert {"cpu", "onnxruntime", "python"} <= set(setup)


def test_speedup_interval_is_the_95_percent_block_bootstrap_of_the_ratio_of_medians(fake_timing):
    """Known answer, computed here from the documented statistic: resample whole blocks (2000 times, seed 0),
    take the ratio of medians of each resample, report its 2.5th and 97.5th percentiles as low and high."""
    make, _ = fake_timing
    per_block_ms = 5.0 + 0.5 * np.arange(10) ** 1.5  # the candidate slows block after block; fp32 stays at 10 ms
    sessions = make({"fp32": [10.0] * 40, "int8": [ms for ms in per_block_ms for _ in range(4)]})
    speedup = bench.interleaved_speedup(sessions["fp32"], sessions["int8"], FEED, blocks=10, rounds=4, warmup=0)
    picks = np.random.default_rng(0).integers(0, 10, size=(2000, 10))
    ratios = 10.0 / np.median(per_block_ms[picks], axis=1)  # every run of a block takes its block's time
    assert (speedup.low, speedup.high) == pytest.approx(tuple(np.percentile(ratios, [2.5, 97.5])))
    assert (speedup.low, speedup.high) != pytest.approx(tuple(np.percentile(ratios, [5, 95])))  # a 90% interval
    assert speedup.ratio == pytest.approx(10 / np.median(per_block_ms)) and speedup.low < speedup.ratio < speedup.high


def test_each_block_visits_the_models_in_its_own_order(fake_timing):
    """Blocks are seeded apart: the same order in every block would time one model first every time."""
    make, log = fake_timing
    sessions = make({"fp32": [10.0] * 60, "int8": [5.0] * 60})
    bench.interleaved_speedup(sessions["fp32"], sessions["int8"], FEED, blocks=4, rounds=15, warmup=0)
    timed = _timed(log)
    blocks = [tuple(timed[i:i + 30]) for i in range(0, 120, 30)]
    assert len(set(blocks)) > 1


def test_fps_is_the_inverse_of_the_median_not_the_mean():
    assert Latency.from_samples([10.0, 10.0, 40.0]).fps == pytest.approx(100.0)  # the mean, 20 ms, would say 50
