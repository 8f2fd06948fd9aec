"""Latency and throughput of a session with its inputs and outputs on the provider's device (IO binding).

Two latencies, side by side:
- model-only: the image is copied to the device once and the outputs stay there; each timed run is
  `run_with_iobinding` then `synchronize_outputs`, so the clock stops when the device has finished, not when
  the launch returned.
- end-to-end: each timed run copies the host image in, runs, and copies every output back to host arrays:
  what a caller holding numpy arrays waits for.

On the CPU provider the device is the host ('cpu'), and both paths still run through IO binding.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort

from quantlab.bench import RUNS_PER_VISIT, Latency, bench_setup
from quantlab.devices import CUDA_PROVIDER, on_gpu
from quantlab.errors import ConfigError, ModelError, first_line
from quantlab.onnxmodel import inspect_model, resolve_input_hw
from quantlab.sessions import DEFAULT_PROVIDERS, make_session

WARMUP_WINDOW = 5  # runs whose median the GPU warm-up compares with the window before
WARMUP_SETTLED = 0.98  # a window's median above 98% of the previous window's has stopped falling
WARMUP_MAX_RUNS = 200  # the GPU warm-up's bound, runs in all
BATCHES = (1, 8, 32)

Clock = Callable[[], float]


def device_of(providers: Sequence[str]) -> str:
    """The OrtValue device of the first provider: 'cuda' for CUDA and TensorRT, 'cpu' for the others."""
    return "cuda" if on_gpu(providers) else "cpu"


@dataclass(frozen=True)
class DeviceSession:
    """A session opened for device timing; cuda_graph: whether it replays a CUDA graph (None: not applicable to
    its provider), reason: why, or onnxruntime's refusal in its first line."""

    session: ort.InferenceSession
    device: str
    cuda_graph: bool | None
    reason: str


def open_device_session(path: str | Path, threads: int = 1, providers: Sequence[str] = DEFAULT_PROVIDERS,
                        cuda_graph: bool = False, open_session=make_session) -> DeviceSession:
    """A session on the model at `path` (open_session: make_session's signature), with the CUDA provider's
    `enable_cuda_graph` when `cuda_graph` is asked for and CUDA is the first provider.

    onnxruntime refuses a CUDA graph when it opens the session (e.g. an INT8 QDQ model whose QLinear ops
    go back to the CPU: "all compute graph nodes have not been partitioned to the CUDAExecutionProvider");
    the plain session is opened instead and the refusal's first line kept as the reason. A session opened
    without the option (onnxruntime's Python retries some failures without provider options) is not
    counted as a graph either.
    """
    device = device_of(providers)
    if providers[0] != CUDA_PROVIDER:
        return DeviceSession(open_session(path, threads, providers), device, None,
                             f"CUDA graphs are a CUDA provider option; {providers[0]} runs this model")
    if not cuda_graph:
        return DeviceSession(open_session(path, threads, providers), device, False, "not asked for")
    options = [{"enable_cuda_graph": "1"} if p == CUDA_PROVIDER else {} for p in providers]
    try:
        session = open_session(path, threads, providers, options)
    except ModelError as exc:  # make_session's, raised from onnxruntime's own error
        return DeviceSession(open_session(path, threads, providers), device, False, first_line(exc.__cause__ or exc))
    if session.get_provider_options().get(CUDA_PROVIDER, {}).get("enable_cuda_graph") != "1":
        return DeviceSession(session, device, False, "onnxruntime opened the session without enable_cuda_graph")
    return DeviceSession(session, device, True, "captured in the warm-up, replayed in every timed run")


