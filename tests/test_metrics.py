"""mAP through pycocotools on cases with known answers."""

import cv2
import numpy as np
import pytest

from quantlab.datasets import Labels
from quantlab.detections import Detections
from quantlab.errors import ConfigError
from quantlab.metrics import COCO_KPT_SIGMAS, DetectionMAP, MapResult, rotated_iou

NAMES = {0: "a", 1: "b"}


def _truth(boxes, classes):
    """Labels from (N, 4) x1 y1 x2 y2 boxes and their classes."""
    return Labels(np.asarray(boxes, np.float32).reshape(-1, 4), np.asarray(classes, np.int64))


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
    result = DetectionMAP(NAMES).update(_dets(truth, [0.9, 0.8], [0, 1]), _truth(truth, [0, 1])).compute()
    assert result.map50 == pytest.approx(1.0) and result.map50_95 == pytest.approx(1.0)
    assert result.per_class == {"a": pytest.approx(1.0), "b": pytest.approx(1.0)}


def test_iou_0_62_counts_at_three_of_ten_thresholds():
    truth = [10, 10, 110, 110]
    result = DetectionMAP(NAMES).update(_dets([_shifted(truth, 0.62)], [0.9], [0]), _truth(np.array([truth]), [0])).compute()
    assert result.map50 == pytest.approx(1.0)
    assert result.map50_95 == pytest.approx(0.3)  # matched at IoU 0.50, 0.55 and 0.60 only
    assert result.per_class[NAMES[0]] == pytest.approx(0.3)  # per class too: AP50-95, not AP50


def test_half_the_objects_found_gives_half_the_ap():
    truth = np.array([[10, 10, 50, 50], [60, 60, 100, 100]], np.float32)
    result = DetectionMAP({0: "a"}).update(_dets(truth[:1], [0.9], [0]), _truth(truth, [0, 0])).compute()
    assert result.map50 == pytest.approx(0.5, abs=0.01)


def test_a_wrong_class_is_a_miss_and_no_predictions_score_zero(capsys):
    truth = np.array([[10, 10, 50, 50]], np.float32)
    assert DetectionMAP(NAMES).update(_dets(truth, [0.9], [1]), _truth(truth, [0])).compute().map50 == 0.0
    assert DetectionMAP(NAMES).update(Detections.empty(), _truth(truth, [0])).compute() == MapResult(
        0.0, 0.0, {"a": 0.0, "b": 0.0}, 1)
    assert capsys.readouterr().out == ""  # pycocotools' progress printing is silenced


def test_iou_0_52_counts_at_0_50_only():
    """map50 is the AP at IoU 0.50 exactly: the first of the ten thresholds, not the second (0.55)."""
    truth = [10, 10, 110, 110]
    result = DetectionMAP(NAMES).update(_dets([_shifted(truth, 0.52)], [0.9], [0]), _truth(np.array([truth]), [0])).compute()
    assert result.map50 == pytest.approx(1.0) and result.map50_95 == pytest.approx(0.1)


def test_detections_count_only_in_their_own_image():
    """The object of image 1 found in image 2 (same place) is a miss in image 1 and a false positive in 2."""
    box = np.array([[10, 10, 50, 50]], np.float32)
    result = (DetectionMAP(NAMES).update(Detections.empty(), _truth(box, [0]))
              .update(_dets(box, [0.9], [0]), _truth(np.zeros((0, 4)), [])).compute())
    assert result.map50 == 0.0 and result.images == 2


def test_more_than_100_detections_per_image_all_count():
    """maxDets 300 as Ultralytics: 150 found objects in one image are all matched (COCO's 100 gives 0.66)."""
    grid = np.array([[x * 20, y * 20, x * 20 + 15, y * 20 + 15] for y in range(10) for x in range(15)], np.float32)
    scores = np.linspace(0.9, 0.5, len(grid))
    result = DetectionMAP({0: "a"}).update(_dets(grid, scores, [0] * len(grid)), _truth(grid, [0] * len(grid))).compute()
    assert result.map50 == pytest.approx(1.0) and result.map50_95 == pytest.approx(1.0)


