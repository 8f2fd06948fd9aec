"""Latency measurement (quantlab.bench): interleaved rounds in a seeded order, warm visits, robust statistics.

Fake sessions log their calls and a fake clock gives each call a known duration, so the order of calls
and the statistics are exact, whatever the machine's load.
"""

import re
import types

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from quantlab import bench
from quantlab.bench import Latency, interleaved_latency, make_session, session_options

WARMUP_MS = 1000.0  # a warm-up call is slow; it must never reach the statistics


class FakeClock:
    def __init__(self):
        self.now_s = 0.0

    def perf_counter(self) -> float:
        return self.now_s


class FakeSession:
    """run() logs its name in a shared log and takes `durations_ms[i]` on the fake clock for the i-th timed call."""

    def __init__(self, name, durations_ms, clock, log, warmup):
        self.name, self.durations_ms, self.clock, self.log, self.warmup = name, list(durations_ms), clock, log, warmup
        self.calls = 0

    def run(self, output_names, feed):
        assert output_names is None and feed is FEED  # every model gets the same, pre-built input
        self.log.append(self.name)
        timed = self.calls - self.warmup
        self.clock.now_s += (WARMUP_MS if timed < 0 else self.durations_ms[timed]) / 1000.0
        self.calls += 1
        return [np.zeros((1, 8, 10), np.float32)]


FEED = {"images": np.zeros((1, 3, 8, 8), np.float32)}
UNTIMED_MS = 2000.0  # the untimed run at the start of each visit; it must never reach the statistics either


def _with_untimed_runs(durations_ms: dict, blocks: int = 1, runs: int | None = None) -> dict:
    """Per-call durations with UNTIMED_MS inserted where each visit's untimed run falls."""
    out = {}
    for name, timed in durations_ms.items():
        per_block = runs or len(timed)
        calls = []
        for block in range(blocks):
            chunk = timed[block * per_block:(block + 1) * per_block]
            for start in range(0, len(chunk), bench.RUNS_PER_VISIT):
                calls += [UNTIMED_MS, *chunk[start:start + bench.RUNS_PER_VISIT]]
        out[name] = calls
    return out


@pytest.fixture
def fake_timing(monkeypatch):
    clock, log = FakeClock(), []
    monkeypatch.setattr(bench, "time", types.SimpleNamespace(perf_counter=clock.perf_counter))

    def sessions(durations_ms: dict, warmup: int):
        return {name: FakeSession(name, d, clock, log, warmup) for name, d in durations_ms.items()}
    return sessions, log


def _visits(log: list[str], calls: int) -> list[str]:
    """The session of each visit, when every visit makes `calls` calls; fails if one mixes sessions."""
    chunks = [log[i:i + calls] for i in range(0, len(log), calls)]
    assert all(len(set(chunk)) == 1 for chunk in chunks)
    return [chunk[0] for chunk in chunks]


def _longest_streak(log: list[str]) -> int:
    longest = streak = 0
    for i, name in enumerate(log):
        streak = streak + 1 if i and log[i - 1] == name else 1
        longest = max(longest, streak)
    return longest


def test_rounds_visit_every_model_in_a_changing_order_after_all_warmups(fake_timing):
    make, log = fake_timing
    names = ["fp32", "auto", "dynamic"]
    runs = 3 * bench.RUNS_PER_VISIT * 6
    sessions = make(_with_untimed_runs({name: [1] * runs for name in names}), warmup=2)
    interleaved_latency(sessions, FEED, runs=runs, warmup=2)
    assert log[:6] == ["fp32", "fp32", "auto", "auto", "dynamic", "dynamic"]
    # a visit: one untimed run, to bring the model back into the caches, then RUNS_PER_VISIT timed ones
    visits = _visits(log[6:], 1 + bench.RUNS_PER_VISIT)
    assert len(visits) == 3 * 6 * 3
    rounds = [visits[i:i + 3] for i in range(0, len(visits), 3)]
    assert all(sorted(r) == sorted(names) for r in rounds)  # every round visits each model once
    # and no model is always timed after the same one: every ordered pair meets within a round
    pairs = {(r[i], r[i + 1]) for r in rounds for i in range(2)}
    assert pairs == {(a, b) for a in names for b in names if a != b}


def test_the_order_is_seeded_so_a_measurement_can_be_repeated(fake_timing):
    make, log = fake_timing
    names = _with_untimed_runs({name: [1] * 30 for name in ("fp32", "auto", "dynamic", "s8s8")})
    interleaved_latency(make(names, warmup=0), FEED, runs=30, warmup=0)
    first = list(log)
    log.clear()
    interleaved_latency(make(names, warmup=0), FEED, runs=30, warmup=0)
    assert log == first