class DeviceBinding:
    """A session's IO binding with its inputs copied to `device` once and its outputs bound there.

    The outputs are allocated by a first run, then bound at those addresses: a CUDA graph replays into the
    addresses it captured, and no timed run pays for an allocation.
    """

    def __init__(self, session, feed: Mapping[str, np.ndarray], device: str):
        self.session = session
        self.binding = session.io_binding()
        # a private copy: on 'cpu' the OrtValue shares the array's memory, and run_from_host writes into it
        self.inputs = {name: ort.OrtValue.ortvalue_from_numpy(np.array(array), device, 0)
                       for name, array in feed.items()}
        for name, value in self.inputs.items():
            self.binding.bind_ortvalue_input(name, value)
        self.output_names = [output.name for output in session.get_outputs()]
        for name in self.output_names:
            self.binding.bind_output(name, device, 0)
        self.binding.synchronize_inputs()
        self.run_on_device()
        for name, value in zip(self.output_names, self.binding.get_outputs()):
            self.binding.bind_ortvalue_output(name, value)

    def run_on_device(self) -> None:
        """One run on the bound device inputs, returning when the device has written the outputs."""
        self.session.run_with_iobinding(self.binding)
        self.binding.synchronize_outputs()

    def run_from_host(self, feed: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        """One run on host arrays: each copied into its bound device input (the same memory, so a CUDA graph
        still reads it), then every output copied back to a host array (a blocking copy)."""
        for name, array in feed.items():
            self.inputs[name].update_inplace(array)
        self.session.run_with_iobinding(self.binding)
        return self.binding.copy_outputs_to_cpu()

    def output_shape(self, index: int = 0) -> tuple[int, ...]:
        return tuple(self.binding.get_outputs()[index].shape())


def _timed_ms(step: Callable[[], object], runs: int, clock: Clock) -> list[float]:
    """Milliseconds of each of `runs` calls of `step`, the clock read before and after each."""
    samples_ms = []
    for _ in range(runs):
        started = clock()
        step()
        samples_ms.append((clock() - started) * 1000.0)
    return samples_ms


def warm_up(step: Callable[[], object], warmup: int, on_gpu: bool, clock: Clock = time.perf_counter) -> int:
    """Run `step` `warmup` times; on a GPU, keep warming until the runs stop getting faster. Returns the runs done.

    GPU rule: after the `warmup` runs, time windows of WARMUP_WINDOW runs and stop after the first window
    whose median is no lower than WARMUP_SETTLED of the window before (so at least two windows), or when
    WARMUP_MAX_RUNS runs are done in all. cuDNN's algorithm search (the CUDA provider's default is an
    exhaustive one, run per convolution on its first inputs), a CUDA graph's capture and the GPU's clocks
    ramping up all make the first runs slow, by an amount a fixed count cannot know. On the CPU: `warmup` runs.
    """
    for _ in range(warmup):
        step()
    done = warmup
    if not on_gpu:
        return done
    previous_ms = math.inf
    while done + WARMUP_WINDOW <= WARMUP_MAX_RUNS:
        median_ms = float(np.median(_timed_ms(step, WARMUP_WINDOW, clock)))
        done += WARMUP_WINDOW
        if median_ms >= WARMUP_SETTLED * previous_ms:
            break
        previous_ms = median_ms
    return done


@dataclass(frozen=True)
class DeviceLatency:
    """Model-only and end-to-end latency of one session (see the module docstring), whether it replayed a CUDA
    graph (None: not applicable) and why, and the warm-up runs it had."""

    model_only: Latency
    end_to_end: Latency
    cuda_graph: bool | None
    reason: str
    warmup_runs: int

    def as_dict(self) -> dict:
        return {"model_only_ms": self.model_only.as_dict(), "end_to_end_ms": self.end_to_end.as_dict(),
                "cuda_graph": self.cuda_graph, "cuda_graph_reason": self.reason, "warmup_runs": self.warmup_runs}


def device_latency(opened: DeviceSession, feed: Mapping[str, np.ndarray], runs: int = 100, warmup: int = 10,
                   clock: Clock = time.perf_counter) -> DeviceLatency:
    """Model-only and end-to-end latency of `opened` on `feed` ({input name: host array}), `runs` of each,
    timed in alternating rounds of RUNS_PER_VISIT so a machine's drift hits both alike, after warm_up."""
    binding = DeviceBinding(opened.session, feed, opened.device)
    warmup_runs = warm_up(binding.run_on_device, warmup, opened.device != "cpu", clock)
    model_only_ms: list[float] = []
    end_to_end_ms: list[float] = []
    for done in range(0, runs, RUNS_PER_VISIT):
        timed = min(RUNS_PER_VISIT, runs - done)
        model_only_ms += _timed_ms(binding.run_on_device, timed, clock)
        end_to_end_ms += _timed_ms(lambda: binding.run_from_host(feed), timed, clock)
    return DeviceLatency(Latency.from_samples(model_only_ms), Latency.from_samples(end_to_end_ms),
                         opened.cuda_graph, opened.reason, warmup_runs)


@dataclass(frozen=True)
class Throughput:
    """Model-only latency of one batch; output_shape: the first output's, its batch dim checked."""

    batch: int
    latency: Latency
    output_shape: tuple[int, ...]

    @property
    def images_per_s(self) -> float:
        return self.batch * 1000.0 / self.latency.median_ms

    def as_dict(self) -> dict:
        return {"batch": self.batch, "images_per_s": self.images_per_s, "latency_ms": self.latency.as_dict(),
                "output_shape": list(self.output_shape)}


def fixed_batch_reason(input_shape: Sequence[int | None]) -> str | None:
    """Why a model cannot be timed at several batches (its batch axis is fixed), or None when it can."""
    batch = input_shape[0]
    return None if batch is None else f"batch axis fixed at {batch}: re-export with dynamic=True"


def image_batch(batch: int, input_hw: tuple[int, int], seed: int = 0) -> np.ndarray:
    """(batch, 3, H, W) float32, a seeded uniform image in [0, 1): latency does not depend on the pixels."""
    return np.random.default_rng(seed).random((batch, 3, *input_hw), dtype=np.float32)


def batch_throughput(path: str | Path, open_device: Callable[[], DeviceSession], input_name: str,
                     input_hw: tuple[int, int], batches: Sequence[int] = BATCHES, runs: int = 100,
                     warmup: int = 10, clock: Clock = time.perf_counter) -> list[Throughput]:
    """Model-only latency and images/s at each batch, each on its own session from `open_device` (a CUDA graph
    is captured for one input shape). A first output whose batch dim is not the input's is a ModelError: its
    images/s would count images the model did not process."""
    results = []
    for batch in batches:
        opened = open_device()
        binding = DeviceBinding(opened.session, {input_name: image_batch(batch, input_hw)}, opened.device)
        warm_up(binding.run_on_device, warmup, opened.device != "cpu", clock)
        samples_ms = _timed_ms(binding.run_on_device, runs, clock)
        shape = binding.output_shape()
        if not shape or shape[0] != batch:
            raise ModelError(f"{path}: output {binding.output_names[0]} has shape {shape} for a batch of {batch} "
                             "images: its batch axis is not dynamic throughout; re-export with dynamic=True")
        results.append(Throughput(batch, Latency.from_samples(samples_ms), shape))
    return results


def device_report(path: str | Path, providers: Sequence[str] = DEFAULT_PROVIDERS, threads: int = 1,
                  runs: int = 100, warmup: int = 10, batches: Sequence[int] = BATCHES, cuda_graph: bool = False,
                  input_hw: tuple[int, int] | None = None) -> dict:
    """The model at `path` timed on its provider's device: model-only and end-to-end latency at batch 1, the
    CUDA graph's use or its reason, and images/s at each of `batches` where the batch axis is dynamic (else
    `throughput_reason`). A JSON-able dict; latencies in milliseconds."""
    if runs < 1 or warmup < 0 or any(b < 1 for b in batches):
        raise ConfigError(f"device timing: runs {runs}, warmup {warmup}, batches {list(batches)}: "
                          "runs and every batch must be at least 1, warmup at least 0")
    info = inspect_model(path)
    hw = resolve_input_hw(info, input_hw)
    opened = open_device_session(path, threads, providers, cuda_graph)
    latency = device_latency(opened, {info.input_name: image_batch(1, hw)}, runs, warmup)
    reason = fixed_batch_reason(info.input_shape)
    throughput = [] if reason else batch_throughput(
        path, lambda: open_device_session(path, threads, providers, bool(opened.cuda_graph)),
        info.input_name, hw, batches, runs, warmup)
    return {"model": str(path), "setup": bench_setup(threads, providers), "device": opened.device,
            "input_hw": list(hw), **latency.as_dict(),
            "throughput": [t.as_dict() for t in throughput], "throughput_reason": reason}