def test_classes_without_targets_are_left_out_of_the_mean():
    truth = np.array([[10, 10, 50, 50]], np.float32)
    predicted = _dets([[10, 10, 50, 50], [60, 60, 90, 90]], [0.9, 0.8], [0, 1])  # a stray class-1 box
    result = DetectionMAP(NAMES).update(predicted, _truth(truth, [0])).update(Detections.empty(), _truth(truth, [0])).compute()
    assert result.per_class == {"a": pytest.approx(0.5, abs=0.01)}  # one of the two class-0 objects found
    assert result.map50 == pytest.approx(0.5, abs=0.01) and result.images == 2


def test_map_without_targets_is_refused():
    with pytest.raises(ValueError, match="^mAP is undefined without any target box$"):
        DetectionMAP(NAMES).update(_dets([[0, 0, 5, 5]], [0.9], [0]), _truth(np.zeros((0, 4)), [])).compute()


# --- the task kinds: masks (segm), keypoints (OKS), rotated boxes (obb) -------------------------------------------

IOU_THRESHOLDS = np.linspace(0.5, 0.95, 10)  # COCOeval's


def _expected_map(iou):
    """(map50, map50_95) of one object predicted once at this IoU (or OKS)."""
    return float(iou >= 0.5), float(np.mean(IOU_THRESHOLDS <= iou))


def _as_predictions(truth: Labels, scores=None) -> Detections:
    """The truth itself as predictions, score 1 unless given."""
    scores = np.ones(len(truth.boxes), np.float32) if scores is None else np.asarray(scores, np.float32)
    return Detections(truth.boxes, scores, truth.class_ids, truth.masks, truth.keypoints, truth.rboxes)


def _square_masks(corners, size=10, image_hw=(100, 100)):
    """(N, H, W) bool: a size x size square from each (x, y) top-left corner."""
    masks = np.zeros((len(corners), *image_hw), bool)
    for mask, (x, y) in zip(masks, corners):
        mask[y:y + size, x:x + size] = True
    return masks


def _mask_labels(masks, classes):
    boxes = [[xs.min(), ys.min(), xs.max() + 1, ys.max() + 1] for ys, xs in (np.nonzero(m) for m in masks)]
    return Labels(np.asarray(boxes, np.float32).reshape(-1, 4), np.asarray(classes, np.int64), masks=masks)


def test_perfect_masks_score_one():
    truth = _mask_labels(_square_masks([(10, 10), (50, 60)], size=30), [0, 1])
    result = DetectionMAP(NAMES, kind="segm").update(_as_predictions(truth), truth).compute()
    assert (result.map50, result.map50_95) == (pytest.approx(1.0), pytest.approx(1.0))


def test_a_shifted_mask_counts_at_its_mask_iou():
    """40x40 squares 9 px apart: 31x40 = 1240 shared of 1960 pixels, IoU 0.633 (matched at 0.50, 0.55, 0.60)."""
    truth = _mask_labels(_square_masks([(10, 10)], size=40), [0])
    shifted = _mask_labels(_square_masks([(19, 10)], size=40), [0])
    result = DetectionMAP(NAMES, kind="segm").update(_as_predictions(shifted), truth).compute()
    assert (result.map50, result.map50_95) == pytest.approx(_expected_map(1240 / 1960))
    assert result.map50_95 == pytest.approx(0.3)


