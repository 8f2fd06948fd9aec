"""One boundary for every expected failure: `quantlab: error: <file>: <cause>` and exit 2, checked
before the expensive work; exit 3 and a traceback only for a bug in quantlab."""

import subprocess
import sys

import numpy as np
import onnx
import pytest
import yaml

import quantlab.cli
from quantlab.cli import main
from quantlab.datasets import read_labels
from quantlab.errors import ExitCode


def run_quantlab(*args, **kwargs):
    return subprocess.run([sys.executable, "-m", "quantlab", *map(str, args)], capture_output=True, text=True,
                          timeout=600, **kwargs)


def _one_error_line(stderr: str) -> str:
    assert "Traceback" not in stderr
    lines = [line for line in stderr.splitlines() if line.startswith("quantlab: error:")]
    assert len(lines) == 1, stderr
    return lines[0]


def _data_yaml(tmp_path, demo_data, **changes):
    spec = {"path": str(demo_data.parent), "val": "images/val", "names": ["circle", "rectangle", "triangle", "star"]}
    path = tmp_path / "data.yaml"
    path.write_text(yaml.safe_dump({**spec, **changes}))
    return path


def _opset_99(tmp_path, demo_onnx):
    model = onnx.ModelProto()
    model.CopyFrom(demo_onnx)
    model.opset_import[0].version = 99
    onnx.save(model, str(tmp_path / "opset99.onnx"))
    return tmp_path / "opset99.onnx"


def _file(path):
    path.write_text("a file, not a folder")
    return path


@pytest.mark.parametrize(("make_args", "fragments"), [
    # -o naming an existing directory: refused before quantizing, not after
    (lambda t, m, d, o: ["quantize", m, "--calib", d.parent / "images" / "calib", "-o", t], ["is a directory"]),
    (lambda t, m, d, o: ["quantize", m, "--calib", d.parent / "images" / "calib", "-o", t / ("x" * 300 + ".onnx")],
     ["file name too long"]),
    (lambda t, m, d, o: ["eval", m, "--data", _data_yaml(t, d, val=123)], ["data.yaml", "split entry 123"]),
    (lambda t, m, d, o: ["eval", m, "--data", _data_yaml(t, d, names={"a": "circle"})], ["data.yaml", "'a'"]),
    (lambda t, m, d, o: ["eval", o(t, m), "--reference", m, "--images", d.parent / "images" / "calib"],
     ["opset99.onnx"]),
    (lambda t, m, d, o: ["bench", o(t, m)], ["opset99.onnx"]),
    (lambda t, m, d, o: ["demo-data", _file(t / "taken")], ["taken", "not a folder"]),
], ids=["output-is-a-directory", "output-name-too-long", "val-is-a-number", "names-keys-not-indices",
        "eval-opset-99", "bench-opset-99", "demo-data-into-a-file"])
def test_user_mistakes_are_one_line_and_exit_2(tmp_path, demo_model, demo_data, demo_onnx, capsys, make_args,
                                               fragments):
    args = make_args(tmp_path, demo_model, demo_data, lambda t, m: _opset_99(t, demo_onnx))
    assert main([str(a) for a in args]) == ExitCode.USAGE
    line = _one_error_line(capsys.readouterr().err)
    assert all(fragment.lower() in line.lower() for fragment in fragments), line


@pytest.mark.parametrize("args", [
    ["bench", "M", "--runs", "0"],
    ["eval", "M", "--images", "D", "--input-hw", "0", "0"],
    ["quantize", "M", "-o", "x.onnx", "--num-calib", "-1"],
    ["run", "--providers", "NoSuchExecutionProvider"],
], ids=["runs-0", "input-hw-0", "num-calib-negative", "unknown-provider"])
def test_numeric_options_are_checked_when_parsed(args, capsys):
    with pytest.raises(SystemExit) as caught:
        main(args)
    err = capsys.readouterr().err
    assert caught.value.code == 2 and len(err.strip().splitlines()) == 1  # one line, not argparse's usage block
    _one_error_line(err)


def test_a_label_file_that_is_not_utf8_names_the_file(tmp_path, demo_model, demo_data, val_subset):
    """Through a real process: the skipped-label warnings must not turn into errors here."""
    data = val_subset(tmp_path / "data", 3)
    (data / "labels" / "val_00001.txt").write_bytes(b"0 0.5 0.5 0.2 0.2 \xff\xfe\n")
    yaml_path = _data_yaml(tmp_path, demo_data, path=str(data), val="images")
    result = run_quantlab("eval", demo_model, "--data", yaml_path)
    assert result.returncode == 2, result.stderr
    assert "val_00001.txt: not UTF-8 text" in _one_error_line(result.stderr)


def test_an_evaluation_of_no_decodable_image_is_an_error(tmp_path, demo_model):
    """Was: exit 0, score cosine 1.0000, "images": 0."""
    images = tmp_path / "images"
    images.mkdir()
    for name in ("a.jpg", "b.png"):
        (images / name).write_bytes(b"not an image")
    result = run_quantlab("eval", demo_model, "--reference", demo_model, "--images", images, "--json", tmp_path / "e.json")
    assert result.returncode == 2
    assert "no image could be decoded" in _one_error_line(result.stderr)
    assert not (tmp_path / "e.json").exists()


