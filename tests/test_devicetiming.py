"""Device timing (quantlab.devicetiming): IO binding, synchronisation before the clock, the GPU warm-up rule, CUDA
graph fall-back, batch throughput.

IO binding runs for real on the CPU provider with the demo model and a dynamic-batch test model. Fakes stand in
only where the CPU provider cannot: the order of a device sync and the clock's reads, a warm-up's run times, and
onnxruntime refusing a CUDA graph.
"""

import json
import types
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper
from onnxruntime.capi.onnxruntime_pybind11_state import Fail

from quantlab import sessions
from quantlab.devicetiming import (WARMUP_MAX_RUNS, WARMUP_WINDOW, DeviceBinding, DeviceSession, batch_throughput,
                                   device_latency, device_of, device_report, image_batch, open_device_session, warm_up)
from quantlab.errors import ModelError, first_line
from quantlab.sessions import make_session

CPU = ("CPUExecutionProvider",)
CUDA = ("CUDAExecutionProvider", "CPUExecutionProvider")
DYNAMIC_MODEL = Path(__file__).parent / "data" / "models" / "dynamic" / "yolov8.dynamic.opset17.onnx"
DYNAMIC_HW = (96, 160)  # the test models' imgsz
# what onnxruntime raises when it opens a CUDA-graph session whose QLinear ops went back to the CPU
REFUSAL = ("[ONNXRuntimeError] : 1 : FAIL : This session cannot use the graph capture feature as requested by the "
           "user as all compute graph nodes have not been partitioned to the CUDAExecutionProvider")


@pytest.mark.parametrize("providers, device", [
    (CUDA, "cuda"),
    (("TensorrtExecutionProvider", "CUDAExecutionProvider"), "cuda"),  # TensorRT runs on the CUDA device
    (CPU, "cpu"),
    (("OpenVINOExecutionProvider", "CPUExecutionProvider"), "cpu"),  # outputs bound on the host
], ids=["cuda", "tensorrt", "cpu", "openvino-ep"])
def test_device_of_the_first_provider(providers, device):
    assert device_of(providers) == device


def _demo_feed(session, seed=0):
    name, shape = session.get_inputs()[0].name, session.get_inputs()[0].shape
    return {name: image_batch(1, tuple(shape[2:]), seed)}


def test_io_binding_on_cpu_gives_session_runs_outputs(demo_model):
    session = make_session(demo_model)
    feed, other = _demo_feed(session, 0), _demo_feed(session, 1)
    kept = {name: array.copy() for name, array in feed.items()}
    binding = DeviceBinding(session, feed, "cpu")
    binding.run_on_device()
    on_device = [value.numpy().copy() for value in binding.binding.get_outputs()]  # the bound memory is reused
    np.testing.assert_array_equal(on_device[0], session.run(None, feed)[0])
    # a new host image is copied into the bound input: the outputs are that image's, not the first one's
    from_host = binding.run_from_host(other)
    np.testing.assert_array_equal(from_host[0], session.run(None, other)[0])
    assert not np.array_equal(from_host[0], on_device[0])
    np.testing.assert_array_equal(feed[session.get_inputs()[0].name], kept[session.get_inputs()[0].name])


def test_model_only_and_end_to_end_latency_on_cpu(demo_model):
    opened = open_device_session(demo_model, providers=CPU, cuda_graph=True)
    latency = device_latency(opened, _demo_feed(opened.session), runs=4, warmup=1)
    assert (latency.model_only.runs, latency.end_to_end.runs, latency.warmup_runs) == (4, 4, 1)
    assert latency.model_only.median_ms > 0 and latency.end_to_end.median_ms > 0
    assert latency.cuda_graph is None and "CPUExecutionProvider" in latency.reason


class EventClock:
    """A clock whose every read is logged in the shared event list."""

    def __init__(self, events):
        self.events, self.now_s = events, 0.0

    def __call__(self) -> float:
        self.events.append("clock")
        self.now_s += 0.001
        return self.now_s


class LoggingBinding:
    """The IOBinding calls DeviceBinding makes; the run-time ones are logged."""

    def __init__(self, events):
        self.events = events

    def bind_ortvalue_input(self, name, value):
        pass

    def bind_output(self, name, device, device_id):
        pass

    def bind_ortvalue_output(self, name, value):
        pass

    def synchronize_inputs(self):
        pass

    def synchronize_outputs(self):
        self.events.append("sync")

    def get_outputs(self):
        return [types.SimpleNamespace(shape=lambda: [1, 8, 10])]

    def copy_outputs_to_cpu(self):
        self.events.append("copy")
        return [np.zeros((1, 8, 10), np.float32)]