def test_masks_not_boxes_are_matched():
    """Two triangles of one 40x40 square share the box (box IoU 1) but no pixel (mask IoU 0)."""
    upper, lower = np.zeros((1, 100, 100), bool), np.zeros((1, 100, 100), bool)
    upper[0, 10:50, 10:50] = np.triu(np.ones((40, 40), bool))
    lower[0, 10:50, 10:50] = np.tril(np.ones((40, 40), bool), k=-1)
    box = np.array([[10, 10, 50, 50]], np.float32)
    truth = Labels(box, np.array([0]), masks=upper)
    predicted = Detections(box, np.ones(1, np.float32), np.array([0]), masks=lower)
    assert DetectionMAP(NAMES, kind="segm").update(predicted, truth).compute().map50 == 0.0
    assert DetectionMAP(NAMES).update(predicted, truth).compute().map50 == pytest.approx(1.0)


def test_masks_of_different_sizes_are_refused():
    truth = _mask_labels(_square_masks([(10, 10)]), [0])
    predicted = _as_predictions(_mask_labels(_square_masks([(10, 10)], image_hw=(100, 120)), [0]))
    with pytest.raises(ValueError, match=r"masks differ in size: \[\(100, 100\), \(100, 120\)\]"):
        DetectionMAP(NAMES, kind="segm").update(predicted, truth)


BOX_100 = [0, 0, 100, 100]  # OKS scales by its area x 0.53 = 5300 px^2


def _pose_labels(keypoints, boxes=None):
    """Labels of (N, K, 3) keypoints, each object in BOX_100 unless boxes are given."""
    keypoints = np.asarray(keypoints, np.float32)
    boxes = np.asarray([BOX_100] * len(keypoints) if boxes is None else boxes, np.float32)
    return Labels(boxes, np.zeros(len(keypoints), np.int64), keypoints=keypoints)


def _person(visible=17):
    """(17, 3): COCO keypoints spread over BOX_100, the first `visible` of them visible (2), the rest absent."""
    keypoints = np.zeros((17, 3), np.float32)
    keypoints[:, 0] = np.linspace(10, 90, 17)
    keypoints[:, 1] = np.linspace(90, 10, 17)
    keypoints[:visible, 2] = 2
    return keypoints


def _offset(labels, dx, keypoints=slice(None)):
    moved = labels.keypoints.copy()
    moved[:, keypoints, 0] += dx
    return _as_predictions(Labels(labels.boxes, labels.class_ids, keypoints=moved))


def _oks(distance, sigma, area=100 * 100 * 0.53):
    """OKS of keypoints each `distance` px from the truth: exp(-d^2 / (2 area (2 sigma)^2))."""
    return float(np.exp(-distance**2 / (2 * area * (2 * sigma) ** 2)))


def test_perfect_keypoints_score_one():
    truth = _pose_labels([_person(), _person(visible=5)], boxes=[BOX_100, [100, 0, 200, 100]])
    result = DetectionMAP({0: "person"}, kind="keypoints").update(_as_predictions(truth), truth).compute()
    assert (result.map50, result.map50_95) == (pytest.approx(1.0), pytest.approx(1.0))


@pytest.mark.parametrize(
    "distance",
    [4.0,  # OKS 0.572: matched at 0.50 and 0.55
     5.0],  # OKS 0.418: below 0.5, not matched at all
    ids=["oks-0.57", "oks-0.42"],
)
def test_oks_of_a_moved_nose_with_coco_sigmas(distance):
    """Only the nose (sigma 0.026) is visible; 17 keypoints use COCO's sigmas and the box area x 0.53."""
    truth = _pose_labels([_person(visible=1)])
    predicted = _offset(truth, distance)
    result = DetectionMAP({0: "person"}, kind="keypoints").update(predicted, truth).compute()
    assert (result.map50, result.map50_95) == pytest.approx(_expected_map(_oks(distance, 0.026)))


@pytest.mark.parametrize(
    ("distance", "map50"),
    [(40.0, 1.0),  # OKS 0.547
     (46.0, 0.0)],  # OKS 0.450
    ids=["oks-0.55", "oks-0.45"],
)
def test_other_keypoint_counts_use_sigma_one_over_k(distance, map50):
    """4 keypoints, not COCO's 17: sigma 1/4 each, as Ultralytics; every keypoint moved `distance` px."""
    truth = _pose_labels([[[20, 20, 2], [80, 20, 2], [20, 80, 1], [80, 80, 2]]])
    result = DetectionMAP(NAMES, kind="keypoints").update(_offset(truth, distance), truth).compute()
    assert result.map50 == pytest.approx(_expected_map(_oks(distance, 1 / 4))[0]) == map50


