"""Ultralytics data.yaml and YOLO labels: paths, the label-path rule, malformed lines."""

from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

from quantlab.datasets import LabelWarning, label_path, load_dataset, read_labels
from quantlab.errors import ConfigError, DatasetError, ImageError


def _dataset(tmp_path, labels: dict[str, str], names=("a", "b"), **spec):
    for stem, text in labels.items():
        (tmp_path / "images" / "val").mkdir(parents=True, exist_ok=True)
        (tmp_path / "labels" / "val").mkdir(parents=True, exist_ok=True)
        (tmp_path / "images" / "val" / f"{stem}.png").write_bytes(b"")
        if text is not None:
            (tmp_path / "labels" / "val" / f"{stem}.txt").write_text(text)
    spec = {"path": ".", "val": "images/val", "names": list(names), **spec}
    (tmp_path / "data.yaml").write_text(yaml.safe_dump(spec))
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
        ("zero 0.5 0.5 0.1 0.1", "field 1 is not a number: 'zero'"),  # the field, never the line
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


# --- the task formats: segment polygons, pose keypoints, obb corners ---------------------------------------------

IMAGE = ("images", "val", "one.png")


def _read(tmp_path, text, task, kpt_shape=None, image_hw=(100, 200)):
    """The labels of one image (100 high, 200 wide unless given) whose label file holds `text`."""
    _dataset(tmp_path, {"one": text})
    return read_labels(tmp_path.joinpath(*IMAGE), image_hw, 2, task=task, kpt_shape=kpt_shape)


def test_a_segment_polygon_becomes_its_mask_and_bounds(tmp_path):
    """A rectangle x 20..100, y 20..60 px: fillPoly fills its edges too, 81 x 41 pixels."""
    labels = _read(tmp_path, "1 0.1 0.2 0.5 0.2 0.5 0.6 0.1 0.6\n", "segment")
    np.testing.assert_allclose(labels.boxes, [[20, 20, 100, 60]], atol=1e-4)
    assert labels.masks.shape == (1, 100, 200) and labels.masks.dtype == bool
    assert labels.masks[0, 20:61, 20:101].all() and labels.masks.sum() == 81 * 41
    assert labels.class_ids.tolist() == [1] and labels.keypoints is None and labels.rboxes is None


def test_a_segment_triangle_fills_only_its_half(tmp_path):
    labels = _read(tmp_path, "0 0 0 1 0 0 1\n", "segment", image_hw=(50, 50))  # the upper-left half
    y, x = np.mgrid[:50, :50]
    np.testing.assert_array_equal(labels.masks[0], x + y <= 50)  # fillPoly fills the edge too


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        ("0 0.5 0.5 0.2 0.2", "a box, but a segment label needs a polygon 'class x1 y1 ... xn yn' to make its mask"),
        ("0 0.1 0.1 0.5 0.1 0.5", "expected a polygon 'class x1 y1 ... xn yn' of 3 or more points, got 6 values"),
        # an odd coordinate count
        ("0 0.1 0.1 0.5 0.1 0.5 0.5 0.1", "expected a polygon 'class x1 y1 ... xn yn' of 3 or more points, got 8 values"),
        ("0 0.1 0.1 0.5 0.1 1.5 0.5", r"coordinates outside \[0, 1\] \(labels must be normalised\)"),
        ("0 0.1 0.1 0.5 0.1 0.3 0.1", "zero-size box"),  # three points on one horizontal line
    ],
    ids=["a-box", "two-points", "odd-coordinates", "not-normalised", "flat"],
)
def test_bad_segment_lines_warn_and_are_skipped(tmp_path, line, problem):
    with pytest.warns(LabelWarning, match=rf"one.txt:2: {problem}; line skipped$"):
        labels = _read(tmp_path, f"0 0.1 0.1 0.5 0.1 0.5 0.5\n{line}\n", "segment")
    assert len(labels.boxes) == len(labels.masks) == 1


