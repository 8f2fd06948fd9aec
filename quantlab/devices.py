"""The onnxruntime execution providers quantlab knows by name, and which of them compute on a GPU."""

from __future__ import annotations

from collections.abc import Sequence

CPU_PROVIDER = "CPUExecutionProvider"
CUDA_PROVIDER = "CUDAExecutionProvider"
TENSORRT_PROVIDER = "TensorrtExecutionProvider"
GPU_PROVIDERS = frozenset({CUDA_PROVIDER, TENSORRT_PROVIDER})


def on_gpu(providers: Sequence[str]) -> bool:
    """Whether the first provider (the one onnxruntime tries first, so the one a timing measures) is a GPU's."""
    return bool(providers) and providers[0] in GPU_PROVIDERS