def test_explicit_kpt_sigmas_replace_the_default():
    """5 px is nothing at sigma 1/4 (OKS 0.99) but too far at the nose's 0.026 (OKS 0.42)."""
    truth = _pose_labels([[[20, 20, 2], [80, 20, 2], [20, 80, 2], [80, 80, 2]]])
    predicted = _offset(truth, 5.0)
    assert DetectionMAP(NAMES, kind="keypoints").update(predicted, truth).compute().map50 == pytest.approx(1.0)
    strict = DetectionMAP(NAMES, kind="keypoints", kpt_sigmas=[0.026] * 4).update(predicted, truth).compute()
    assert strict.map50 == 0.0
    with pytest.raises(ValueError, match=r"kpt_sigmas has shape \(3,\), but the objects have 4 keypoints"):
        DetectionMAP(NAMES, kind="keypoints", kpt_sigmas=[0.1] * 3).update(predicted, truth).compute()


def test_keypoints_far_off_score_zero_though_the_box_is_right():
    """50 px off in a 100 px box: OKS < exp(-2500 / (2 x 5300 x (2 x 0.107)^2)) = 0.006 for every keypoint."""
    truth = _pose_labels([_person()])
    assert _oks(50, COCO_KPT_SIGMAS.max()) < 0.01
    result = DetectionMAP({0: "person"}, kind="keypoints").update(_offset(truth, 50.0), truth).compute()
    assert (result.map50, result.map50_95) == (0.0, 0.0)


def test_targets_without_a_present_keypoint_are_ignored():
    """As COCOeval: the unlabelled person is no miss, and a prediction on it is no false positive."""
    truth = _pose_labels([_person(), _person(visible=0)], boxes=[BOX_100, [100, 0, 200, 100]])
    found_first = _as_predictions(_pose_labels([_person()]), scores=[0.5])
    on_unlabelled = _as_predictions(_pose_labels([_person() + [100, 0, 0]], boxes=[[100, 0, 200, 100]]), [0.9])
    for predicted in (found_first, _stack(found_first, on_unlabelled)):
        result = DetectionMAP({0: "person"}, kind="keypoints").update(predicted, truth).compute()
        assert (result.map50, result.map50_95) == (pytest.approx(1.0), pytest.approx(1.0))
    unlabelled = DetectionMAP({0: "person"}, kind="keypoints").update(found_first, _pose_labels([_person(0)]))
    assert not unlabelled.has_targets
    with pytest.raises(ValueError, match="^mAP is undefined without any target with a present keypoint$"):
        unlabelled.compute()


def _stack(first: Detections, second: Detections) -> Detections:
    fields = ("boxes", "scores", "class_ids", "masks", "keypoints", "rboxes")
    return Detections(**{f: np.concatenate([getattr(first, f), getattr(second, f)]) for f in fields
                         if getattr(first, f) is not None})


def test_more_than_20_pose_objects_per_image_all_count():
    """maxDets 300 as for boxes: COCOeval's keypoint default of 20 would find 20 of these 30 people."""
    boxes = [[x * 100, y * 100, x * 100 + 100, y * 100 + 100] for y in range(5) for x in range(6)]
    keypoints = [_person() + [box[0], box[1], 0] for box in boxes]
    truth = _pose_labels(keypoints, boxes=boxes)
    scores = np.linspace(0.9, 0.5, len(boxes))
    result = DetectionMAP({0: "person"}, kind="keypoints").update(_as_predictions(truth, scores), truth).compute()
    assert (result.map50, result.map50_95) == (pytest.approx(1.0), pytest.approx(1.0))


