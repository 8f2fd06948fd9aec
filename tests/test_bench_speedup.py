"""Same-run speedup (quantlab.bench.interleaved_speedup): interleaved calls, a ratio of medians, a block-bootstrap interval; the setup record."""

import re

import pytest

from quantlab import bench


class FakeClock:
    """perf_counter for bench: advances only when a fake session runs."""

    def __init__(self):
        self.now_s = 0.0

    def __call__(self) -> float:
        return self.now_s


class FakeSession:
    """Records each call in a shared log and takes the next of its durations (ms), cycling."""

    def __init__(self, name: str, durations_ms: list[float], clock: FakeClock, log: list[str]):
        self.name, self.durations_ms, self.clock, self.log = name, durations_ms, clock, log
        self.calls = 0

    def run(self, output_names, feed):
        self.clock.now_s += self.durations_ms[self.calls % len(self.durations_ms)] / 1000.0
        self.calls += 1
        self.log.append(self.name)


@pytest.fixture
def clock(monkeypatch):
    fake = FakeClock()
    monkeypatch.setattr(bench.time, "perf_counter", fake)
    return fake


def test_speedup_is_a_ratio_of_medians_of_interleaved_runs(clock):
    log = []
    # one run in five is a 50x outlier: the median ignores it, a mean would not (ratio of means ~0.36)
    reference = FakeSession("fp32", [10.0, 10.0, 10.0, 10.0, 500.0], clock, log)
    candidate = FakeSession("int8", [5.0, 5.0, 5.0, 5.0, 4000.0], clock, log)
    speedup = bench.interleaved_speedup(reference, candidate, {}, blocks=4, rounds=10, warmup=3)
    assert speedup.ratio == pytest.approx(2.0)
    assert speedup.low == pytest.approx(2.0) and speedup.high == pytest.approx(2.0)
    assert (speedup.blocks, speedup.rounds) == (4, 10)
    timed = log[2 * 3:]  # after each session's warm-up
    assert len(timed) == 2 * 4 * 10
    # interleaved: every round calls both sessions once, never one session's runs back to back
    rounds = [set(timed[i:i + 2]) for i in range(0, len(timed), 2)]
    assert rounds == [{"fp32", "int8"}] * len(rounds)


def test_speedup_interval_spans_the_block_ratios(clock):
    log = []
    # the candidate drifts slower block after block (each block is 10 rounds): the interval must widen
    candidate_ms = [5.0] * 10 + [6.0] * 10 + [7.0] * 10 + [8.0] * 10
    speedup = bench.interleaved_speedup(FakeSession("fp32", [10.0], clock, log),
                                        FakeSession("int8", candidate_ms, clock, log), {},
                                        blocks=4, rounds=10, warmup=0)
    assert 10 / 8 <= speedup.low < speedup.ratio < speedup.high <= 10 / 5
    assert speedup.ratio == pytest.approx(10 / 6.5)


def test_bench_setup_names_the_machine_without_revealing_it():
    setup = bench.bench_setup(2, ["CPUExecutionProvider"])
    assert re.fullmatch(r"[0-9a-f]{16}", setup["host"])
    assert setup["threads"] == 2 and setup["providers"] == ["CPUExecutionProvider"]
    assert {"cpu", "onnxruntime", "python"} <= set(setup)
