"""Ultralytics data.yaml and YOLO labels: paths, the label-path rule, malformed lines."""

import numpy as np
import pytest
import yaml

from quantlab.datasets import LabelWarning, label_path, load_dataset, read_labels
from quantlab.errors import DatasetError


def _dataset(tmp_path, labels: dict[str, str], names=("a", "b")):
    for stem, text in labels.items():
        (tmp_path / "images" / "val").mkdir(parents=True, exist_ok=True)
        (tmp_path / "labels" / "val").mkdir(parents=True, exist_ok=True)
        (tmp_path / "images" / "val" / f"{stem}.png").write_bytes(b"")
        if text is not None:
            (tmp_path / "labels" / "val" / f"{stem}.txt").write_text(text)
    (tmp_path / "data.yaml").write_text(yaml.safe_dump({"path": ".", "val": "images/val", "names": list(names)}))
    return tmp_path / "data.yaml"


def test_label_path_replaces_the_last_images_folder(tmp_path):
    assert label_path(tmp_path / "images" / "x" / "images" / "a.jpg") == tmp_path / "images" / "x" / "labels" / "a.txt"


def test_dataset_lists_val_images_and_names(tmp_path):
    data = _dataset(tmp_path, {"one": "0 0.5 0.5 0.2 0.2\n", "two": None})
    dataset = load_dataset(data)
    assert [p.name for p in dataset.images] == ["one.png", "two.png"] and dataset.names == {0: "a", 1: "b"}


def test_labels_become_pixel_boxes_and_missing_files_mean_no_objects(tmp_path):
    _dataset(tmp_path, {"one": "1 0.5 0.5 0.2 0.4\n", "two": None})
    labels = read_labels(tmp_path / "images" / "val" / "one.png", (100, 200), 2)
    np.testing.assert_allclose(labels.boxes, [[80, 30, 120, 70]])
    assert labels.class_ids.tolist() == [1]
    assert len(read_labels(tmp_path / "images" / "val" / "two.png", (100, 200), 2).boxes) == 0


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        ("2 0.5 0.5 0.1 0.1", "class 2 is not one of 0..1"),
        ("0 0.5 0.5 1.5 0.1", "outside"),
        ("0 0.5 0.5", "expected 'class cx cy w h'"),
        ("zero 0.5 0.5 0.1 0.1", "not numbers"),
        ("0 0.5 0.5 0 0.1", "zero-size"),
    ],
    ids=["class-out-of-range", "not-normalised", "too-few", "not-numbers", "zero-size"],
)
def test_bad_label_lines_warn_with_file_and_line_and_are_skipped(tmp_path, line, problem):
    _dataset(tmp_path, {"one": f"0 0.5 0.5 0.2 0.2\n{line}\n"})
    with pytest.warns(LabelWarning, match=rf"one.txt:2: .*{problem}"):
        labels = read_labels(tmp_path / "images" / "val" / "one.png", (100, 100), 2)
    assert len(labels.boxes) == 1


def test_polygon_lines_become_their_bounding_box(tmp_path):
    _dataset(tmp_path, {"one": "0 0.1 0.2 0.5 0.2 0.5 0.6\n"})
    labels = read_labels(tmp_path / "images" / "val" / "one.png", (100, 100), 2)
    np.testing.assert_allclose(labels.boxes, [[10, 20, 50, 60]], atol=1e-4)


@pytest.mark.parametrize(
    ("content", "message"),
    [(None, "not found"), ("train: x\n", "no 'val' entry"), ("val: [\n", "not valid YAML"),
     ("val: missing_folder\nnames: [a]\n", "neither an image folder")],
    ids=["missing", "no-val", "bad-yaml", "missing-split-folder"],
)
def test_unusable_data_yaml_names_the_file(tmp_path, content, message):
    path = tmp_path / "data.yaml"
    if content is not None:
        path.write_text(content)
    with pytest.raises(DatasetError, match=message) as info:
        load_dataset(path)
    assert str(path) in str(info.value)
