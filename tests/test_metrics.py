"""mAP through pycocotools on cases with known answers, and output parity."""

import numpy as np
import pytest

from quantlab.detections import Detections
from quantlab.metrics import DetectionMAP, OutputParity

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


def test_a_wrong_class_is_a_miss_and_no_predictions_score_zero():
    truth = np.array([[10, 10, 50, 50]], np.float32)
    assert DetectionMAP(NAMES).update(_dets(truth, [0.9], [1]), truth, [0]).compute().map50 == 0.0
    assert DetectionMAP(NAMES).update(Detections.empty(), truth, [0]).compute().map50_95 == 0.0


def test_parity_separates_box_and_score_channels():
    rng = np.random.default_rng(0)
    reference = np.concatenate([rng.uniform(0, 320, (1, 4, 100)), rng.uniform(0, 1, (1, 3, 100))], axis=1)
    same = OutputParity().update(reference, reference).compute()
    assert same["boxes"]["cosine"] == pytest.approx(1.0) and same["scores"]["max_abs"] == 0.0
    broken = reference.copy()
    broken[:, 4:] = 0  # every score rounded to zero, as with one INT8 scale over the head's Concat
    result = OutputParity().update(broken, reference).compute()
    assert result["boxes"]["cosine"] == pytest.approx(1.0)
    assert result["scores"]["cosine"] == 0.0
    whole = np.dot(broken.ravel(), reference.ravel()) / (np.linalg.norm(broken) * np.linalg.norm(reference))
    assert whole > 0.99  # one cosine over the whole output would have hidden it
