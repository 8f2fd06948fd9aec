"""File and folder names whose bytes are not UTF-8 (Linux allows any byte but / and NUL): Python keeps
them as lone surrogates (PEP 383). They must work end to end, be printed as \\xNN even on a strict
UTF-8 terminal, and be written as \\xNN in JSON and Markdown (valid UTF-8)."""

from __future__ import annotations

import json
import os
import shutil
import sys

import pytest

from quantlab.cli import main
from quantlab.memory import can_measure, measure_memory

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="names of arbitrary bytes are a Linux file system's")

MODEL = os.fsdecode(b"m\xff.onnx")
FOLDER = os.fsdecode(b"out\xfe")


@pytest.fixture
def odd_model(tmp_path, demo_model):
    path = tmp_path / MODEL
    shutil.copyfile(demo_model, path)
    return path


def _check_output(out: str, err: str) -> None:
    # capsys writes strict UTF-8, as a terminal with an en_US.UTF-8 locale does: a raw surrogate would fail
    assert "\\xff" in out + err and "\udcff" not in out + err


def test_eval_of_an_undecodable_model_name_writes_its_json_into_an_undecodable_folder(tmp_path, capsys, odd_model,
                                                                                   val_subset):
    images = val_subset(tmp_path / "val", 4, labels=False) / "images"
    result = tmp_path / FOLDER / os.fsdecode(b"e\xfd.json")
    code = main(["eval", str(odd_model), "--images", str(images), "--reference", str(odd_model),
                 "--json", str(result)])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "wrote" in out and "out\\xfe/e\\xfd.json" in out
    assert json.loads(result.read_bytes().decode("utf-8", errors="strict"))["agreement"] == 1.0


def test_quantize_an_undecodable_model_name_into_an_undecodable_folder(tmp_path, capsys, odd_model):
    output = tmp_path / FOLDER / os.fsdecode(b"q\xfd.onnx")
    assert main(["quantize", str(odd_model), "--mode", "dynamic", "-o", str(output)]) == 0
    out, err = capsys.readouterr()
    assert "wrote " in out and "out\\xfe/q\\xfd.onnx" in out and "\udcfe" not in out
    assert output.is_file() and err == ""


@pytest.mark.skipif(not can_measure(), reason="session memory is measured on Unix only")
def test_session_memory_of_an_undecodable_model_name(odd_model):
    # was: the child handed onnxruntime a path it cannot encode, and `run` failed after all its work
    assert measure_memory(odd_model, (192, 320), samples=1).session_bytes > 0


@pytest.mark.slow
def test_run_with_an_undecodable_model_name_and_output_folder_writes_a_utf8_report(tmp_path, capsys, odd_model,
                                                                                    val_subset):
    images = val_subset(tmp_path / "val", 4, labels=False) / "images"
    out_dir = tmp_path / FOLDER
    code = main(["run", "--model", str(odd_model), "--images", str(images), "--out", str(out_dir), "--runs", "2",
                 "--num-calib", "4", "--no-contrast"])
    out, err = capsys.readouterr()
    assert code in (0, 1), err  # 4 images: the gates may fail, the report must be written
    _check_output(out, err)
    report = json.loads((out_dir / "report.json").read_bytes().decode("utf-8"))
    assert report["model"]["path"].endswith("m\\xff.onnx")
    # the variants' files, relative to the output folder (whose undecodable name the report needs not repeat)
    assert [v["path"] for v in report["variants"] if v["name"] != "fp32"] == ["m\\xff.auto.onnx", "m\\xff.dynamic.onnx"]
    assert "m\\\\xff.onnx" in (out_dir / "report.md").read_bytes().decode("utf-8")  # Markdown-escaped backslash
    assert (out_dir / os.fsdecode(b"m\xff.auto.onnx")).is_file()
    # and it can be run again into its own folder: the marker lists the undecodable names exactly
    assert main(["run", "--model", str(odd_model), "--images", str(images), "--out", str(out_dir), "--runs", "2",
                 "--num-calib", "4", "--no-contrast"]) in (0, 1)
