"""The exports users make for serving stacks: Ultralytics' `dynamic=True` for every task and the
end-to-end head, at opsets 12, 13, 17 and 20, with onnxslim on and off (tests/data/models/dynamic, made by
`tools/make_test_models.py --set dynamic` with the weights of a committed static export, its twin).
Each must read, quantize and score like its twin: the same description, its decode kept in float, the
same mAP (within 0.002), in `run` and in the suite."""

import dataclasses
import json
from pathlib import Path

import pytest

from quantlab.sessions import make_session
from quantlab.cli import main
from quantlab.datasets import load_dataset
from quantlab.demo.shapes import write_dataset
from quantlab.evaluate import evaluate_models, labelled_samples
from quantlab.onnxmodel import inspect_model, load_model
from quantlab.quantize import quantize_model
from quantlab.recipes import resolve_recipe

pytest_plugins = ["pytester"]

MODELS = Path(__file__).parent / "data" / "models"
DYNAMIC = MODELS / "dynamic"
INPUT_HW = (96, 160)
OPSETS = (12, 13, 17, 20)
TWINS = {"yolov8.onnx": "detect", "yolov8-seg.onnx": "segment", "yolov8-pose.onnx": "pose",
         "yolov8-obb.onnx": "obb", "yolo26.e2e.onnx": "detect"}  # the static twin: the task its labels are for
EXPORTS = {f"{Path(twin).stem}.dynamic.opset{opset}{slim}.onnx": twin
           for twin in TWINS for opset in OPSETS for slim in ("", ".slim")}
MAP_TOLERANCE = 0.002
AUTO = dataclasses.replace(resolve_recipe("auto"), num_calib=16)
# Quantized in the slow run: the form ONNX's shape inference could not follow (opset 12, not slimmed), and
# the common one (opset 17, slimmed), for every twin
QUANTIZED = [name for name in EXPORTS if ".opset12.onnx" in name or ".opset17.slim" in name]


def test_every_export_of_the_grid_is_committed():
    assert sorted(p.name for p in DYNAMIC.glob("*.onnx")) == sorted(EXPORTS)


@pytest.mark.parametrize("name", EXPORTS)
def test_a_dynamic_export_is_described_as_its_static_twin(name):
    """Was: refused ("the first output is not a YOLO detection output ...; outputs seen: output0 (?, ?, ?)")."""
    info = inspect_model(DYNAMIC / name)
    assert info.input_shape[0] is None and info.input_hw is None  # dynamic batch, height and width
    assert info.description == inspect_model(MODELS / EXPORTS[name]).description


@pytest.fixture(scope="module")
def task_data(tmp_path_factory):
    """The demo's 60-image val split labelled for each task."""
    folder = tmp_path_factory.mktemp("tasks")
    return {task: write_dataset(folder / task, splits=("val",), sizes={"val": 60}, task=task)
            for task in dict.fromkeys(TWINS.values())}


def _map(path: Path, data_yaml: Path) -> float:
    info = inspect_model(path)
    dataset = load_dataset(data_yaml)
    result = evaluate_models({"model": make_session(path)}, labelled_samples(dataset, info.description), INPUT_HW,
                             info.class_names, info.description)["model"]
    return result.map.map50_95


@pytest.fixture(scope="module")
def twin_maps(task_data):
    return {twin: _map(MODELS / twin, task_data[task]) for twin, task in TWINS.items()}


@pytest.mark.slow
@pytest.mark.parametrize("name", EXPORTS)
def test_a_dynamic_export_scores_its_twins_map(name, task_data, twin_maps):
    twin = EXPORTS[name]
    assert twin_maps[twin] > 0.05  # briefly trained, but it finds the shapes: a mAP to compare
    assert _map(DYNAMIC / name, task_data[TWINS[twin]]) == pytest.approx(twin_maps[twin], abs=MAP_TOLERANCE)