@pytest.mark.parametrize("content", [b"\xef\xbb\xbf0 0.5 0.5 0.2 0.4\r\n1 0.25 0.25 0.1 0.1\r\n",
                                     b"0 0.5 0.5 0.2 0.4\r\n1 0.25 0.25 0.1 0.1"], ids=["bom-crlf", "crlf"])
def test_labels_with_a_bom_or_crlf_are_read(tmp_path, content):
    image = tmp_path / "images" / "a.jpg"
    (tmp_path / "labels").mkdir()
    (tmp_path / "labels" / "a.txt").write_bytes(content)
    labels = read_labels(image, (100, 200), num_classes=2)
    assert labels.class_ids.tolist() == [0, 1]
    np.testing.assert_allclose(labels.boxes[0], [80, 30, 120, 70])


def test_a_bug_in_quantlab_exits_3_with_its_traceback(monkeypatch, capsys):
    def broken(args, console):
        return {}["a bug"]

    monkeypatch.setattr(quantlab.cli, "cmd_history", broken)  # the parser is built at each main()
    assert main(["history", "anything"]) == ExitCode.INTERNAL
    err = capsys.readouterr().err
    assert "Traceback" in err and "KeyError" in err and "a bug in quantlab" in err


def test_the_readme_documents_every_exit_code():
    from quantlab.demo import DEMO_DIR

    readme = (DEMO_DIR.parent.parent / "README.md").read_text()
    for code in ExitCode:
        assert f"`{code.value}`" in readme, f"exit code {code.value} ({code.name}) is not in the README"


def _dynamic_hw(tmp_path, demo_onnx):
    model = onnx.ModelProto()
    model.CopyFrom(demo_onnx)
    dims = model.graph.input[0].type.tensor_type.shape.dim
    dims[2].dim_param, dims[3].dim_param = "h", "w"
    onnx.save(model, str(tmp_path / "dynamic-hw.onnx"))
    return tmp_path / "dynamic-hw.onnx"


def _int64_output(tmp_path, demo_onnx):
    model = onnx.ModelProto()
    model.CopyFrom(demo_onnx)
    output = model.graph.output[0]
    model.graph.node.append(onnx.helper.make_node("Cast", [output.name], ["as_int"], to=onnx.TensorProto.INT64))
    output.name, output.type.tensor_type.elem_type = "as_int", onnx.TensorProto.INT64
    onnx.save(model, str(tmp_path / "int64.onnx"))
    return tmp_path / "int64.onnx"


@pytest.mark.parametrize(("make_args", "fragments"), [
    # found by a new-user sweep: each was a traceback, a wrong cause, or a silent wrong result
    (lambda t, m, d, o: ["eval", _dynamic_hw(t, o), "--reference", m, "--images", d.parent / "images" / "calib",
                         "--input-hw", "190", "321"], ["multiples of", "32"]),
    (lambda t, m, d, o: ["eval", _int64_output(t, o), "--reference", m, "--images", d.parent / "images" / "calib"],
     ["int64.onnx", "is INT64"]),
    (lambda t, m, d, o: ["bench", t], ["is a directory, not an ONNX file"]),
    (lambda t, m, d, o: ["tune", m, "--images", d.parent / "images" / "calib", "--out", t / "o", "-o",
                         t / "o" / "tune.json"], ["tune.json", "two outputs"]),
    (lambda t, m, d, o: ["eval", m, "--data", _data_yaml(t, d, path=str(t / "unlabelled"), val="images")],
     ["images", "none of the 3 images has a usable label line"]),
], ids=["input-hw-not-a-multiple-of-32", "int64-output", "model-is-a-directory", "two-outputs-one-path",
        "data-yaml-without-labels"])
def test_sweep_findings_are_one_line_and_exit_2(tmp_path, demo_model, demo_data, demo_onnx, capsys, val_subset,
                                                make_args, fragments):
    val_subset(tmp_path / "unlabelled", 3, labels=False)  # a data.yaml there promises labels it lacks
    args = make_args(tmp_path, demo_model, demo_data, demo_onnx)
    assert main([str(a) for a in args]) == ExitCode.USAGE
    line = _one_error_line(capsys.readouterr().err)
    assert all(fragment in line for fragment in fragments), line


def test_results_print_even_with_quiet(demo_model, demo_data, capsys):
    assert main(["eval", str(demo_model), "--reference", str(demo_model), "--data", str(demo_data), "--quiet"]) == 0
    assert "map50_95: " in capsys.readouterr().out


def test_a_calibration_file_name_that_is_not_utf8_is_fine(tmp_path):
    from quantlab.calibration import sample_digest

    names = [tmp_path / "a\udcff.jpg", tmp_path / "b.jpg"]  # b"a\xff.jpg" on disk, as os.listdir gives it
    assert sample_digest(names) != sample_digest(names[::-1])