@pytest.mark.parametrize(
    ("keypoint_values", "kpt_shape", "keypoints"),
    [
        # x y v: visible, occluded, absent (v 0), and 0 0 is absent whatever its v says
        ("0.4 0.45 2 0.5 0.5 1 0.3 0.3 0 0 0 2", (4, 3), [[80, 45, 2], [100, 50, 1], [60, 30, 0], [0, 0, 0]]),
        # x y: present ones are visible, 0 0 is absent
        ("0.4 0.45 0 0 0.5 0.5 0 0.3", (4, 2), [[80, 45, 2], [0, 0, 0], [100, 50, 2], [0, 30, 2]]),
    ],
    ids=["xyv", "xy"],
)
def test_pose_lines_become_box_and_keypoints(tmp_path, keypoint_values, kpt_shape, keypoints):
    labels = _read(tmp_path, f"1 0.5 0.5 0.2 0.4 {keypoint_values}\n", "pose", kpt_shape)
    np.testing.assert_allclose(labels.boxes, [[80, 30, 120, 70]])
    np.testing.assert_allclose(labels.keypoints, [keypoints], atol=1e-4)
    assert labels.keypoints.dtype == np.float32 and labels.masks is None and labels.rboxes is None


@pytest.mark.parametrize(
    ("keypoint_values", "problem"),
    [
        ("0.4 0.45 2 0.5 0.5 1", r"expected 5 \+ 3x3 = 14 values for kpt_shape \[3, 3\], got 11"),
        ("0.4 0.45 2 0.5 0.5 1 0.3 0.3 2 0.1 0.1 2", "expected 5 \\+ 3x3 = 14 values for kpt_shape \\[3, 3\\], got 17"),
        ("0.4 0.45 2 0.5 0.5 3 0.3 0.3 0.5", r"keypoint visibility must be 0, 1 or 2, got \[0.5, 3.0\]"),
        ("0.4 1.45 2 0.5 0.5 1 0.3 0.3 0", r"coordinates outside \[0, 1\] \(labels must be normalised\)"),
    ],
    ids=["too-few-keypoints", "too-many-keypoints", "bad-visibility", "keypoint-not-normalised"],
)
def test_bad_pose_lines_warn_and_are_skipped(tmp_path, keypoint_values, problem):
    with pytest.warns(LabelWarning, match=rf"one.txt:1: {problem}; line skipped$"):
        labels = _read(tmp_path, f"0 0.5 0.5 0.2 0.2 {keypoint_values}\n", "pose", (3, 3))
    assert labels.boxes.shape == (0, 4) and labels.keypoints.shape == (0, 3, 3)


def test_a_detect_line_in_a_pose_dataset_says_how_many_values_the_kpt_shape_needs(tmp_path):
    with pytest.warns(LabelWarning, match=r"one.txt:1: expected 5 \+ 17x3 = 56 values for kpt_shape \[17, 3\], got 5"):
        _read(tmp_path, "0 0.5 0.5 0.2 0.2\n", "pose", (17, 3))


def _corners(cx, cy, w, h, radians):
    """Ultralytics' xywhr -> 4 corners (its xywhr2xyxyxyxy): the w side points along (cos, sin)."""
    along = np.array([np.cos(radians), np.sin(radians)]) * w / 2
    across = np.array([-np.sin(radians), np.cos(radians)]) * h / 2
    centre = np.array([cx, cy])
    return np.array([centre + along + across, centre + along - across, centre - along - across,
                     centre - along + across])


def _same_corners(first, second):
    return np.allclose(sorted(map(tuple, np.round(first, 3))), sorted(map(tuple, np.round(second, 3))), atol=1e-2)


def test_obb_corners_become_a_rotated_box_in_radians(tmp_path):
    """A 40x10 px bar turned 30 degrees: its rbox's corners, by Ultralytics' convention, are the label's."""
    corners = _corners(100, 50, 40, 10, np.deg2rad(30))
    normalised = corners / [200, 100]
    labels = _read(tmp_path, "1 " + " ".join(f"{v:.6f}" for v in normalised.ravel()) + "\n", "obb")
    cx, cy, w, h, angle = labels.rboxes[0]
    assert (cx, cy, w * h) == (pytest.approx(100, abs=1e-3), pytest.approx(50, abs=1e-3), pytest.approx(400, rel=1e-4))
    assert _same_corners(_corners(cx, cy, w, h, angle), corners)
    assert not _same_corners(_corners(cx, cy, w, h, np.deg2rad(angle)), corners)  # degrees would be wrong
    np.testing.assert_allclose(labels.boxes, [[*corners.min(axis=0), *corners.max(axis=0)]], atol=1e-3)
    assert labels.rboxes.dtype == np.float32 and labels.masks is None and labels.keypoints is None