def test_each_call_is_timed_alone_and_reported_by_its_median(fake_timing):
    make, _ = fake_timing
    durations = {"fp32": [9, 30, 10, 11, 12], "auto": [5, 1, 7, 6, 100]}
    sessions = make(_with_untimed_runs(durations), warmup=3)
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
    latency = interleaved_latency(make(_with_untimed_runs({"fp32": [3, 1, 2]}), warmup=0), FEED, runs=3, warmup=0)
    assert log == ["fp32"] * 4 and latency["fp32"].median_ms == pytest.approx(2.0)


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
    interleaved_latency(make(_with_untimed_runs({"fp32": [1] * 100, "auto": [1] * 100}), warmup=10), FEED)
    visits = -(-100 // bench.RUNS_PER_VISIT)
    assert log.count("fp32") == log.count("auto") == 10 + visits + 100  # warm-ups, untimed, timed


@pytest.mark.parametrize("threads", [None, 1, 3])
def test_every_session_is_configured_alike(threads):
    options = session_options() if threads is None else session_options(threads)
    assert options.intra_op_num_threads == (threads or 1) and options.inter_op_num_threads == 1
    assert options.log_severity_level == 3  # errors only: no warnings on every session
    assert options.execution_mode == ort.ExecutionMode.ORT_SEQUENTIAL
    assert options.graph_optimization_level == ort.GraphOptimizationLevel.ORT_ENABLE_ALL


def _add_model(path, external: bool):
    """y = x + w, w a (1, 4) initializer of 1..4, saved with its weights in `<name>.data` when external."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])
    w = numpy_helper.from_array(np.arange(1, 5, dtype=np.float32).reshape(1, 4), "w")
    graph = helper.make_graph([helper.make_node("Add", ["x", "w"], ["y"])], "add", [x], [y], [w])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.save_model(model, str(path), save_as_external_data=external, location=f"{path.name}.data",
                    size_threshold=0)
    return path


@pytest.mark.parametrize(
    ("external", "source_type"),
    [(False, bytes), (True, str)],  # bytes: any path works; a path: onnxruntime finds the data files beside it
    ids=["self-contained", "external-data"],
)
def test_sessions_open_from_bytes_unless_the_model_has_external_data(tmp_path, monkeypatch, external, source_type):
    folder = tmp_path / "모델 folder"
    folder.mkdir()
    path = _add_model(folder / "add.onnx", external)
    calls, real = [], ort.InferenceSession

    def spy(source, options, providers):
        calls.append((type(source), options.intra_op_num_threads, providers))
        return real(source, options, providers=providers)

    monkeypatch.setattr(bench.ort, "InferenceSession", spy)
    session = make_session(path, threads=2)
    make_session(path)
    assert calls == [(source_type, 2, ["CPUExecutionProvider"]), (source_type, 1, ["CPUExecutionProvider"])]
    out = session.run(None, {"x": np.ones((1, 4), np.float32)})[0]
    np.testing.assert_array_equal(out, [[2, 3, 4, 5]])


def test_speedup_is_a_ratio_of_medians_of_interleaved_runs(fake_timing):
    """One run in five is a 50x outlier: the median ignores it, a mean would not (ratio of means ~0.36)."""
    make, log = fake_timing
    durations = {"fp32": [10.0, 10.0, 10.0, 10.0, 500.0] * 8, "int8": [5.0, 5.0, 5.0, 5.0, 4000.0] * 8}
    sessions = make(_with_untimed_runs(durations, blocks=4, runs=10), warmup=3)
    speedup = bench.interleaved_speedup(sessions["fp32"], sessions["int8"], FEED, blocks=4, rounds=10, warmup=3)
    assert speedup.ratio == pytest.approx(2.0)
    assert speedup.low == pytest.approx(2.0) and speedup.high == pytest.approx(2.0)
    assert (speedup.blocks, speedup.rounds) == (4, 10)
    timed = log[2 * 3:]  # after each session's warm-up
    assert timed.count("int8") == timed.count("fp32") == 4 * (10 + -(-10 // bench.RUNS_PER_VISIT))
    # interleaved: the two models take turns a visit at a time, never a whole block of one
    assert _longest_streak(timed) <= 2 * (1 + bench.RUNS_PER_VISIT)


def test_speedup_interval_spans_the_block_ratios(fake_timing):
    """The candidate drifts slower block after block (10 rounds each): the interval must widen."""
    make, _ = fake_timing
    durations = {"fp32": [10.0] * 40, "int8": [5.0] * 10 + [6.0] * 10 + [7.0] * 10 + [8.0] * 10}
    sessions = make(_with_untimed_runs(durations, blocks=4, runs=10), warmup=0)
    speedup = bench.interleaved_speedup(sessions["fp32"], sessions["int8"], FEED, blocks=4, rounds=10, warmup=0)
    assert 10 / 8 - 1e-9 <= speedup.low < speedup.ratio < speedup.high <= 10 / 5 + 1e-9
    assert speedup.ratio == pytest.approx(10 / 6.5)


def test_bench_setup_names_the_machine_without_revealing_it():
    setup = bench.bench_setup(2, ["CPUExecutionProvider"])
    assert re.fullmatch(r"[0-9a-f]{16}", setup["host"])
    assert setup["threads"] == 2 and setup["providers"] == ["CPUExecutionProvider"]
    assert {"cpu", "onnxruntime", "python"} <= set(setup)
