"""Ultralytics data.yaml and YOLO labels: paths, the label-path rule, malformed lines."""

from pathlib import Path

import numpy as np
import pytest
import yaml

from quantlab.datasets import LabelWarning, label_path, load_dataset, read_labels
from quantlab.errors import DatasetError, ImageError


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
    assert label_path(Path("images") / "a.jpg") == Path("labels") / "a.txt"  # also as the first part


def test_dataset_lists_val_images_and_names(tmp_path):
    data = _dataset(tmp_path, {"one": "0 0.5 0.5 0.2 0.2\n", "two": None})
    dataset = load_dataset(data)
    assert [p.name for p in dataset.images] == ["one.png", "two.png"] and dataset.names == {0: "a", 1: "b"}
    assert dataset.yaml_path == data


def test_labels_become_pixel_boxes_and_missing_files_mean_no_objects(tmp_path):
    _dataset(tmp_path, {"one": "1 0.5 0.5 0.2 0.4\n", "two": None})
    labels = read_labels(tmp_path / "images" / "val" / "one.png", (100, 200), 2)
    np.testing.assert_allclose(labels.boxes, [[80, 30, 120, 70]])
    assert labels.class_ids.tolist() == [1]
    missing = read_labels(tmp_path / "images" / "val" / "two.png", (100, 200), 2)
    assert missing.boxes.shape == (0, 4) and missing.class_ids.shape == (0,)
    assert (missing.boxes.dtype, missing.class_ids.dtype) == (np.float32, np.int64)


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        ("2 0.5 0.5 0.1 0.1", "class 2 is not one of 0..1"),
        ("0 0.5 0.5 1.5 0.1", r"coordinates outside \[0, 1\] \(labels must be normalised\)"),
        ("0 0.5 0.5", "expected 'class cx cy w h', got 3 values"),
        ("zero 0.5 0.5 0.1 0.1", "not numbers: 'zero 0.5 0.5 0.1 0.1'"),
        ("0 0.5 0.5 0 0.1", "zero-size box"),
        ("0 0.5 0.5 0.1 0", "zero-size box"),
    ],
    ids=["class-out-of-range", "not-normalised", "too-few", "not-numbers", "zero-width", "zero-height"],
)
def test_bad_label_lines_warn_with_file_and_line_and_are_skipped(tmp_path, line, problem):
    _dataset(tmp_path, {"one": f"1 0.5 0.5 0.2 0.2\n{line}\n\n0 0.5 0.5 0.2 0.2\n"})
    with pytest.warns(LabelWarning, match=rf"one.txt:2: {problem}; line skipped$"):
        labels = read_labels(tmp_path / "images" / "val" / "one.png", (100, 100), 2)
    assert labels.class_ids.tolist() == [1, 0]  # the lines before and after (past a blank one) still count


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


@pytest.mark.parametrize(
    ("line", "box", "cls"),
    [
        ("1 0.5 0.5 1 1", [0, 0, 200, 100], 1),  # the whole image: 0 and 1 are inside [0, 1]
        ("0 0 0 0.1 0.2", [-10, -10, 10, 10], 0),  # a centre on the corner is still a valid label
        ("1.0 0.25 0.75 0.5 0.5", [0, 50, 100, 100], 1),  # a class written as a float
        ("0 0.1 0.2 0.5 0.2 0.5 0.6 0.1 0.6", [20, 20, 100, 60], 0),  # a 4-point polygon: its bounding box
    ],
    ids=["full-image", "corner", "float-class", "polygon-4"],
)
def test_valid_label_lines_at_the_edges(tmp_path, line, box, cls):
    _dataset(tmp_path, {"one": f"{line}\n\n"})  # a trailing blank line is no label
    labels = read_labels(tmp_path / "images" / "val" / "one.png", (100, 200), 2)
    np.testing.assert_allclose(labels.boxes, [box], atol=1e-4)
    assert labels.class_ids.tolist() == [cls] and labels.boxes.dtype == np.float32


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        ("-1 0.5 0.5 0.1 0.1", "class -1 is not one of 0..1"),
        ("0.5 0.5 0.5 0.1 0.1", "class 0.5 is not one of 0..1"),
        ("0 -0.01 0.5 0.1 0.1", "outside"),
        ("0 0.5 0.5 0.1 0.1 0.2", "got 6 values"),  # a polygon needs pairs
    ],
    ids=["negative-class", "fractional-class", "negative-coordinate", "odd-polygon"],
)
def test_more_bad_label_lines(tmp_path, line, problem):
    _dataset(tmp_path, {"one": f"{line}\n"})
    with pytest.warns(LabelWarning, match=rf"one.txt:1: .*{problem}"):
        labels = read_labels(tmp_path / "images" / "val" / "one.png", (100, 100), 2)
    assert len(labels.boxes) == 0


