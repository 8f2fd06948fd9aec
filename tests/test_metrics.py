"""mAP through pycocotools on cases with known answers, and output parity."""

import numpy as np
import pytest

from quantlab.detections import Detections
from quantlab.metrics import DetectionMAP, MapResult, OutputParity

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


def _yolo(boxes, probs):
    """A (1, 4+nc, N) output from (N, 4) box rows and (N, nc) class rows."""
    return np.concatenate([np.asarray(boxes, np.float64).T, np.asarray(probs, np.float64).T])[None]


ANCHORS = 8  # more anchors than channels, so the layout is unambiguous


def _padded(values):
    """values, then zeros up to ANCHORS, as one column."""
    return np.array(list(values) + [0.0] * (ANCHORS - len(values)))


def test_parity_of_signed_outputs_is_a_true_cosine():
    """dot(a, b) = 9 - 16 = -7 over norms 5 x 5: cosine -0.28 (on absolute values it would be 1.0)."""
    boxes_ref = np.zeros((ANCHORS, 4))
    boxes_ref[:, 0] = _padded([3, 4])
    boxes_out = boxes_ref.copy()
    boxes_out[:, 0] = _padded([3, -4])
    probs = np.full((ANCHORS, 1), 0.5)
    result = OutputParity().update(_yolo(boxes_out, probs), _yolo(boxes_ref, probs)).compute()
    assert result["boxes"]["cosine"] == pytest.approx(-0.28)
    assert result["boxes"]["max_abs"] == pytest.approx(8.0)
    assert result["boxes"]["mean_abs"] == pytest.approx(8.0 / (4 * ANCHORS))
    assert result["scores"] == {"cosine": pytest.approx(1.0), "max_abs": 0.0, "mean_abs": 0.0}


def test_parity_accumulates_over_images_not_averages_per_image():
    """Image 1 is opposite (1 vs -1), image 2 agrees (2 vs 2): one cosine over both is 3/5, not (-1 + 1)/2;
    the largest error, from image 1, is still the maximum after image 2."""
    probs = np.full((ANCHORS, 1), 0.5)
    agreeing = np.zeros((ANCHORS, 4))
    agreeing[0, 0] = 2
    opposite_out, opposite_ref = np.zeros((ANCHORS, 4)), np.zeros((ANCHORS, 4))
    opposite_out[0, 1], opposite_ref[0, 1] = 1, -1
    parity = OutputParity().update(_yolo(opposite_out, probs), _yolo(opposite_ref, probs))
    result = parity.update(_yolo(agreeing, probs), _yolo(agreeing, probs)).compute()
    assert result["boxes"]["cosine"] == pytest.approx(0.6)
    assert result["boxes"]["max_abs"] == 2.0 and result["boxes"]["mean_abs"] == pytest.approx(2 / (2 * 4 * ANCHORS))


@pytest.mark.parametrize(
    ("output", "reference", "cosine"),
    [
        (0.0, 0.0, 1.0),  # both all-zero: identical
        (0.0, 0.3, 0.0),  # the candidate lost every score
        (0.3, 0.0, 0.0),  # scores out of nothing
        (0.01, 0.02, 1.0),  # tiny but parallel: norms below 1 are still a cosine
    ],
    ids=["both-zero", "output-zero", "reference-zero", "tiny"],
)
def test_parity_cosine_of_zero_and_tiny_channels(output, reference, cosine):
    boxes = np.ones((ANCHORS, 4))
    result = OutputParity().update(_yolo(boxes, np.full((ANCHORS, 2), output)),
                                   _yolo(boxes, np.full((ANCHORS, 2), reference))).compute()
    assert result["scores"]["cosine"] == pytest.approx(cosine)


def test_top1_agreement_counts_anchors_the_reference_is_confident_about():
    """Confident: reference's best probability >= 0.25. Anchors 0-2 are, 3-7 are not."""
    reference = [[0.9, 0.1], [0.25, 0.1], [0.1, 0.6], [0.2, 0.1], [0.0, 0.24]] + [[0.0, 0.0]] * 3
    output = [[0.8, 0.1], [0.1, 0.3], [0.1, 0.7], [0.0, 0.9], [0.9, 0.0]] + [[0.0, 0.5]] * 3  # anchor 1 disagrees
    boxes = np.ones((ANCHORS, 4))
    result = OutputParity().update(_yolo(boxes, output), _yolo(boxes, reference)).compute()
    assert result["top1_agreement"] == pytest.approx(2 / 3)
    nothing_confident = OutputParity().update(_yolo(boxes, output), _yolo(boxes, np.full((ANCHORS, 2), 0.1)))
    assert nothing_confident.compute()["top1_agreement"] is None
    # over images: 2 of 3, then 0 of 1 confident anchors agree -> 2 of 4
    parity = OutputParity().update(_yolo(boxes, output), _yolo(boxes, reference))
    other = np.zeros((ANCHORS, 2))
    other[0] = (0.0, 0.9)
    parity.update(_yolo(boxes, other[:, ::-1]), _yolo(boxes, other))
    assert parity.compute()["top1_agreement"] == pytest.approx(2 / 4)


def test_parity_accumulates_in_float64_whatever_the_output_dtype():
    """Box pixels up to 300 in float16: their squares overflow float16 (max 65504) unless widened first."""
    boxes = np.full((ANCHORS, 4), 300.0)
    probs = np.full((ANCHORS, 1), 0.5)
    output = _yolo(boxes, probs).astype(np.float16)
    result = OutputParity().update(output, output.copy()).compute()
    assert result["boxes"]["cosine"] == pytest.approx(1.0)