def test_obb_rbox_agrees_with_opencv_box_points(tmp_path):
    labels = _read(tmp_path, "0 0.1 0.2 0.5 0.2 0.5 0.6 0.1 0.6\n", "obb")
    cx, cy, w, h, angle = labels.rboxes[0]
    assert _same_corners(cv2.boxPoints(((cx, cy), (w, h), np.rad2deg(angle))), [[20, 20], [100, 20], [100, 60], [20, 60]])


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        ("0 0.1 0.2 0.5 0.2 0.5 0.6", r"expected 'class x1 y1 x2 y2 x3 y3 x4 y4', got 7 values"),
        ("0 0.5 0.5 0.2 0.2", r"expected 'class x1 y1 x2 y2 x3 y3 x4 y4', got 5 values"),  # a detect box
        ("0 0.1 0.2 0.5 0.2 0.5 0.6 0.1 1.6", r"coordinates outside \[0, 1\] \(labels must be normalised\)"),
        ("0 0.1 0.1 0.2 0.2 0.3 0.3 0.4 0.4", r"zero-size box \(the corners are on one line\)"),
    ],
    ids=["three-corners", "a-box", "not-normalised", "on-one-line"],
)
def test_bad_obb_lines_warn_and_are_skipped(tmp_path, line, problem):
    with pytest.warns(LabelWarning, match=rf"one.txt:1: {problem}; line skipped$"):
        labels = _read(tmp_path, f"{line}\n", "obb")
    assert labels.rboxes.shape == (0, 5)


@pytest.mark.parametrize(
    ("task", "kpt_shape", "part", "shape", "dtype"),
    [("segment", None, "masks", (0, 100, 200), bool), ("pose", (17, 2), "keypoints", (0, 17, 3), np.float32),
     ("obb", None, "rboxes", (0, 5), np.float32)],
    ids=["segment", "pose", "obb"],
)
def test_an_image_without_labels_has_an_empty_part(tmp_path, task, kpt_shape, part, shape, dtype):
    _dataset(tmp_path, {"one": None})
    labels = read_labels(tmp_path.joinpath(*IMAGE), (100, 200), 2, task=task, kpt_shape=kpt_shape)
    assert getattr(labels, part).shape == shape and getattr(labels, part).dtype == dtype


def test_a_bom_and_crlf_pose_file_reads_like_a_plain_one(tmp_path):
    _dataset(tmp_path, {"one": ""})
    tmp_path.joinpath("labels", "val", "one.txt").write_bytes(b"\xef\xbb\xbf0 0.5 0.5 0.2 0.2 0.4 0.45 2\r\n\r\n")
    labels = read_labels(tmp_path.joinpath(*IMAGE), (100, 200), 2, task="pose", kpt_shape=(1, 3))
    np.testing.assert_allclose(labels.keypoints, [[[80, 45, 2]]])


@pytest.mark.parametrize(
    ("task", "kpt_shape", "message"),
    [("pose", None, "task 'pose' needs kpt_shape"), ("segmentation", None, "task 'segmentation' is not valid")],
    ids=["pose-without-kpt-shape", "unknown-task"],
)
def test_unusable_tasks_are_refused(tmp_path, task, kpt_shape, message):
    _dataset(tmp_path, {"one": "0 0.5 0.5 0.2 0.2\n"})
    with pytest.raises(ConfigError, match=message):
        read_labels(tmp_path.joinpath(*IMAGE), (100, 200), 2, task=task, kpt_shape=kpt_shape)


@pytest.mark.parametrize(
    ("spec", "kpt_shape"),
    [({}, None), ({"kpt_shape": [17, 3]}, (17, 3)), ({"kpt_shape": [4, 2]}, (4, 2))],
    ids=["none", "coco", "xy-only"],
)
def test_kpt_shape_comes_from_the_data_yaml(tmp_path, spec, kpt_shape):
    assert load_dataset(_dataset(tmp_path, {"one": None}, **spec)).kpt_shape == kpt_shape


