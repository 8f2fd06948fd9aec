"""What an execution provider does to a model, in words: the host copies onnxruntime adds where a provider has
no kernel for an op (why INT8 QDQ is slow on CUDA), and whether TensorRT can run here, with which options.

The functions return sentences and numbers; the report, the CLI and the suite decide where to show them.
"""

from __future__ import annotations

import contextlib
import io
import os
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path

import onnx
import onnxruntime as ort
from onnx import TensorProto, helper

from quantlab.atomicio import temp_folder
from quantlab.choice import Choice
from quantlab.devices import CPU_PROVIDER, CUDA_PROVIDER, TENSORRT_PROVIDER
from quantlab.sessions import DEFAULT_PROVIDERS, inference_session, make_session

# The copy nodes onnxruntime's MemcpyTransformer inserts between a device provider's nodes and the CPU's
MEMCPY_OPS = frozenset({"MemcpyFromHost", "MemcpyToHost"})


@contextlib.contextmanager
def optimized_graph(path: str | Path, providers: Sequence[str] = DEFAULT_PROVIDERS,
                    threads: int = 1) -> Iterator[Path]:
    """The graph onnxruntime optimised and placed for `providers` (Memcpy nodes included), saved in a temp
    folder that is removed on exit. A provider that compiles subgraphs (TensorRT) cannot save one: onnxruntime
    refuses, a ModelError. A fallen-back first provider is a ConfigError, as for every session."""
    with temp_folder("quantlab-optimized-") as folder:
        saved = folder / "optimized.onnx"
        make_session(path, threads, providers, optimized_model=saved)
        yield saved


def _nodes(graph: onnx.GraphProto) -> Iterator[onnx.NodeProto]:
    """Every node of `graph` and of the subgraphs its nodes hold (If, Loop, Scan bodies)."""
    for node in graph.node:
        yield node
        for attribute in node.attribute:
            if attribute.HasField("g"):
                yield from _nodes(attribute.g)
            for subgraph in attribute.graphs:
                yield from _nodes(subgraph)


def count_memcpy(model: onnx.ModelProto) -> int:
    """MemcpyFromHost and MemcpyToHost nodes in `model`, in any domain and any subgraph."""
    return sum(node.op_type in MEMCPY_OPS for node in _nodes(model.graph))


def memcpy_nodes(path: str | Path, providers: Sequence[str] = DEFAULT_PROVIDERS, threads: int = 1) -> int:
    """The Memcpy nodes onnxruntime adds to the model at `path` for `providers` (0 on CPU alone)."""
    with optimized_graph(path, providers, threads) as saved:
        return count_memcpy(onnx.load(str(saved)))


def explain_slow_int8(provider: str, memcpy_count: int) -> str | None:
    """Why an INT8 model is slow on `provider`, in one sentence for the report; None on CPU or without copies."""
    if provider == CPU_PROVIDER or memcpy_count == 0:
        return None
    device = provider.removesuffix("ExecutionProvider")
    return (f"INT8 on {provider}: {memcpy_count} Memcpy nodes in the optimised graph: onnxruntime runs the "
            f"QLinear/QDQ ops it has no {device} kernel for on the CPU and copies tensors back and forth; "
            f"use fp16 (auto) on {device}")


class TensorrtPrecision(Choice):
    """The precision TensorRT builds its engine in."""

    FP16 = "fp16"
    INT8 = "int8"


def tensorrt_options(engine_cache: Path | None, precision: str | TensorrtPrecision) -> dict[str, str]:
    """TensorrtExecutionProvider's options: its engine cache in `engine_cache` (inside the output folder, so a
    second run reuses the engine; None: no cache) and one precision flag. The Python binding reads booleans as
    'True'/'False'. INT8 needs no calibration table: TensorRT takes the scales from the QDQ model's explicit
    Q/DQ nodes."""
    precision = TensorrtPrecision.from_value(precision)
    cache = {"trt_engine_cache_enable": "True", "trt_engine_cache_path": os.path.abspath(engine_cache)} \
        if engine_cache is not None else {"trt_engine_cache_enable": "False"}
    return {**cache, "trt_fp16_enable": str(precision is TensorrtPrecision.FP16),
            "trt_int8_enable": str(precision is TensorrtPrecision.INT8)}


def tensorrt_precision(model: onnx.ModelProto) -> TensorrtPrecision:
    """INT8 for a QDQ model (TensorRT reads its Q/DQ scales), FP16 for a float one (FP32 or FP16 weights)."""
    quantized = any(node.op_type in ("QuantizeLinear", "DequantizeLinear") for node in _nodes(model.graph))
    return TensorrtPrecision.INT8 if quantized else TensorrtPrecision.FP16


def tensorrt_session(path: str | Path, threads: int = 1, engine_cache: Path | None = None):
    """A session on TensorRT for the model at `path`, in the precision its graph calls for (tensorrt_precision);
    the subgraphs TensorRT does not take run on CUDA, then CPU. A fallen-back first provider is a
    ConfigError."""
    precision = tensorrt_precision(onnx.load(str(path), load_external_data=False))
    providers = [p for p in (TENSORRT_PROVIDER, CUDA_PROVIDER, CPU_PROVIDER)
                 if p == TENSORRT_PROVIDER or p in ort.get_available_providers()]
    options = [tensorrt_options(engine_cache, precision) if p == TENSORRT_PROVIDER else {} for p in providers]
    return make_session(path, threads, providers, provider_options=options)


def _probe_model() -> bytes:
    """y = Identity(x), x a float32 (1,) tensor: the smallest model a provider can be asked to take."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "probe", [x], [y])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()


def tensorrt_unavailable(providers_available: Sequence[str] | None = None) -> str | None:
    """Why a TensorRT variant cannot run here, in one sentence; None when a session on TensorRT opens on it.

    providers_available: what onnxruntime lists (None: ort.get_available_providers()). Listed is not enough:
    a wheel lists TensorRT without its libraries, and onnxruntime then runs the session on another provider.
    """
    available = ort.get_available_providers() if providers_available is None else providers_available
    version = f"onnxruntime {ort.__version__}"
    if TENSORRT_PROVIDER not in available:
        return f"{version} has no {TENSORRT_PROVIDER}: install onnxruntime-gpu and TensorRT's libraries"
    # onnxruntime warns when it drops a provider it does not list, and prints an "EP Error" banner when one
    # fails to load; which provider it kept is the answer, given in words below
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        session = inference_session(_probe_model(), providers=(TENSORRT_PROVIDER,))
    fallen_to = session.get_providers()[0]
    if fallen_to != TENSORRT_PROVIDER:
        return (f"{version} lists {TENSORRT_PROVIDER}, but a session asking for it ran on {fallen_to}: "
                "TensorRT's libraries did not load (install TensorRT and put its lib folder on LD_LIBRARY_PATH)")
    return None
