"""The quantlab command end to end, as a user runs it: real processes, real files, exit codes."""

import copy
import json
import shutil
import subprocess
import sys

import jsonschema
import onnx
import pytest

from quantlab.report import SCHEMA_PATH


def quantlab(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "quantlab", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, timeout=600)


def _one_line_error(result, *fragments):
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("quantlab: error:")]
    assert len(lines) == 1, result.stderr
    for fragment in fragments:
        assert fragment in lines[0]


@pytest.mark.slow
def test_run_with_no_arguments_reports_on_the_demo(tmp_path):
    result = quantlab("run", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    out = tmp_path / "quantlab-out"
    # nothing else in the working directory: no staging, only the (empty) lock one writer at a time leaves
    assert sorted(p.name for p in tmp_path.iterdir()) == [".quantlab-out.quantlab-lock", "quantlab-out"]
    report = json.loads((out / "report.json").read_text())
    schema = json.loads(SCHEMA_PATH.read_text())
    jsonschema.validate(report, schema)
    for drop in (lambda r: r.pop("fastest_accurate"), lambda r: r["machine"].pop("runtimes"),
                 lambda r: r["variants"][0].pop("runtime"), lambda r: r["machine"].pop("peak"),
                 lambda r: r["variants"][1].pop("peak_share")):  # read by render_markdown without a default
        broken = copy.deepcopy(report)
        drop(broken)
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(broken, schema)
    names = [v["name"] for v in report["variants"]]
    assert names == ["fp32", "auto", "ort-default", "dynamic"]
    evaluation = report["evaluation"]
    assert evaluation["images_per_s"] == pytest.approx(evaluation["images"] / evaluation["seconds"])
    assert "| Model | Runtime | Size MB | Latency ms | FPS | GMAC/s | Peak % | Size change | Speed change |" in result.stdout
    assert {v["runtime"] for v in report["variants"]} == {"onnxruntime"}
    assert f"Fastest accurate variant: **{report['fastest_accurate']['name']}**" in result.stdout
    assert (out / "report.md").read_text().startswith("# quantlab report")
    by_name = {v["name"]: v for v in report["variants"]}
    assert by_name["auto"]["gated"] and not by_name["auto"]["failures"]
    for v in report["variants"][1:]:  # the verdict says what was measured, whichever way it went
        assert ("faster" if v["speedup"] >= 1 else "slower") in v["verdict"]
    assert by_name["ort-default"]["map_drop"] > 0.3 and "head was quantized" in by_name["ort-default"]["verdict"]
    # the same MACs for every variant, so a faster one works the hardware harder
    assert report["model"]["macs"] == 437_319_360 and "0.44 GMAC an image" in result.stdout
    assert by_name["auto"]["gmac_per_s"] / by_name["fp32"]["gmac_per_s"] == pytest.approx(by_name["auto"]["speedup"])
    # each a share of this CPU's GEMM peak at its own precision (INT8 for every build here)
    peak = report["machine"]["peak"]
    assert peak["threads"] == report["machine"]["threads"]
    assert by_name["fp32"]["peak_share"] == pytest.approx(by_name["fp32"]["gmac_per_s"] / peak["fp32_gmac_per_s"])
    for name in names[1:]:
        assert by_name[name]["peak_share"] == pytest.approx(by_name[name]["gmac_per_s"] / peak["int8_gmac_per_s"])
    assert all(path.exists() for path in [out / f"yolov8n_shapes_pruned.{n}.onnx" for n in names[1:]])


@pytest.mark.slow
def test_run_on_another_model_and_data_in_awkward_paths(tmp_path, demo_model, demo_data):
    model = tmp_path / "모델 폴더 with spaces" / "my model.onnx"
    model.parent.mkdir()
    shutil.copyfile(demo_model, model)
    result = quantlab("run", "--model", model, "--data", demo_data, "--calib", demo_data.parent / "images" / "calib",
                      "--no-contrast", "--runs", 20, "--out", tmp_path / "결과", "--quiet")
    assert result.returncode == 0, result.stderr
    report = json.loads((tmp_path / "결과" / "report.json").read_text())
    assert [v["name"] for v in report["variants"]] == ["fp32", "auto", "dynamic"]
    assert report["evaluation"]["labelled"] and report["variants"][1]["map_drop"] is not None


@pytest.mark.slow
def test_run_counts_external_data_in_the_fp32_size(tmp_path, demo_onnx, demo_data):
    """A model saved with its weights beside it: its size is the .onnx and the weights file together, so the
    INT8 size ratio is the one quantize and the suite report (not INT8 over the weightless graph alone)."""
    model = onnx.ModelProto()
    model.CopyFrom(demo_onnx)  # saving with external data rewrites the model in place: never the shared one
    path = tmp_path / "ext" / "m.onnx"
    path.parent.mkdir()
    onnx.save(model, str(path), save_as_external_data=True, location="m.onnx.data")
    result = quantlab("run", "--model", path, "--images", demo_data.parent / "images" / "calib", "--no-contrast",
                      "--runs", 5, "--num-calib", 8, "--out", tmp_path / "out", "--quiet")
    assert result.returncode in (0, 1), result.stderr  # 1: a gate failed, which the assertions below show
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    by_name = {v["name"]: v for v in report["variants"]}
    whole = path.stat().st_size + (path.parent / "m.onnx.data").stat().st_size
    assert by_name["fp32"]["size_bytes"] == whole and path.stat().st_size < whole / 10
    assert by_name["auto"]["size_ratio"] == by_name["auto"]["size_bytes"] / whole < 0.35
    assert not any("size_ratio" in f for f in by_name["auto"]["failures"]), result.stdout
    assert by_name["auto"]["path"] == "m.auto.onnx"  # relative to the output folder, which holds it


def test_quantize_prints_what_it_did(tmp_path, demo_model, demo_data):
    out = tmp_path / "int8.onnx"
    result = quantlab("quantize", demo_model, "--calib", demo_data.parent / "images" / "calib", "--num-calib", 8,
                      "-o", out)
    assert result.returncode == 0, result.stderr
    assert "recipe auto" in result.stdout and "kept in float (24 nodes)" in result.stdout
    assert "calibrated on 8 of 48 images" in result.stdout and out.is_file()


def test_quantize_dynamic_needs_no_calibration(tmp_path, demo_model):
    result = quantlab("quantize", demo_model, "--mode", "dynamic", "-o", tmp_path / "dyn.onnx")
    assert result.returncode == 0, result.stderr
    assert "recipe dynamic" in result.stdout


@pytest.mark.parametrize(
    ("make_args", "fragments"),
    [
        (lambda t, m, c: ["quantize", t / "absent.onnx", "--calib", c, "-o", t / "o.onnx"], ["absent.onnx", "not found"]),
        (lambda t, m, c: ["quantize", _text(t / "fake.onnx"), "--calib", c, "-o", t / "o.onnx"], ["fake.onnx", "ONNX"]),
        (lambda t, m, c: ["quantize", m, "--calib", _empty(t / "empty"), "-o", t / "o.onnx"], ["empty", "no images"]),
        (lambda t, m, c: ["quantize", m, "--calib", c, "-o", _text(t / "file") / "o.onnx"], ["is a file, not a folder"]),
        (lambda t, m, c: ["run", "--model", m, "--images", c, "--out", _text(t / "file") / "out"], ["is a file, not a folder"]),
        (lambda t, m, c: ["run", "--model", t / "absent.onnx", "--images", c, "--out", t / "o"], ["absent.onnx"]),
        (lambda t, m, c: ["run", "--model", m, "--images", _empty(t / "none"), "--out", t / "o"], ["none", "no images"]),
        (lambda t, m, c: ["eval", m, "--images", c], ["--reference"]),
        (lambda t, m, c: ["quantize", m, "-o", t / "o.onnx"], ["needs --calib"]),
        (lambda t, m, c: ["demo-data", t / "d", "--splits", "val,test"], ["unknown split(s) test"]),
        (lambda t, m, c: ["run", "--model", m, "--images", c, "--recipes", "fastest", "--out", t / "o"],
         ["'fastest' is unknown"]),
        (lambda t, m, c: ["run", "--model", m, "--images", c, "--runtimes", "tflite", "--out", t / "o"],
         ["--runtimes", "tflite unknown"]),
        (lambda t, m, c: ["run", "--model", m, "--images", c, "--runtimes", "tensorrt", "--out", t / "o"],
         ["--runtimes", "runtime tensorrt: onnxruntime", "has no TensorrtExecutionProvider"]),
    ],
    ids=["missing-model", "not-onnx", "empty-calib", "unwritable-output", "run-unwritable-out", "run-missing-model",
         "run-empty-images", "eval-unlabelled-without-reference", "quantize-without-calib", "unknown-split",
         "unknown-recipe", "unknown-runtime", "tensorrt-unavailable"],
)
def test_bad_input_is_one_line_and_exit_2(tmp_path, demo_model, demo_data, make_args, fragments):
    calib = demo_data.parent / "images" / "calib"
    result = quantlab(*make_args(tmp_path, demo_model, calib))
    _one_line_error(result, *fragments)
    assert not (tmp_path / "o.onnx").exists()


def _text(path):
    path.write_text("not a model")
    return path


def _empty(path):
    path.mkdir()
    return path


def test_debug_shows_the_traceback(tmp_path, demo_model):
    result = quantlab("quantize", tmp_path / "absent.onnx", "--calib", tmp_path, "-o", tmp_path / "o.onnx", "--debug")
    assert result.returncode == 2 and "Traceback" in result.stderr


def test_eval_against_a_reference_writes_json(tmp_path, demo_model, demo_data):
    result = quantlab("eval", demo_model, "--reference", demo_model, "--data", demo_data, "--json", tmp_path / "e.json")
    assert result.returncode == 0, result.stderr
    metrics = json.loads((tmp_path / "e.json").read_text())
    assert metrics["agreement"] == 1.0 and metrics["parity"]["output0"]["scores"]["cosine"] == pytest.approx(1.0)
    assert set(metrics["per_class"]) == {"circle", "rectangle", "triangle", "star"}


def test_bench_times_models_interleaved(tmp_path, demo_model):
    result = quantlab("bench", demo_model, demo_model, "--runs", 5, "--warmup", 1, "--json", tmp_path / "b.json")
    assert result.returncode == 0, result.stderr
    timings = json.loads((tmp_path / "b.json").read_text())
    assert timings["runs"] == 5 and all(m["runs"] == 5 and m["p99"] >= m["median"] for m in timings["models"].values())


def test_bench_device_times_through_io_binding_and_throughput_where_the_batch_is_dynamic(tmp_path, demo_model):
    dynamic = "tests/data/models/dynamic/yolov8.dynamic.opset17.onnx"
    result = quantlab("bench", demo_model, dynamic, "--runs", 3, "--warmup", 1, "--device", "--batches", "1,2",
                      "--json", tmp_path / "b.json")
    assert result.returncode == 0, result.stderr
    device = json.loads((tmp_path / "b.json").read_text())["device"]
    fixed, batched = device[str(demo_model)], device[dynamic]
    assert fixed["device"] == "cpu" and fixed["cuda_graph"] is None and fixed["model_only_ms"]["runs"] == 3
    assert fixed["throughput"] == [] and "batch axis fixed at 1" in fixed["throughput_reason"]
    assert [t["batch"] for t in batched["throughput"]] == [1, 2] and batched["throughput_reason"] is None
    assert [t["output_shape"][0] for t in batched["throughput"]] == [1, 2]
    assert "batch axis fixed at 1" in result.stdout and "batch 2:" in result.stdout


def test_bench_refuses_a_batch_below_one_in_one_line(demo_model):
    _one_line_error(quantlab("bench", demo_model, "--device", "--batches", "1,0"), "--batches", "below the minimum 1")
    _one_line_error(quantlab("bench", demo_model, "--device", "--batches", "1,100000"), "--batches",
                    "a batch above 1024")


def test_demo_data_writes_the_dataset(tmp_path):
    result = quantlab("demo-data", tmp_path / "d", "--splits", "val")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith("data.yaml")
    assert len(list((tmp_path / "d" / "images" / "val").iterdir())) == 200


def test_every_command_has_help():
    for command in ["run", "quantize", "eval", "bench", "tune", "compare", "history", "export", "demo-data"]:
        result = quantlab(command, "--help")
        assert result.returncode == 0 and "usage: quantlab" in result.stdout


@pytest.mark.slow  # quantizes and evaluates the demo several times (tests/test_tune.py pins tune fast)
def test_tune_within_budget_at_once_writes_its_report(tmp_path, demo_model, demo_data):
    result = quantlab("tune", demo_model, "--data", demo_data, "--calib", demo_data.parent / "images" / "calib",
                      "--num-calib", 16, "--max-map-drop", 0.5, "--out", tmp_path)
    assert result.returncode == 0, result.stderr
    report = json.loads((tmp_path / "tune.json").read_text())
    assert report["met"] and report["chosen_step"] == 0 and len(report["steps"]) == 1
    assert (tmp_path / "yolov8n_shapes_pruned.tuned.onnx").is_file()
    assert "| Step | Back to float |" in (tmp_path / "tune.md").read_text()


@pytest.mark.slow  # quantizes and evaluates the demo several times (tests/test_tune.py pins tune fast)
def test_tune_that_cannot_meet_its_budget_keeps_the_closest_and_exits_1(tmp_path, demo_model, demo_data):
    result = quantlab("tune", demo_model, "--data", demo_data, "--calib", demo_data.parent / "images" / "calib",
                      "--num-calib", 16, "--max-map-drop", 0, "--max-steps", 1, "--out", tmp_path)
    assert result.returncode == 1, result.stderr
    assert "no configuration met the accuracy budget" in result.stderr
    report = json.loads((tmp_path / "tune.json").read_text())
    assert not report["met"] and len(report["steps"]) == 2 and len(report["sensitivity"]) > 50
    assert (tmp_path / "yolov8n_shapes_pruned.tuned.onnx").is_file()