@pytest.mark.parametrize(
    "value",
    [[17], [17, 4], [0, 3], [17, 1], "17,3", [17.0, 3], [True, 3], [17, 3, 1]],
    ids=["one-number", "four-values", "no-keypoints", "one-value", "a-string", "a-float", "a-bool", "three-numbers"],
)
def test_a_bad_kpt_shape_names_the_file(tmp_path, value):
    data = _dataset(tmp_path, {"one": None}, kpt_shape=value)
    with pytest.raises(DatasetError, match=r"data.yaml: 'kpt_shape' must be \[K, D\]") as info:
        load_dataset(data)
    assert str(data) in str(info.value) and repr(value) in str(info.value)


# --- the layouts users have: Ultralytics' own, Roboflow's and CVAT's exports, demo-data's -------------------------

def _images(folder: Path, *names: str, label: str | None = "0 0.5 0.5 0.2 0.2\n") -> None:
    """Empty image files `names` in `folder`, and beside them in the Ultralytics labels folder a label each."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        (folder / name).write_bytes(b"")
        if label is not None:
            label_path(folder / name).parent.mkdir(parents=True, exist_ok=True)
            label_path(folder / name).write_text(label)


def _yaml(path: Path, spec: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def test_a_data_yaml_without_path_given_relative_to_the_current_folder(tmp_path, monkeypatch):
    """Was: `--data data/shapes/data.yaml` from the repository root looked for data/shapes/data/shapes/images/val
    (the relative folder of the data.yaml joined to itself); `quantlab demo-data` writes no `path`."""
    _images(tmp_path / "data" / "shapes" / "images" / "val", "a.jpg")
    _yaml(tmp_path / "data" / "shapes" / "data.yaml", {"train": "images/train", "val": "images/val", "names": ["a"]})
    monkeypatch.chdir(tmp_path)
    dataset = load_dataset("data/shapes/data.yaml")
    assert [p.resolve() for p in dataset.images] == [(tmp_path / "data/shapes/images/val/a.jpg").resolve()]


def _roboflow(root: Path) -> Path:
    """A Roboflow "YOLOv8" export: data.yaml at the export's root beside train/ valid/ test/, each with
    images/ and labels/, and split entries written as ../<split>/images, no `path`."""
    for split in ("train", "valid", "test"):
        _images(root / split / "images", f"{split}_1.jpg", f"{split}_2.jpg")
    return _yaml(root / "data.yaml", {"train": "../train/images", "val": "../valid/images", "test": "../test/images",
                                      "nc": 2, "names": ["cat", "dog"],
                                      "roboflow": {"workspace": "w", "project": "p", "version": 1}})


@pytest.mark.parametrize("split", ["train", "val", "test"])
def test_a_roboflow_export_reads_every_split_as_ultralytics_does(tmp_path, monkeypatch, split):
    """Was refused: ../valid/images from the export's root is outside it; Ultralytics' check_det_dataset then
    tries valid/images (its `../` fallback), which holds the images."""
    data = _roboflow(tmp_path / "export")
    monkeypatch.chdir(tmp_path)  # anywhere but the export
    dataset = load_dataset(data, split=split)
    folder = {"val": "valid"}.get(split, split)
    assert [p.name for p in dataset.images] == [f"{folder}_1.jpg", f"{folder}_2.jpg"]
    assert dataset.names == {0: "cat", 1: "dog"}
    labels = read_labels(dataset.images[0], (100, 100), 2)  # valid/labels/, beside valid/images/
    assert labels.class_ids.tolist() == [0]


def test_a_roboflow_split_found_beside_the_export_is_refused_not_read(tmp_path):
    """Ultralytics reads ../valid/images first where it exists: another export unzipped beside this one
    would be evaluated instead. It is outside this dataset's root, so refused, naming both."""
    data = _roboflow(tmp_path / "export")
    _images(tmp_path / "valid" / "images", "someone_elses.jpg")
    with pytest.raises(DatasetError, match=r"split entry '../valid/images' leads outside the dataset root"):
        load_dataset(data)


@pytest.mark.parametrize(("yaml_folder", "cwd"), [("cfg", "a/b"), ("ultralytics/cfg/datasets", "work")],
                         ids=["beside-the-yaml", "from-the-current-folder"])
