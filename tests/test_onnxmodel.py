"""quantlab.onnxmodel.model_sha256: the FP32 model's hash that compare tells a changed model by."""

import shutil

import onnx

from quantlab.atomicio import sha256_file
from quantlab.onnxmodel import model_sha256


def test_the_model_hash_covers_external_weights_and_not_the_file_name(tmp_path, demo_model):
    copy = tmp_path / "renamed.onnx"
    shutil.copy(demo_model, copy)
    assert model_sha256(copy) == model_sha256(demo_model)  # a renamed copy is the same model
    external = tmp_path / "ext" / "m.onnx"
    external.parent.mkdir()
    onnx.save(onnx.load(str(demo_model)), str(external), save_as_external_data=True, location="m.onnx.data")
    before, graph_before = model_sha256(external), sha256_file(external)
    weights = bytearray((external.parent / "m.onnx.data").read_bytes())
    weights[len(weights) // 2] ^= 0xFF  # one weight changed, the .onnx file untouched
    (external.parent / "m.onnx.data").write_bytes(bytes(weights))
    assert sha256_file(external) == graph_before and model_sha256(external) != before
