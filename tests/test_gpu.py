"""The field report never tried a GPU: where onnxruntime has CUDA, the variants must run there and agree with CPU."""

import numpy as np
import onnxruntime as ort
import pytest

from quantlab.sessions import make_session

CUDA = "CUDAExecutionProvider"

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(CUDA not in ort.get_available_providers(), reason="onnxruntime has no CUDA provider")]


def test_variants_run_on_cuda_and_agree_with_cpu(quantlab_artifacts, quantlab_variant):
    path = quantlab_artifacts.variant(quantlab_variant).path
    feed = quantlab_artifacts.feed
    gpu = make_session(path, providers=(CUDA, "CPUExecutionProvider"))
    assert gpu.get_providers()[0] == CUDA
    cpu_out = quantlab_artifacts.session(quantlab_variant).run(None, feed)[0]
    gpu_out = gpu.run(None, feed)[0]
    scores_cpu, scores_gpu = cpu_out[0, 4:], gpu_out[0, 4:]
    assert np.abs(scores_gpu - scores_cpu).max() < 0.05