class LoggingSession:
    def __init__(self, events):
        self.events, self.binding = events, LoggingBinding(events)

    def io_binding(self):
        return self.binding

    def get_outputs(self):
        return [types.SimpleNamespace(name="output0")]

    def run_with_iobinding(self, binding):
        self.events.append("run")


def test_the_device_is_synchronised_before_the_clock_stops_on_every_timed_run():
    events, runs = [], 7
    opened = DeviceSession(LoggingSession(events), "cpu", None, "")
    device_latency(opened, {"images": np.zeros((1, 3, 4, 4), np.float32)}, runs=runs, warmup=2,
                   clock=EventClock(events))
    reads = [i for i, event in enumerate(events) if event == "clock"]
    assert len(reads) == 2 * 2 * runs  # model-only and end-to-end, a start and a stop each
    for start, stop in zip(reads[::2], reads[1::2]):
        timed = events[start + 1:stop]
        assert timed.count("run") == 1, timed
        # model-only: the outputs synchronised; end-to-end: copied to the host (a blocking copy)
        assert timed[-1] in ("sync", "copy") and timed.index("run") < len(timed) - 1, timed
    assert sum(events[start + 1:stop] == ["run", "copy"] for start, stop in zip(reads[::2], reads[1::2])) == runs


class ScriptedRuns:
    """A step whose k-th call takes durations_ms[k] on its own clock; a call past the script raises."""

    def __init__(self, durations_ms):
        self.durations_ms, self.calls, self.now_s = list(durations_ms), 0, 0.0

    def clock(self) -> float:
        return self.now_s

    def step(self):
        self.now_s += self.durations_ms[self.calls] / 1000.0
        self.calls += 1


SCRIPT_RUNS = WARMUP_MAX_RUNS + 50
FALLS_UNTIL = 40  # runs that get faster, in the first case


@pytest.mark.parametrize("durations_ms, low, high", [
    # 10% faster each run for 40 runs (cuDNN's search, clocks ramping up), then flat: warms past the fall, stops
    # within two windows of it
    ([10 * 0.9 ** min(k, FALLS_UNTIL) for k in range(SCRIPT_RUNS)], FALLS_UNTIL, FALLS_UNTIL + 2 * WARMUP_WINDOW),
    # never stops getting faster: the bound ends it
    ([10 * 0.97 ** k for k in range(SCRIPT_RUNS)], WARMUP_MAX_RUNS - WARMUP_WINDOW + 1, WARMUP_MAX_RUNS),
    # flat from the first run: the asked-for count and the two windows the rule needs to see a median settle
    ([5.0] * SCRIPT_RUNS, 10, 10 + 2 * WARMUP_WINDOW),
], ids=["falls-then-flat", "falls-forever", "flat"])
def test_gpu_warm_up_runs_while_the_median_falls_within_its_bound(durations_ms, low, high):
    runs = ScriptedRuns(durations_ms)
    done = warm_up(runs.step, 10, on_gpu=True, clock=runs.clock)
    assert done == runs.calls
    assert low <= done <= high


def test_cpu_warm_up_is_the_plain_count():
    runs = ScriptedRuns([10 * 0.9 ** k for k in range(SCRIPT_RUNS)])
    assert warm_up(runs.step, 10, on_gpu=False, clock=runs.clock) == runs.calls == 10


class FakeOpener:
    """make_session's signature; with `refuse`, a session with provider options fails as make_session does
    on onnxruntime's refusal; with `drops_options`, it opens without them (a silent retry)."""

    def __init__(self, refuse=False, drops_options=False):
        self.refuse, self.drops_options, self.calls = refuse, drops_options, []

    def __call__(self, path, threads, providers, provider_options=None):
        self.calls.append(provider_options)
        if provider_options and self.refuse:
            try:
                raise Fail(REFUSAL + "\nstack frames follow")
            except Fail as exc:
                raise ModelError(f"{path}: onnxruntime cannot load it: {first_line(exc)}") from exc
        kept = {} if self.drops_options or not provider_options else provider_options[0]
        return types.SimpleNamespace(options=provider_options,
                                     get_provider_options=lambda: {providers[0]: dict(kept)})


