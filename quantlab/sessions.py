"""The one way to open a model for inference, whichever runtime runs it, with the same settings everywhere.

Latency, evaluation, the self-check, tune and memory all open their sessions here, so every number is
measured with the same options: `threads` intra-op threads, one inter-op thread, sequential execution,
every graph optimization, and the execution `providers` in priority order.

A session exposes the subset of onnxruntime's InferenceSession that quantlab uses:
`run(output_names or None, {input name: array}) -> list[np.ndarray]`, `get_inputs()[0].name/.shape`
and `get_outputs()[0].name`. onnxruntime is the default; OpenVINO is an optional extra
(`pip install 'quantlab-yolo[openvino]'`) whose CPU plugin reads ONNX directly, QDQ INT8 models included.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort

from quantlab.devices import CPU_PROVIDER
from quantlab.errors import ConfigError, ModelError, first_line
from quantlab.variant import ONNXRUNTIME, TENSORRT

OPENVINO = "openvino"
RUNTIMES = (ONNXRUNTIME, OPENVINO, TENSORRT)
DEFAULT_PROVIDERS = (CPU_PROVIDER,)


def session_options(threads: int = 1, arena: bool = True) -> ort.SessionOptions:
    """Fixed threads and sequential execution, so every model is timed and measured alike.

    arena: onnxruntime's CPU memory arena, on as in a default deployment.
    """
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    options.enable_cpu_mem_arena = arena
    return options


def parse_providers(text: str) -> tuple[str, ...]:
    """'CUDAExecutionProvider,CPUExecutionProvider' -> a tuple, each one available in this onnxruntime."""
    providers = tuple(p.strip() for p in text.split(",") if p.strip())
    available = ort.get_available_providers()
    missing = [p for p in providers if p not in available]
    if missing or not providers:
        raise ConfigError(f"execution provider(s) {', '.join(missing) or '(none)'} not available in onnxruntime "
                          f"{ort.__version__}: choose from {', '.join(available)}")
    return providers


def inference_session(model: str | bytes, threads: int = 1, providers: Sequence[str] = DEFAULT_PROVIDERS,
                      arena: bool = True, provider_options: Sequence[dict] | None = None,
                      optimized_model: Path | None = None) -> ort.InferenceSession:
    """An onnxruntime session on a model file's path or a serialized model, with session_options;
    onnxruntime's own errors pass through (make_session explains them for a file).

    provider_options: one dict of onnxruntime's option strings per provider, in the same order
    (e.g. [{"enable_cuda_graph": "1"}, {}]); None for every provider's defaults.
    optimized_model: where onnxruntime saves the graph it optimised and placed for these providers.
    """
    options = session_options(threads, arena)
    if optimized_model is not None:
        options.optimized_model_filepath = str(optimized_model)
    given = {} if provider_options is None else {"provider_options": list(provider_options)}
    return ort.InferenceSession(model, options, providers=list(providers), **given)


def make_session(path: str | Path, threads: int = 1, providers: Sequence[str] = DEFAULT_PROVIDERS,
                 provider_options: Sequence[dict] | None = None,
                 optimized_model: Path | None = None) -> ort.InferenceSession:
    """An onnxruntime session on the model at `path`; a self-contained model's bytes are read by Python so any
    path works (a model with external data is opened by path, so onnxruntime finds its data files).
    provider_options and optimized_model: as inference_session's."""
    # here, not at the top: memory's child process imports this module, and onnx would weigh in its baseline
    from quantlab.onnxmodel import external_data_files, openable_by_name

    path = Path(path)
    try:
        if external_data_files(path):
            with openable_by_name(path) as openable:
                session = inference_session(str(openable), threads, providers, provider_options=provider_options,
                                            optimized_model=optimized_model)
        else:
            session = inference_session(path.read_bytes(), threads, providers, provider_options=provider_options,
                                        optimized_model=optimized_model)
    except Exception as exc:  # onnxruntime's error types share no base class but Exception
        raise ModelError(f"{path}: onnxruntime cannot load it: {first_line(exc)}") from exc
    if session.get_providers()[0] != providers[0]:  # e.g. TensorRT listed but its libraries absent
        raise ConfigError(f"{path}: {providers[0]} was asked for, but onnxruntime fell back to "
                          f"{session.get_providers()[0]}: a timing would be of the wrong device")
    return session


@dataclass(frozen=True)
class Port:
    """An input or output as onnxruntime's NodeArg spells it: name and shape (None for dynamic dims)."""

    name: str
    shape: list