@pytest.fixture(scope="module")
def quantized(tmp_path_factory, calib_images):
    """Every twin and the QUANTIZED exports with auto; forced, so a failed self-check is still a model to look at."""
    out = tmp_path_factory.mktemp("dynamic-int8")
    paths = {twin: MODELS / twin for twin in TWINS} | {name: DYNAMIC / name for name in QUANTIZED}
    return {name: quantize_model(path, out / name, AUTO, calib_images, input_hw=INPUT_HW, force=True)
            for name, path in paths.items()}


def _float_ops(path: Path, kept: tuple[str, ...]) -> list[str]:
    """The op types kept in float that compute values (the decode), not shapes."""
    shape_ops = {"Shape", "Gather", "Unsqueeze", "Squeeze", "Concat", "Cast", "Range", "Expand", "ConstantOfShape",
                 "Constant", "Reshape", "Slice", "Equal", "Where", "Flatten", "Transpose", "Split"}
    kept = set(kept)
    return sorted(n.op_type for n in load_model(path).graph.node if n.name in kept and n.op_type not in shape_ops)


@pytest.mark.slow
@pytest.mark.parametrize("name", QUANTIZED)
def test_a_dynamic_export_quantizes_with_its_decode_in_float_and_scores_its_twins_int8_map(
        name, quantized, task_data):
    """Was: with onnxslim, "head was not found, so it was quantized" (score cosine 0.88)."""
    twin, result = EXPORTS[name], quantized[name]
    assert result.self_check.passed and result.self_check.held_out, result.self_check.summary()
    decode = {"Conv", "Sigmoid", "Softmax", "Cos", "Sin", "TopK"}  # one of each the twin keeps in float
    twin_ops = _float_ops(MODELS / twin, quantized[twin].float_nodes)
    ops = _float_ops(DYNAMIC / name, result.float_nodes)
    assert [op for op in ops if op in decode] == [op for op in twin_ops if op in decode]
    data = task_data[TWINS[twin]]
    assert _map(result.output_path, data) == pytest.approx(_map(quantized[twin].output_path, data),
                                                           abs=MAP_TOLERANCE)


SERVED = DYNAMIC / "yolov8.dynamic.opset12.onnx"  # the form ONNX's shape inference cannot follow
LOOSE_BUDGETS = {"max_size_ratio": "2", "min_speedup": "0.1", "max_map_drop": "0.05"}  # a tiny, briefly trained model


@pytest.mark.slow
def test_run_takes_a_dynamic_export(tmp_path, calib_images, task_data):
    out = tmp_path / "out"
    code = main(["run", "--model", str(SERVED), "--data", str(task_data["detect"]), "--calib",
                 str(calib_images[0].parent), "--num-calib", "16", "--runs", "5", "--no-contrast", "--out", str(out),
                 "--quiet", *[a for k, v in LOOSE_BUDGETS.items() for a in (f"--{k.replace('_', '-')}", v)]])
    report = json.loads((out / "report.json").read_text())
    variants = {v["name"]: v for v in report["variants"]}
    assert code == 0, [v["failures"] for v in variants.values()]
    assert variants["auto"]["self_check"]["passed"] and variants["fp32"]["map50_95"] > 0.05


@pytest.mark.slow
@pytest.mark.usefixtures("outside_xdist")
def test_the_suite_gates_a_dynamic_export(pytester, calib_images, task_data):
    result = pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", "--quantlab-model", str(SERVED), "--quantlab-data", str(task_data["detect"]),
        "--quantlab-calib", str(calib_images[0].parent), "--quantlab-num-calib", "16",
        *[a for k, v in LOOSE_BUDGETS.items() for a in (f"--quantlab-{k.replace('_', '-')}", v)], timeout=900)
    outcomes = result.parseoutcomes()
    assert result.ret == pytest.ExitCode.OK and outcomes.get("passed", 0) > 0, result.stdout.str()[-3000:]
