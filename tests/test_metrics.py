"""mAP through pycocotools on cases with known answers."""

import numpy as np
import pytest

from quantlab.detections import Detections
from quantlab.metrics import DetectionMAP, MapResult

NAMES = {0: "a", 1: "b"}


def _dets(boxes, scores, classes):
    return Detections(np.asarray(boxes, np.float32).reshape(-1, 4), np.asarray(scores, np.float32),
                      np.asarray(classes, np.int64))


def _shifted(box, iou):
    """The same-size box shifted right so that its IoU with `box` is `iou`."""
    x1, y1, x2, y2 = box
    w = x2 - x1
    shift = w * (1 - iou) / (1 + iou)
    return [x1 + shift, y1, x2 + shift, y2]


def test_perfect_detections_score_one():
    truth = np.array([[10, 10, 50, 50], [60, 60, 90, 100]], np.float32)
    result = DetectionMAP(NAMES).update(_dets(truth, [0.9, 0.8], [0, 1]), truth, [0, 1]).compute()
    assert result.map50 == pytest.approx(1.0) and result.map50_95 == pytest.approx(1.0)
    assert result.per_class == {"a": pytest.approx(1.0), "b": pytest.approx(1.0)}


def test_iou_0_62_counts_at_three_of_ten_thresholds():
    truth = [10, 10, 110, 110]
    result = DetectionMAP(NAMES).update(_dets([_shifted(truth, 0.62)], [0.9], [0]), np.array([truth]), [0]).compute()
    assert result.map50 == pytest.approx(1.0)
    assert result.map50_95 == pytest.approx(0.3)  # matched at IoU 0.50, 0.55 and 0.60 only


def test_half_the_objects_found_gives_half_the_ap():
    truth = np.array([[10, 10, 50, 50], [60, 60, 100, 100]], np.float32)
    result = DetectionMAP({0: "a"}).update(_dets(truth[:1], [0.9], [0]), truth, [0, 0]).compute()
    assert result.map50 == pytest.approx(0.5, abs=0.01)


def test_a_wrong_class_is_a_miss_and_no_predictions_score_zero(capsys):
    truth = np.array([[10, 10, 50, 50]], np.float32)
    assert DetectionMAP(NAMES).update(_dets(truth, [0.9], [1]), truth, [0]).compute().map50 == 0.0
    assert DetectionMAP(NAMES).update(Detections.empty(), truth, [0]).compute() == MapResult(
        0.0, 0.0, {"a": 0.0, "b": 0.0}, 1)
    assert capsys.readouterr().out == ""  # pycocotools' progress printing is silenced


def test_iou_0_52_counts_at_0_50_only():
    """map50 is the AP at IoU 0.50 exactly: the first of the ten thresholds, not the second (0.55)."""
    truth = [10, 10, 110, 110]
    result = DetectionMAP(NAMES).update(_dets([_shifted(truth, 0.52)], [0.9], [0]), np.array([truth]), [0]).compute()
    assert result.map50 == pytest.approx(1.0) and result.map50_95 == pytest.approx(0.1)


def test_detections_count_only_in_their_own_image():
    """The object of image 1 found in image 2 (same place) is a miss in image 1 and a false positive in 2."""
    box = np.array([[10, 10, 50, 50]], np.float32)
    result = (DetectionMAP(NAMES).update(Detections.empty(), box, [0])
              .update(_dets(box, [0.9], [0]), np.zeros((0, 4)), []).compute())
    assert result.map50 == 0.0 and result.images == 2


def test_more_than_100_detections_per_image_all_count():
    """maxDets 300 as Ultralytics: 150 found objects in one image are all matched (COCO's 100 gives 0.66)."""
    grid = np.array([[x * 20, y * 20, x * 20 + 15, y * 20 + 15] for y in range(10) for x in range(15)], np.float32)
    scores = np.linspace(0.9, 0.5, len(grid))
    result = DetectionMAP({0: "a"}).update(_dets(grid, scores, [0] * len(grid)), grid, [0] * len(grid)).compute()
    assert result.map50 == pytest.approx(1.0) and result.map50_95 == pytest.approx(1.0)


def test_classes_without_targets_are_left_out_of_the_mean():
    truth = np.array([[10, 10, 50, 50]], np.float32)
    predicted = _dets([[10, 10, 50, 50], [60, 60, 90, 90]], [0.9, 0.8], [0, 1])  # a stray class-1 box
    result = DetectionMAP(NAMES).update(predicted, truth, [0]).update(Detections.empty(), truth, [0]).compute()
    assert result.per_class == {"a": pytest.approx(0.5, abs=0.01)}  # one of the two class-0 objects found
    assert result.map50 == pytest.approx(0.5, abs=0.01) and result.images == 2


def test_map_without_targets_is_refused():
    with pytest.raises(ValueError, match="^mAP is undefined without any target box$"):
        DetectionMAP(NAMES).update(_dets([[0, 0, 5, 5]], [0.9], [0]), np.zeros((0, 4)), []).compute()