def test_relative_path_is_relative_to_the_yaml_not_the_working_directory(tmp_path, monkeypatch):
    root = tmp_path / "data"
    (root / "imgs" / "val").mkdir(parents=True)
    (root / "imgs" / "val" / "x.jpg").write_bytes(b"")
    (tmp_path / "cfg").mkdir()
    (tmp_path / "cfg" / "data.yaml").write_text(yaml.safe_dump({"path": "../data", "val": "imgs/val", "names": ["a"]}))
    monkeypatch.chdir(tmp_path)  # anywhere but the yaml's folder
    dataset = load_dataset(tmp_path / "cfg" / "data.yaml")
    assert [p.resolve() for p in dataset.images] == [(root / "imgs" / "val" / "x.jpg").resolve()]


def test_absolute_path_lists_and_txt_splits(tmp_path):
    for sub in ("a", "b"):
        (tmp_path / sub).mkdir()
        (tmp_path / sub / f"{sub}.png").write_bytes(b"")
    (tmp_path / "b" / "nested").mkdir()
    (tmp_path / "b" / "nested" / "c.png").write_bytes(b"")
    (tmp_path / "list.txt").write_text("b/b.png\n\n" + str(tmp_path / "a" / "a.png") + "\nnotes.md\n")
    spec = {"path": str(tmp_path), "val": ["b", str(tmp_path / "a")], "test": "list.txt", "names": {0: "x", "1": "y"}}
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "data.yaml").write_text(yaml.safe_dump(spec))
    val = load_dataset(tmp_path / "elsewhere" / "data.yaml")
    # folders are searched recursively, as Ultralytics does; an absolute entry is taken as it is
    assert val.images == (tmp_path / "a" / "a.png", tmp_path / "b" / "b.png", tmp_path / "b" / "nested" / "c.png")
    assert val.names == {0: "x", 1: "y"}
    test = load_dataset(tmp_path / "elsewhere" / "data.yaml", split="test")
    # relative lines from `path`, absolute ones as they are; lines that are not images are dropped
    assert test.images == (tmp_path / "a" / "a.png", tmp_path / "b" / "b.png")


@pytest.mark.parametrize(
    ("spec", "error", "message"),
    [
        ({"val": "images", "names": "a b"}, DatasetError, "data.yaml: 'names' must be a non-empty list or a mapping"),
        ({"val": "notes.md", "names": ["a"]}, DatasetError, "split entry 'notes.md' is neither an image folder"),
        ({"val": "list.txt", "names": ["a"]}, DatasetError, "the 'val' split has no images"),
        ({"val": "empty", "names": ["a"]}, ImageError, r"empty: no images .* only 1 other files \(\.txt\)"),
    ],
    ids=["bad-names", "a-file-not-a-list", "empty-list", "empty-folder"],
)
def test_unusable_splits_and_names(tmp_path, spec, error, message):
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "x.png").write_bytes(b"")
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("x")
    (tmp_path / "list.txt").write_text("notes.md\n")
    (tmp_path / "notes.md").write_text("images/x.png\n")
    (tmp_path / "data.yaml").write_text(yaml.safe_dump(spec))
    with pytest.raises(error, match=message):
        load_dataset(tmp_path / "data.yaml")


def test_label_path_outside_an_images_folder_is_beside_the_image(tmp_path):
    assert label_path(tmp_path / "pics" / "a.JPG") == tmp_path / "pics" / "a.txt"
