"""Runtimes beside recipes: one way to open a model for inference, whichever engine runs it.

A session exposes the subset of onnxruntime's InferenceSession that quantlab uses:
`run(output_names or None, {input name: array}) -> list[np.ndarray]`, `get_inputs()[0].name/.shape`
and `get_outputs()[0].name`. onnxruntime is the default; OpenVINO is an optional extra
(`pip install 'quantlab-yolo[openvino]'`) whose CPU plugin reads ONNX directly, QDQ INT8 models included.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from quantlab.bench import make_session
from quantlab.errors import ConfigError, ModelError, first_line
from quantlab.onnxmodel import openable_by_name
from quantlab.variant import ONNXRUNTIME

OPENVINO = "openvino"
RUNTIMES = (ONNXRUNTIME, OPENVINO)


@dataclass(frozen=True)
class Port:
    """An input or output as onnxruntime's NodeArg spells it: name and shape (None for dynamic dims)."""

    name: str
    shape: list


class OpenVinoSession:
    """An OpenVINO CPU compiled model with one infer request, behind onnxruntime's session API."""

    def __init__(self, path: Path, threads: int = 1):
        import openvino as ov

        core = ov.Core()
        # LATENCY with a fixed thread count: one stream, timed like onnxruntime's sequential session.
        # The inference precision stays OpenVINO's default (BF16 on CPUs that have it): that is what a
        # user of the runtime gets, and the gates judge its accuracy like any other variant's.
        with openable_by_name(path) as openable:  # read and compiled while the link lasts
            self._compiled = core.compile_model(core.read_model(str(openable)), "CPU",
                                                {"INFERENCE_NUM_THREADS": threads, "PERFORMANCE_HINT": "LATENCY"})
        self._request = self._compiled.create_infer_request()
        self._inputs = [Port(p.get_any_name(), _dims(p)) for p in self._compiled.inputs]
        self._ports = {p.get_any_name(): p for p in self._compiled.outputs}  # looked up once, not per run
        self._outputs = [Port(name, _dims(p)) for name, p in self._ports.items()]

    def get_inputs(self) -> list[Port]:
        return self._inputs

    def get_outputs(self) -> list[Port]:
        return self._outputs

    def run(self, output_names: Sequence[str] | None, feed: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        # share_outputs=False (the default, spelt out): copies, so a result survives the next run
        results = self._request.infer(dict(feed), share_outputs=False)
        return [results[self._ports[name]] for name in (output_names or self._ports)]


def _dims(port) -> list:
    return [d.get_length() if d.is_static else None for d in port.get_partial_shape()]


def parse_runtimes(text: str) -> tuple[str, ...]:
    """'openvino' -> ('onnxruntime', 'openvino'): known runtime names, each one importable here, onnxruntime
    first always (FP32 on onnxruntime is every comparison's reference)."""
    names = tuple(dict.fromkeys(n.strip().lower() for n in text.split(",") if n.strip()))
    unknown = [n for n in names if n not in RUNTIMES]
    if unknown or not names:
        raise ConfigError(f"runtime(s) {', '.join(unknown) or '(none)'} unknown: choose from {', '.join(RUNTIMES)}")
    for name in names:
        require(name)
    return tuple(dict.fromkeys((ONNXRUNTIME, *names)))


def require(runtime: str) -> None:
    """A ConfigError with the pip command when `runtime`'s package is not installed."""
    if runtime == OPENVINO:
        try:
            import openvino  # noqa: F401
        except ImportError as exc:
            raise ConfigError("runtime openvino: the openvino package is not installed: "
                              "pip install 'quantlab-yolo[openvino]'") from exc


def runtime_version(runtime: str) -> str:
    if runtime == OPENVINO:
        import openvino

        return openvino.__version__.split("-")[0]  # 2026.4.1-22982-<hash>-releases/...: the release
    import onnxruntime

    return onnxruntime.__version__


def open_session(path: str | Path, runtime: str = ONNXRUNTIME, threads: int = 1,
                 providers: Sequence[str] = ("CPUExecutionProvider",)):
    """A session on `runtime` for the model at `path` (onnxruntime with `providers`, OpenVINO on CPU)."""
    if runtime == ONNXRUNTIME:
        return make_session(path, threads, providers)
    require(runtime)
    try:
        return OpenVinoSession(Path(path), threads)
    except Exception as exc:  # OpenVINO raises RuntimeError or its own exception types
        raise ModelError(f"{path}: OpenVINO cannot load it: {first_line(exc)}") from exc