def test_a_reference_models_unsure_keypoints_are_not_truth():
    """As truth, a model's keypoint is present from confidence 0.5: the unsure ones may move freely."""
    confidences = np.where(np.arange(17) < 3, 0.9, 0.2).astype(np.float32)
    reference_keypoints = _person()
    reference_keypoints[:, 2] = confidences
    reference = _as_predictions(_pose_labels([reference_keypoints]))
    moved = _offset(_pose_labels([reference_keypoints]), 50.0, keypoints=slice(3, None))
    assert DetectionMAP({0: "person"}, kind="keypoints").update(moved, reference).compute().map50 == pytest.approx(1)
    reference_keypoints[:, 2] = 0.9  # sure of all: the moved ones now count
    sure = _as_predictions(_pose_labels([reference_keypoints]))
    assert DetectionMAP({0: "person"}, kind="keypoints").update(moved, sure).compute().map50 == 0.0


def test_a_reference_keypoint_at_exactly_the_confidence_threshold_is_truth():
    """KEYPOINT_CONF is inclusive: the only keypoint, at confidence 0.5, is present, so moving it far loses the
    match (with '>' it would be absent and the target ignored)."""
    reference_keypoints = _person()
    reference_keypoints[:, 2] = np.where(np.arange(17) == 0, 0.5, 0.2).astype(np.float32)
    reference = _as_predictions(_pose_labels([reference_keypoints]))
    moved = _offset(_pose_labels([reference_keypoints]), 50.0, keypoints=slice(0, 1))
    assert DetectionMAP({0: "person"}, kind="keypoints").update(moved, reference).compute().map50 == 0.0


def _rbox(cx, cy, w, h, degrees):
    return [cx, cy, w, h, np.deg2rad(degrees)]


@pytest.mark.parametrize(
    ("first", "second", "iou"),
    [
        (_rbox(0, 0, 10, 10, 0), _rbox(0, 0, 10, 10, 0), 1.0),  # identical
        # a regular octagon of inradius 5 is shared: 8 x 25 tan(22.5) = 200 (sqrt2 - 1); IoU 1 / sqrt2
        (_rbox(0, 0, 10, 10, 0), _rbox(0, 0, 10, 10, 45), 1 / np.sqrt(2)),
        (_rbox(0, 0, 10, 10, 30), _rbox(5 * np.cos(np.pi / 6), 5 * np.sin(np.pi / 6), 10, 10, 30), 1 / 3),  # half
        (_rbox(0, 0, 10, 10, 0), _rbox(0, 0, 2, 2, 10), 4 / 100),  # one inside the other
        (_rbox(0, 0, 100, 10, 45), _rbox(0, 0, 100, 10, 135), 100 / 1900),  # a cross: a 10x10 square shared
        (_rbox(0, 0, 10, 10, 0), _rbox(50, 0, 10, 10, 0), 0.0),  # apart
        (_rbox(0, 0, 10, 0, 0), _rbox(0, 0, 10, 10, 0), 0.0),  # a degenerate box
    ],
    ids=["identical", "octagon", "half-shifted-along-its-axis", "contained", "cross", "apart", "degenerate"],
)
def test_rotated_iou_known_answers(first, second, iou):
    assert rotated_iou(np.array([first]), np.array([second]))[0, 0] == pytest.approx(iou, abs=1e-5)
    assert rotated_iou(np.array([second]), np.array([first]))[0, 0] == pytest.approx(iou, abs=1e-5)


def test_rotated_iou_shapes():
    boxes = np.array([_rbox(0, 0, 10, 10, 0), _rbox(50, 0, 10, 10, 0)])
    assert rotated_iou(boxes, boxes[[0, 1, 0]]).tolist() == [[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]]
    assert rotated_iou(np.zeros((0, 5)), boxes).shape == (0, 2)


