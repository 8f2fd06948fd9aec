"""The public API as a notebook uses it: `import quantlab` and its public names only, on the demo model."""

import importlib
import json
import pkgutil
import pydoc
import subprocess
import sys

import pytest

import quantlab

HEAVY_MODULES = ("onnxruntime", "onnx", "numpy", "cv2")


def test_import_quantlab_imports_no_heavy_module():
    # the pytest plugin imports quantlab in every run of every repository where it is installed
    code = f"import quantlab, sys; print([m for m in {HEAVY_MODULES!r} if m in sys.modules])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_every_public_name_is_the_api_object_whatever_was_imported_before():
    # a public function named like a module would become the module once the module is imported
    for module in pkgutil.walk_packages(quantlab.__path__, "quantlab."):
        if module.name not in ("quantlab.__main__", "quantlab.pytest_plugin") and "suite" not in module.name:
            importlib.import_module(module.name)
    for name in quantlab.__all__:
        value = getattr(quantlab, name)
        assert not isinstance(value, type(quantlab)), f"quantlab.{name} is a module"
    assert callable(quantlab.quantize_model) and callable(quantlab.evaluate_model) and callable(quantlab.compare_runs)
    assert issubclass(quantlab.SelfCheckError, quantlab.QuantlabError)
    assert issubclass(quantlab.ModelError, quantlab.InputError)


def test_help_lists_the_public_api():
    text = pydoc.render_doc(quantlab, renderer=pydoc.plaintext)
    for name in ("quantize_model(", "evaluate_model(", "benchmark(", "run(", "compare_runs(", "demo_data(",
                 "class Recipe", "class QuantlabError"):
        assert name in text
    assert set(dir(quantlab)) == set(quantlab.__all__)


def test_an_unknown_name_is_an_attribute_error():
    with pytest.raises(AttributeError, match="no attribute 'quantise'"):
        quantlab.quantise  # noqa: B018


def test_evaluating_without_data_names_the_model_and_the_fix():
    with pytest.raises(quantlab.InputError, match="model.onnx: give data="):
        quantlab.evaluate_model("model.onnx")


@pytest.fixture(scope="module")
def notebook(tmp_path_factory):
    """A notebook's first cells: the demo data, and the demo model quantized with the auto recipe."""
    folder = tmp_path_factory.mktemp("notebook")
    data_yaml = quantlab.demo_data(folder / "demo")
    int8 = quantlab.quantize_model(quantlab.DEMO_MODEL, folder / "int8.onnx", "auto",
                                   calib=data_yaml.parent / "images" / "calib", num_calib=32)
    return folder, data_yaml, int8


@pytest.mark.slow
def test_quantize_model_writes_a_smaller_self_checked_model(notebook):
    folder, _, int8 = notebook
    assert int8.output_path == folder / "int8.onnx"
    assert int8.output_path.stat().st_size < 0.35 * quantlab.DEMO_MODEL.stat().st_size
    assert int8.size_ratio < 0.35 and int8.num_calib == 32
    assert int8.self_check.passed
    assert isinstance(int8.recipe, quantlab.Recipe) and int8.float_nodes  # the head's decode stays float


@pytest.mark.slow
def test_evaluate_model_scores_the_int8_model_as_the_fp32_one(notebook):
    _, data_yaml, int8 = notebook
    fp32 = quantlab.evaluate_model(quantlab.DEMO_MODEL, data=data_yaml)
    result = quantlab.evaluate_model(int8.output_path, data=data_yaml, reference=quantlab.DEMO_MODEL)
    assert result.images == fp32.images == 200
    assert fp32.map.map50_95 > 0.5
    assert abs(result.map.map50_95 - fp32.map.map50_95) < 0.02
    assert result.agreement > 0.9
    unlabelled = quantlab.evaluate_model(int8.output_path, images=data_yaml.parent / "images" / "val",
                                         reference=quantlab.DEMO_MODEL)
    assert unlabelled.map is None and unlabelled.agreement == pytest.approx(result.agreement, abs=0.02)


@pytest.mark.slow
def test_benchmark_times_every_model(notebook):
    _, _, int8 = notebook
    latencies = quantlab.benchmark([quantlab.DEMO_MODEL, int8.output_path], runs=12)
    assert list(latencies) == [str(quantlab.DEMO_MODEL), str(int8.output_path)]
    for latency in latencies.values():
        assert isinstance(latency, quantlab.Latency)
        assert latency.runs >= 12 and 0 < latency.median_ms <= latency.p90_ms


@pytest.mark.slow
def test_run_writes_the_report_it_returns(tmp_path):
    report = quantlab.run(out=tmp_path / "out", contrast=("dynamic",), runs=5, num_calib=8,
                          budgets={"min_speedup": 0.1})
    variants = {v["name"]: v for v in report["variants"]}
    assert list(variants) == ["fp32", "auto", "dynamic"]
    assert variants["auto"]["role"] == "gated" and variants["fp32"]["role"] == "reference"
    assert variants["auto"]["size_ratio"] < 0.35 and variants["auto"]["failures"] == []
    assert report["budgets"]["min_speedup"] == 0.1
    saved = json.loads((tmp_path / "out" / "report.json").read_text())
    assert saved["variants"] == json.loads(json.dumps(report["variants"]))
    with pytest.raises(quantlab.ConfigError, match="no-such-recipe"):
        quantlab.run(out=tmp_path / "other", recipes=("no-such-recipe",))
