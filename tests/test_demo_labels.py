"""The demo's task labels: detect as it always was; segment, pose and obb agree with the drawn shapes."""

import hashlib
import warnings

import cv2
import numpy as np
import pytest
import yaml

from quantlab.cli import main
from quantlab.datasets import read_labels
from quantlab.demo import DemoTask
from quantlab.demo.labels import KPT_SHAPE, label_lines, obb_corners
from quantlab.demo.shapes import ShapeObject, render_image, write_dataset
from quantlab.errors import ConfigError, ExitCode

IMAGES = 40  # val images written per task: enough for occluded, border-cut and hidden keypoints
TASKS = [t.value for t in DemoTask]

# Recorded from the generator before tasks existed (commit acc41a0): labels/val/val_00000..00019.txt
# concatenated, and data.yaml. Labels are text from numpy's seeded streams, so they do not depend on
# the OpenCV or libjpeg build (the JPEG bytes could, and are compared between tasks instead).
DETECT_LABELS_SHA256 = "e33fa34ead1d5f531534638cb4be9c5d5e49af2306a405843b47cd1ee76dbd65"
DETECT_YAML_SHA256 = "679e39ee67d02a0742c4eddf973a2f4e2748420bbf2fbf1a82378c3d79bdb759"


@pytest.fixture(scope="session")
def task_data(tmp_path_factory):
    """{task: data.yaml} for the first IMAGES val images, one dataset per task."""
    return {task: write_dataset(tmp_path_factory.mktemp(task), splits=("val",), sizes={"val": IMAGES}, task=task)
            for task in TASKS}


def _rows(data_yaml, index):
    """The label file of val image `index` as one float64 array per line."""
    text = (data_yaml.parent / "labels" / "val" / f"val_{index:05d}.txt").read_text()
    return [np.array(line.split(), np.float64) for line in text.splitlines()]


def _scenes():
    """(index, image (H, W), objects) for every written val image, rendered again."""
    for index in range(IMAGES):
        image, objects = render_image(0, "val", index)
        yield index, image.shape[:2], objects


def _pixels(values, hw):
    """(K, 2) pixel points of normalised `x y x y ...` values."""
    return values.reshape(-1, 2) * (hw[1], hw[0])


def _occluded(objects, index):
    """Whether an object drawn after objects[index] reaches its box (its stroke included)."""
    a = objects[index].box
    return any(a[0] - b.stroke_px < b.box[2] and b.box[0] - b.stroke_px < a[2] and
               a[1] - b.stroke_px < b.box[3] and b.box[1] - b.stroke_px < a[3] for b in objects[index + 1:])


def _inside_image(obj, hw):
    outline = np.asarray(obj.outline)
    return outline.min() >= 0 and outline[:, 0].max() <= hw[1] and outline[:, 1].max() <= hw[0]


def test_detect_writes_what_it_wrote_before_tasks(tmp_path):
    for task in (None, "detect", DemoTask.DETECT):  # the default, the name, the enum
        kwargs = {} if task is None else {"task": task}
        data_yaml = write_dataset(tmp_path / str(task), splits=("val",), sizes={"val": 20}, **kwargs)
        labels = b"".join((data_yaml.parent / "labels" / "val" / f"val_{i:05d}.txt").read_bytes() for i in range(20))
        assert hashlib.sha256(labels).hexdigest() == DETECT_LABELS_SHA256, task
        assert hashlib.sha256(data_yaml.read_bytes()).hexdigest() == DETECT_YAML_SHA256, task


def test_the_images_are_the_same_for_every_task(task_data):
    digests = {task: [hashlib.sha256(p.read_bytes()).hexdigest()
                      for p in sorted((data_yaml.parent / "images" / "val").iterdir())]
               for task, data_yaml in task_data.items()}
    assert len(digests["detect"]) == IMAGES
    assert all(d == digests["detect"] for d in digests.values())


@pytest.mark.parametrize(("task", "extra"), [
    ("detect", {}),
    ("segment", {}),
    ("pose", {"kpt_shape": [4, 3], "flip_idx": [0, 3, 2, 1]}),  # rightmost <-> leftmost under a flip
    ("obb", {}),
], ids=TASKS)
def test_data_yaml_is_detects_plus_the_tasks_keys(task_data, task, extra):
    detect = yaml.safe_load(task_data["detect"].read_text())
    spec = yaml.safe_load(task_data[task].read_text())
    assert spec == {**detect, **extra}