@pytest.mark.parametrize("providers, asked, opener, graph, reason, calls", [
    # CPU: not applicable, whatever was asked
    (CPU, True, FakeOpener(), None, "CPUExecutionProvider", [None]),
    # CUDA without asking: a plain session
    (CUDA, False, FakeOpener(), False, "not asked for", [None]),
    # CUDA, accepted: the option on the CUDA provider only
    (CUDA, True, FakeOpener(), True, "captured", [[{"enable_cuda_graph": "1"}, {}]]),
    # CUDA, refused when opened: the plain session, onnxruntime's first line kept
    (CUDA, True, FakeOpener(refuse=True), False, REFUSAL, [[{"enable_cuda_graph": "1"}, {}], None]),
    # CUDA, opened without the option: not claimed as a graph
    (CUDA, True, FakeOpener(drops_options=True), False, "without enable_cuda_graph",
     [[{"enable_cuda_graph": "1"}, {}]]),
], ids=["cpu", "cuda-off", "cuda-graph", "cuda-graph-refused", "cuda-graph-dropped"])
def test_cuda_graph_is_used_or_falls_back_with_its_reason(providers, asked, opener, graph, reason, calls):
    opened = open_device_session("m.onnx", 1, providers, cuda_graph=asked, open_session=opener)
    assert (opened.cuda_graph, opened.device) == (graph, device_of(providers))
    assert reason in opened.reason and "\n" not in opened.reason
    assert opener.calls == calls
    assert opened.session.options == calls[-1]  # the session kept is the last one opened


def test_make_session_passes_provider_options_to_onnxruntime(demo_model, monkeypatch):
    seen, real_session = [], ort.InferenceSession

    def recording_session(*args, **kwargs):
        seen.append(kwargs.get("provider_options"))
        return real_session(*args, **kwargs)

    monkeypatch.setattr(sessions.ort, "InferenceSession", recording_session)
    make_session(demo_model, provider_options=[{}])
    make_session(demo_model)
    assert seen == [[{}], None]


def test_throughput_at_batch_1_8_32_on_a_dynamic_batch_model():
    name = make_session(DYNAMIC_MODEL).get_inputs()[0].name
    results = batch_throughput(DYNAMIC_MODEL, lambda: open_device_session(DYNAMIC_MODEL), name, DYNAMIC_HW,
                               batches=(1, 8, 32), runs=2, warmup=1)
    assert [t.batch for t in results] == [1, 8, 32]
    for t in results:
        assert t.output_shape[0] == t.batch and t.latency.runs == 2
        assert t.images_per_s == pytest.approx(t.batch * 1000.0 / t.latency.median_ms)


def _fixed_batch_output_model(path: Path) -> Path:
    """images (batch, 3, 4, 4) -> output (1, batch * 48): dynamic at the input, fixed at the output."""
    graph = helper.make_graph(
        [helper.make_node("Reshape", ["images", "shape"], ["output0"])], "fixed_output",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, ["batch", 3, 4, 4])],
        [helper.make_tensor_value_info("output0", TensorProto.FLOAT, [1, None])],
        [helper.make_tensor("shape", TensorProto.INT64, [2], [1, -1])])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


def test_an_output_whose_batch_is_not_the_inputs_is_refused(tmp_path):
    path = _fixed_batch_output_model(tmp_path / "fixed_output.onnx")
    with pytest.raises(ModelError, match=r"fixed_output\.onnx: output output0 has shape \(1, 384\) for a batch of 8"):
        batch_throughput(path, lambda: open_device_session(path), "images", (4, 4), batches=(1, 8), runs=1,
                         warmup=0)


def test_device_report_is_json_with_throughput_where_the_batch_is_dynamic(demo_model):
    fixed = device_report(demo_model, runs=2, warmup=1)
    dynamic = device_report(DYNAMIC_MODEL, runs=2, warmup=1)
    assert fixed["throughput"] == []
    assert fixed["throughput_reason"] == "batch axis fixed at 1: re-export with dynamic=True"
    assert [t["batch"] for t in dynamic["throughput"]] == [1, 8, 32] and dynamic["throughput_reason"] is None
    assert [t["output_shape"][0] for t in dynamic["throughput"]] == [1, 8, 32]
    for report in (fixed, dynamic):
        assert json.loads(json.dumps(report)) == report
        assert report["device"] == "cpu" and report["cuda_graph"] is None
        assert report["model_only_ms"]["runs"] == report["end_to_end_ms"]["runs"] == 2