def _obb_labels(rboxes, classes=None):
    """Labels of (N, 5) rotated boxes, boxes their axis-aligned bounds."""
    rboxes = np.asarray(rboxes, np.float32)
    corners = [cv2.boxPoints(((cx, cy), (w, h), np.rad2deg(a))) for cx, cy, w, h, a in rboxes]
    boxes = np.array([[*c.min(axis=0), *c.max(axis=0)] for c in corners], np.float32).reshape(-1, 4)
    classes = np.zeros(len(rboxes), np.int64) if classes is None else np.asarray(classes, np.int64)
    return Labels(boxes, classes, rboxes=rboxes)


def test_perfect_rotated_boxes_score_one():
    truth = _obb_labels([_rbox(50, 50, 60, 20, 30), _rbox(150, 50, 40, 40, -10)], [0, 1])
    result = DetectionMAP(NAMES, kind="obb").update(_as_predictions(truth), truth).compute()
    assert (result.map50, result.map50_95) == (pytest.approx(1.0), pytest.approx(1.0))


def test_a_rotated_box_counts_at_its_rotated_iou():
    """A square turned 45 degrees: IoU 1/sqrt2 = 0.707, matched at the five thresholds 0.50 to 0.70."""
    truth = _obb_labels([_rbox(50, 50, 20, 20, 0)])
    turned = _obb_labels([_rbox(50, 50, 20, 20, 45)])
    result = DetectionMAP(NAMES, kind="obb").update(_as_predictions(turned), truth).compute()
    assert (result.map50, result.map50_95) == (pytest.approx(1.0), pytest.approx(0.5))


def test_rotated_not_axis_aligned_iou_is_used():
    """A 100x10 bar at 45 degrees and at 135: the same axis-aligned box (IoU 1), rotated IoU 100 / 1900."""
    truth = _obb_labels([_rbox(100, 100, 100, 10, 45)])
    crossing = _obb_labels([_rbox(100, 100, 100, 10, 135)])
    np.testing.assert_allclose(crossing.boxes, truth.boxes, atol=1e-3)
    assert DetectionMAP(NAMES).update(_as_predictions(crossing), truth).compute().map50 == pytest.approx(1.0)
    assert DetectionMAP(NAMES, kind="obb").update(_as_predictions(crossing), truth).compute().map50 == 0.0


def test_rotated_boxes_are_matched_in_score_order():
    """The right box given first at 0.5, a box elsewhere after it at 0.9: the stray one ranks first, AP 0.5."""
    truth = _obb_labels([_rbox(50, 50, 20, 20, 30)])
    predicted = _as_predictions(_obb_labels([_rbox(50, 50, 20, 20, 30), _rbox(150, 50, 20, 20, 30)]), [0.5, 0.9])
    result = DetectionMAP(NAMES, kind="obb").update(predicted, truth).compute()
    assert (result.map50, result.map50_95) == (pytest.approx(0.5), pytest.approx(0.5))


def test_a_kind_needs_its_part_on_both_sides():
    truth = _obb_labels([_rbox(50, 50, 20, 20, 0)])
    boxes_only = Detections(truth.boxes, np.ones(1, np.float32), truth.class_ids)
    with pytest.raises(ValueError, match="^mAP of kind 'obb' needs predicted rboxes, but they are None$"):
        DetectionMAP(NAMES, kind="obb").update(boxes_only, truth)
    with pytest.raises(ValueError, match="needs truth masks"):
        DetectionMAP(NAMES, kind="segm").update(Detections.empty(), Labels(truth.boxes, truth.class_ids))
    DetectionMAP(NAMES, kind="segm").update(Detections.empty(), Labels(np.zeros((0, 4)), np.zeros(0)))  # no objects


def test_unknown_kind_is_refused():
    with pytest.raises(ConfigError, match="mAP kind 'mask' is not valid: choose one of bbox, segm, keypoints, obb"):
        DetectionMAP(NAMES, kind="mask")