@pytest.mark.parametrize(("task", "is_valid_length"), [
    ("detect", lambda n: n == 5),
    ("segment", lambda n: n >= 7 and n % 2 == 1),  # class and at least 3 points
    ("pose", lambda n: n == 5 + 4 * 3),  # class, box, 4 keypoints of x y v
    ("obb", lambda n: n == 9),  # class and 4 corners
], ids=TASKS)
def test_label_lines_have_the_task_format(task_data, task, is_valid_length):
    """Every line reads back through quantlab's own label reader without a warning (values in [0, 1],
    visibility 0, 1 or 2), one object per drawn shape, in the detect labels' order and classes."""
    objects_read = 0
    for index, hw, _ in _scenes():
        detect_classes = [int(row[0]) for row in _rows(task_data["detect"], index)]
        assert all(is_valid_length(len(row)) for row in _rows(task_data[task], index)), index
        image = task_data[task].parent / "images" / "val" / f"val_{index:05d}.jpg"
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # a LabelWarning: a line the reader would skip
            labels = read_labels(image, hw, 4, task, KPT_SHAPE if task == "pose" else None)
        assert labels.class_ids.tolist() == detect_classes, index
        objects_read += len(detect_classes)
    assert objects_read > 100


def test_segment_polygon_bounds_are_the_detect_box(task_data):
    """Exact (1 px) for an object seen whole; inside the box for one occluded or cut by the border."""
    whole = 0
    for index, hw, objects in _scenes():
        for k, (obj, row) in enumerate(zip(objects, _rows(task_data["segment"], index))):
            points = _pixels(row[1:], hw)
            bounds = np.concatenate([points.min(axis=0), points.max(axis=0)])
            box = np.asarray(obj.box)
            assert np.all(bounds[:2] >= box[:2] - 1) and np.all(bounds[2:] <= box[2:] + 1), (index, k)
            if not _occluded(objects, k) and _inside_image(obj, hw):
                assert np.abs(bounds - box).max() <= 1.0, (index, k, bounds, box)
                whole += 1
    assert whole > 80


def _drawn_mask(points, hw, stroke_px=0):
    """(H, W) uint8: 1 inside the polygon (or on its stroke), rasterised as the shapes are drawn."""
    mask = np.zeros(hw, np.uint8)
    poly = [np.round(np.asarray(points) * 16).astype(np.int32)]
    if stroke_px:
        cv2.polylines(mask, poly, True, 1, stroke_px, cv2.LINE_8, shift=4)
    else:
        cv2.fillPoly(mask, poly, 1, cv2.LINE_8, shift=4)
    return mask


def test_segment_polygon_is_the_visible_region(task_data):
    """IoU > 0.9 with the region drawn at image resolution: the outline minus what later objects drew.

    Occlusion is mild in the demo (MAX_OVERLAP), so IoU alone would pass a mask that ignores it: the
    hidden pixels must also stay out of the masks, all but those along the occluders' edges.
    """
    hidden_px = hidden_in_label_px = 0
    for index, hw, objects in _scenes():
        for k, (obj, row) in enumerate(zip(objects, _rows(task_data["segment"], index))):
            region = _drawn_mask(obj.outline, hw)
            hidden = np.zeros_like(region)
            for later in objects[k + 1:]:
                hidden |= region & _drawn_mask(later.outline, hw, later.stroke_px)
            region &= 1 - hidden
            label = _drawn_mask(_pixels(row[1:], hw), hw)
            iou = (region & label).sum() / (region | label).sum()
            assert iou > 0.9, (index, k, iou)
            hidden_px += int(hidden.sum())
            hidden_in_label_px += int((hidden & label).sum())
    assert hidden_px > 1000 and hidden_in_label_px < 0.2 * hidden_px, (hidden_in_label_px, hidden_px)


def test_obb_holds_the_polygon(task_data):
    clipped = 0
    for index, hw, objects in _scenes():
        segment_rows, obb_rows = _rows(task_data["segment"], index), _rows(task_data["obb"], index)
        for k, obj in enumerate(objects):
            polygon = _pixels(segment_rows[k][1:], hw)
            corners = obb_corners(objects, k)  # pixels, before clipping to the image
            assert np.allclose(obb_rows[k][1:], np.clip(corners / (hw[1], hw[0]), 0, 1).reshape(-1), atol=1e-6)
            # a rectangle tilted against the border loses a corner to the clip: check it before the clip
            was_clipped = not np.all((obb_rows[k][1:] > 0) & (obb_rows[k][1:] < 1))
            quad = (corners if was_clipped else _pixels(obb_rows[k][1:], hw)).astype(np.float32)
            clipped += was_clipped
            for x, y in polygon:
                assert cv2.pointPolygonTest(quad.reshape(-1, 1, 2), (float(x), float(y)), True) >= -1.0, (index, k)
            if obj.class_id == 1 and not _occluded(objects, k) and _inside_image(obj, hw):
                # a rectangle's min-area box is the rectangle itself (each side within 0.5 px), not its
                # axis-aligned bounds
                outline = np.float32(obj.outline)
                assert abs(cv2.contourArea(quad) - cv2.contourArea(outline)) <= 0.5 * cv2.arcLength(outline, True)
    assert clipped > 0