def test_ultralytics_coco8_layout(tmp_path, monkeypatch, yaml_folder, cwd):
    """Ultralytics' coco8.yaml: `path: ../datasets/coco8`, `train: images/train`, names as a mapping.
    Ultralytics reads a relative `path` from the current folder; quantlab from the data.yaml's folder first,
    then from the current folder: each case finds it in one of the two places only."""
    _images(tmp_path / "datasets" / "coco8" / "images" / "val", "000000000036.jpg")
    data = _yaml(tmp_path / yaml_folder / "coco8.yaml", {"path": "../datasets/coco8", "train": "images/train",
                                                         "val": "images/val", "names": {0: "person", 1: "bicycle"}})
    (tmp_path / cwd).mkdir(parents=True)
    monkeypatch.chdir(tmp_path / cwd)
    dataset = load_dataset(data)
    assert [p.name for p in dataset.images] == ["000000000036.jpg"] and dataset.names == {0: "person", 1: "bicycle"}


@pytest.mark.parametrize("line", ["images/val/{}", "./images/val/{}"], ids=["cvat-docs", "dot-slash"])
def test_a_cvat_ultralytics_export_with_txt_lists(tmp_path, monkeypatch, line):
    """CVAT's "Ultralytics YOLO Detection 1.0" export (cvat-ai/datumaro, YOLOv8DetectionConverter): data.yaml
    with `path: .`, `train: train.txt`, `val: val.txt` and names as a mapping; its lists hold
    images/<subset>/<name> (docs.cvat.ai, format-yolo-ultralytics) or ./images/<subset>/<name> (the
    converter's own test). Ultralytics reads ./ lines from the list's folder, others from the current folder;
    quantlab reads others from the dataset root, so the export works from any folder."""
    root = tmp_path / "cvat-export"
    _images(root / "images" / "val", "frame_000000.jpg", "frame_000001.jpg")
    (root / "val.txt").write_text("".join(line.format(n) + "\n" for n in ("frame_000000.jpg", "frame_000001.jpg")))
    data = _yaml(root / "data.yaml", {"path": ".", "train": "train.txt", "val": "val.txt", "names": {0: "car"}})
    monkeypatch.chdir(tmp_path)
    dataset = load_dataset(data)
    assert dataset.images == (root / "images/val/frame_000000.jpg", root / "images/val/frame_000001.jpg")
    assert read_labels(dataset.images[1], (10, 10), 1).class_ids.tolist() == [0]


def test_split_lists_the_validation_key_and_single_images(tmp_path):
    """A list of folders and image files, under Ultralytics' 'validation' key (read where 'val' is missing)."""
    _images(tmp_path / "images" / "a", "1.jpg")
    _images(tmp_path / "images" / "b", "2.png", "3.png")
    data = _yaml(tmp_path / "data.yaml", {"validation": ["images/a", "images/b/2.png"], "names": ["x"]})
    assert [p.name for p in load_dataset(data).images] == ["1.jpg", "2.png"]


@pytest.mark.parametrize(
    ("spec", "result"),
    [
        ({"nc": 3}, {0: "class_0", 1: "class_1", 2: "class_2"}),  # Ultralytics' names for `nc` alone
        ({"nc": 2, "names": ["a", "b"]}, {0: "a", 1: "b"}),
        ({"nc": 3, "names": ["a", "b"]}, r"'nc' is 3 but 'names' lists 2 classes; they must agree"),
        ({"nc": 2, "names": {0: "a", 1: "b", 2: "c"}}, r"'nc' is 2 but 'names' lists 3 classes"),
        ({"nc": "2", "names": ["a", "b"]}, r"'nc' must be a class count 1..100000, got '2'"),
        ({"nc": 0}, r"'nc' must be a class count"),
        ({"nc": 10 ** 9}, r"'nc' must be a class count"),  # would build a billion names
        ({}, r"no 'names' \(nor 'nc'\)"),
        ({"names": {0: "a", "0": "b"}}, r"keys must be the class indices 0..1, once each"),
        ({"names": {0: "a", 1.5: "b"}}, r"keys must be class indices 0..N-1, got 0, 1.5"),
    ],
    ids=["nc-alone", "nc-agrees", "nc-more", "nc-fewer", "nc-a-string", "nc-zero", "nc-a-billion", "neither",
         "an-index-twice", "a-float-index"],
)
def test_nc_and_names(tmp_path, spec, result):
    _images(tmp_path / "images", "a.jpg")
    data = _yaml(tmp_path / "data.yaml", {"val": "images", **spec})
    if isinstance(result, dict):
        assert load_dataset(data).names == result
    else:
        with pytest.raises(DatasetError, match=result) as info:
            load_dataset(data)
        assert str(data) in str(info.value)