def test_a_reference_models_detections_are_truth_like_labels():
    """Agreement takes a reference model's Detections as truth: the same boxes score as labels do."""
    truth = Labels(np.array([[10, 10, 110, 110], [200, 10, 240, 50]], np.float32), np.array([0, 1]))
    predicted = _dets([_shifted(truth.boxes[0], 0.62), truth.boxes[1]], [0.9, 0.3], [0, 1])
    labels_form = DetectionMAP(NAMES).update(predicted, truth).compute()
    assert labels_form == DetectionMAP(NAMES).update(predicted, _dets(truth.boxes, [1.0, 1.0], [0, 1])).compute()
    assert labels_form.map50_95 == pytest.approx((0.3 + 1.0) / 2)


# ---- pinned by the mutation triage (issue 28): each case fails on a one-token slip that survived mutmut ----

def test_box_height_is_y2_minus_y1_away_from_the_top_edge():
    """Truth y 10..20 and a prediction y 12..22: IoU 8/12 = 0.667 matches at 0.50..0.65 only, 4 of 10
    thresholds (with y2 + y1 as the height the IoU would be 28/36 = 0.78)."""
    result = DetectionMAP({0: "a"}).update(_dets([[0, 12, 10, 22]], [0.9], [0]), _truth([[0, 10, 10, 20]], [0])).compute()
    assert result.map50 == pytest.approx(1.0) and result.map50_95 == pytest.approx(0.4)


def test_different_keypoint_counts_are_one_error_naming_them():
    metric = DetectionMAP({0: "a"}, kind="keypoints")
    truth = Labels(np.array([[0, 0, 10, 10]], np.float32), np.array([0]), keypoints=np.full((1, 2, 3), 2, np.float32))
    predicted = Detections(np.array([[0, 0, 10, 10]], np.float32), np.array([0.9], np.float32), np.array([0]),
                           keypoints=np.full((1, 3, 3), 2, np.float32))
    with pytest.raises(ValueError, match=r"different keypoint counts: \[2, 3\]"):
        metric.update(predicted, truth).compute()


def test_keypoints_labelled_occluded_count_as_present():
    """Visibility 1 (labelled, occluded) is present for COCOeval (v > 0): such an object is scored."""
    keypoints = np.array([[[5, 5, 1], [8, 8, 1]]], np.float32)
    truth = Labels(np.array([[0, 0, 10, 10]], np.float32), np.array([0]), keypoints=keypoints)
    predicted = Detections(truth.boxes, np.array([0.9], np.float32), np.array([0]), keypoints=keypoints)
    metric = DetectionMAP({0: "a"}, kind="keypoints").update(predicted, truth)
    assert metric.has_targets and metric.compute().map50_95 == pytest.approx(1.0)


def _rotated(rboxes, scores=None):
    rboxes = np.asarray(rboxes, np.float32).reshape(-1, 5)
    boxes = np.concatenate([rboxes[:, :2] - rboxes[:, 2:4] / 2, rboxes[:, :2] + rboxes[:, 2:4] / 2], axis=1)
    classes = np.zeros(len(rboxes), np.int64)
    if scores is None:
        return Labels(boxes, classes, rboxes=rboxes)
    return Detections(boxes, np.asarray(scores, np.float32), classes, rboxes=rboxes)


@pytest.mark.parametrize(
    "rboxes",
    [
        [[50, 50, 20, 10, -0.4]],  # a negative angle: the area is w x h, never w x angle
        [[20, 20, 10, 6, 0.3], [70, 60, 12, 8, -0.2]],  # two truths of one class in one image
        [[50, 50, 0.8, 0.8, 0.0]],  # under one square pixel: still an object, IoU 1 with itself
    ],
    ids=["negative-angle", "two-truths", "tiny"],
)
def test_rotated_predictions_equal_to_the_truth_score_map_1(rboxes):
    metric = DetectionMAP({0: "a"}, kind="obb").update(_rotated(rboxes, [0.9] * len(rboxes)), _rotated(rboxes))
    assert metric.compute().map50_95 == pytest.approx(1.0)