def test_keypoints_are_the_outline_extremes(task_data):
    visibility = {0: 0, 1: 0, 2: 0}
    for index, hw, objects in _scenes():
        for k, (obj, row) in enumerate(zip(objects, _rows(task_data["pose"], index))):
            cx, cy, w, h = row[1:5] * (hw[1], hw[0], hw[1], hw[0])
            box = np.array([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2])
            assert np.allclose(box, obj.box, atol=0.01)
            outline = np.asarray(obj.outline)
            extremes = [outline[:, 1].min(), outline[:, 0].max(), outline[:, 1].max(), outline[:, 0].min()]
            for kpt, (x, y, v), extreme in zip(range(4), row[5:].reshape(4, 3), extremes):
                assert v in (0, 1, 2), (index, k)
                visibility[int(v)] += 1
                if v == 0:
                    assert x == y == 0, (index, k)
                    continue
                x, y = x * hw[1], y * hw[0]
                assert box[0] - 0.05 <= x <= box[2] + 0.05 and box[1] - 0.05 <= y <= box[3] + 0.05, (index, k)
                assert (y, x, y, x)[kpt] == pytest.approx(extreme, abs=0.05), (index, k, kpt)
    assert all(count > 0 for count in visibility.values()), visibility


def _square(x1, y1, x2, y2, stroke_px=0, hw=(100, 100)):
    outline = ((x1, y1), (x2, y1), (x2, y2), (x1, y2))
    box = (max(0.0, x1), max(0.0, y1), min(hw[1], x2), min(hw[0], y2))
    return ShapeObject(1, box, outline, stroke_px)


@pytest.mark.parametrize(("objects", "segment_box", "obb_box", "visibility"), [
    # a later filled square covers the right part: the mask stops where it starts; right and bottom hidden
    ([_square(20, 20, 60, 60), _square(40, 10, 80, 70)], (20, 20, 40, 60), (20, 20, 40, 60), (2, 1, 1, 2)),
    # cut by the left border: clipped to the image; the left keypoint is outside, so 0 0 0
    ([_square(-20, 30, 40, 70)], (0, 30, 40, 70), (0, 30, 40, 70), (0, 2, 2, 0)),
    # a later outlined square: only its stroke hides; it splits the region, the larger part is kept,
    # the OBB spans both parts, and the inside of the outline shows through
    ([_square(10, 10, 90, 50), _square(40, 0, 95, 60, stroke_px=4)], (42, 10, 90, 50), (10, 10, 90, 50),
     (2, 2, 2, 2)),
    # hidden whole by a later square (MAX_OVERLAP prevents it in the dataset): the outline still labels it
    ([_square(40, 40, 50, 50), _square(30, 30, 60, 60)], (40, 40, 50, 50), (40, 40, 50, 50), (1, 1, 1, 1)),
], ids=["occluded", "cut-by-border", "split-by-a-stroke", "hidden-whole"])
def test_hand_built_scenes(objects, segment_box, obb_box, visibility):
    hw = (100, 100)

    def bounds(values):
        points = _pixels(np.array(values.split()[1:], np.float64), hw)
        return np.concatenate([points.min(axis=0), points.max(axis=0)])

    assert np.allclose(bounds(label_lines(DemoTask.SEGMENT, objects, *hw)[0]), segment_box, atol=0.5)
    assert np.allclose(bounds(label_lines(DemoTask.OBB, objects, *hw)[0]), obb_box, atol=0.5)
    pose = np.array(label_lines(DemoTask.POSE, objects, *hw)[0].split()[5:], np.float64).reshape(4, 3)
    assert tuple(pose[:, 2].astype(int)) == visibility


def test_an_unknown_task_names_the_choices(tmp_path):
    with pytest.raises(ConfigError, match="'depth' is not valid: choose one of detect, segment, pose, obb"):
        write_dataset(tmp_path / "d", splits=("val",), sizes={"val": 1}, task="depth")
    assert not (tmp_path / "d").exists()


def test_demo_data_task_flag(tmp_path, capsys):
    out = tmp_path / "d"
    assert main(["demo-data", str(out), "--splits", "val", "--task", "pose", "--quiet"]) == ExitCode.OK
    assert yaml.safe_load((out / "data.yaml").read_text())["kpt_shape"] == [4, 3]
    assert len(_rows(out / "data.yaml", 0)[0]) == 17
    with pytest.raises(SystemExit) as exit_info:
        main(["demo-data", str(tmp_path / "e"), "--task", "depth"])
    assert exit_info.value.code == ExitCode.USAGE and "invalid choice: 'depth'" in capsys.readouterr().err