class OpenVinoSession:
    """An OpenVINO CPU compiled model behind onnxruntime's session API, with one infer request per thread that
    runs it (a request holds its tensors, so two threads must not share one), like onnxruntime's thread-safe run."""

    def __init__(self, path: Path, threads: int = 1):
        import openvino as ov

        from quantlab.onnxmodel import openable_by_name

        core = ov.Core()
        # LATENCY with a fixed thread count: one stream, timed like onnxruntime's sequential session.
        # The inference precision stays OpenVINO's default (BF16 on CPUs that have it): that is what a
        # user of the runtime gets, and the gates judge its accuracy like any other variant's.
        with openable_by_name(path) as openable:  # read and compiled while the link lasts
            self._compiled = core.compile_model(core.read_model(str(openable)), "CPU",
                                                {"INFERENCE_NUM_THREADS": threads, "PERFORMANCE_HINT": "LATENCY"})
        self._requests = threading.local()
        self._requests.request = self._compiled.create_infer_request()  # the opening thread's at load: never made in a timed run
        self._inputs = [Port(p.get_any_name(), _dims(p)) for p in self._compiled.inputs]
        self._ports = {p.get_any_name(): p for p in self._compiled.outputs}  # looked up once, not per run
        self._outputs = [Port(name, _dims(p)) for name, p in self._ports.items()]

    def get_inputs(self) -> list[Port]:
        return self._inputs

    def get_outputs(self) -> list[Port]:
        return self._outputs

    def run(self, output_names: Sequence[str] | None, feed: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        # share_outputs=False (the default, spelt out): copies, so a result survives the next run
        request = getattr(self._requests, "request", None)
        if request is None:
            request = self._requests.request = self._compiled.create_infer_request()
        results = request.infer(dict(feed), share_outputs=False)
        return [results[self._ports[name]] for name in (output_names or self._ports)]


def _dims(port) -> list:
    return [d.get_length() if d.is_static else None for d in port.get_partial_shape()]


def parse_runtimes(text: str, required: bool = True) -> tuple[str, ...]:
    """'openvino' -> ('onnxruntime', 'openvino'): known runtime names, each one able to run here (unless not
    `required`: the caller skips those that cannot, saying why), onnxruntime first always (FP32 on onnxruntime
    is every comparison's reference)."""
    names = tuple(dict.fromkeys(n.strip().lower() for n in text.split(",") if n.strip()))
    unknown = [n for n in names if n not in RUNTIMES]
    if unknown or not names:
        raise ConfigError(f"runtime(s) {', '.join(unknown) or '(none)'} unknown: choose from {', '.join(RUNTIMES)}")
    for name in names if required else ():
        require(name)
    return tuple(dict.fromkeys((ONNXRUNTIME, *names)))


def runtime_unavailable(runtime: str) -> str | None:
    """Why `runtime` cannot run here, in one sentence (the pip command for a missing package, TensorRT's
    missing provider or libraries); None when it can."""
    if runtime == OPENVINO:
        try:
            import openvino  # noqa: F401
        except ImportError:
            return "the openvino package is not installed: pip install 'quantlab-yolo[openvino]'"
    if runtime == TENSORRT:
        from quantlab.providers import tensorrt_unavailable

        return tensorrt_unavailable()
    return None


def require(runtime: str) -> None:
    """A ConfigError saying why when `runtime` cannot run here (runtime_unavailable)."""
    if reason := runtime_unavailable(runtime):
        raise ConfigError(f"runtime {runtime}: {reason}")


def runtime_version(runtime: str) -> str:
    """The version of the package that runs `runtime` (onnxruntime's for TensorRT: it loads the libraries)."""
    if runtime == OPENVINO:
        import openvino

        return openvino.__version__.split("-")[0]  # 2026.4.1-22982-<hash>-releases/...: the release
    return ort.__version__


@dataclass(frozen=True)
class SessionSettings:
    """How a job opens every session it times, evaluates and measures: one set, so every number is taken alike.
    engine_cache: where TensorRT keeps its engines (inside the job's output folder); None: not cached."""

    threads: int = 1
    providers: tuple[str, ...] = DEFAULT_PROVIDERS
    engine_cache: Path | None = None

    def open(self, path: str | Path, runtime: str = ONNXRUNTIME):
        """A session on `runtime` for the model at `path` (see open_session)."""
        return open_session(path, runtime, self.threads, self.providers, self.engine_cache)


def open_session(path: str | Path, runtime: str = ONNXRUNTIME, threads: int = 1,
                 providers: Sequence[str] = DEFAULT_PROVIDERS, engine_cache: Path | None = None):
    """A session on `runtime` for the model at `path`: onnxruntime with `providers`, onnxruntime with TensorRT
    first (its engines cached in `engine_cache`), or OpenVINO on CPU."""
    if runtime == ONNXRUNTIME:
        return make_session(path, threads, providers)
    require(runtime)
    if runtime == TENSORRT:
        from quantlab.providers import tensorrt_session

        return tensorrt_session(path, threads, engine_cache)
    try:
        return OpenVinoSession(Path(path), threads)
    except Exception as exc:  # OpenVINO raises RuntimeError or its own exception types
        raise ModelError(f"{path}: OpenVINO cannot load it: {first_line(exc)}") from exc


def run_explained(session, output_names: Sequence[str] | None, feed: Mapping[str, np.ndarray],
                  what: str) -> list[np.ndarray]:
    """session.run; a failure is a ModelError naming `what` (the model, the image) and the input shape."""
    try:
        return session.run(output_names, dict(feed))
    except Exception as exc:  # onnxruntime's error types share no base class but Exception
        shape = "x".join(str(d) for d in next(iter(feed.values())).shape)
        raise ModelError(f"{what}: cannot run on a {shape} input: {first_line(exc)}") from exc
