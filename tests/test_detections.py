"""Decoding YOLOv8 outputs and class-aware NMS, on outputs built by hand."""

import cv2
import numpy as np
import pytest

from quantlab.description import DETECT, ModelDescription
from quantlab.detections import MAX_NMS_CANDIDATES, PREDICT_NMS, VAL_NMS, Detections, NmsSettings, opencv_rect
from quantlab.detections import decode as decode_with
from quantlab.errors import ModelError
from quantlab.preprocess import fit


def _output(rows, num_classes=3, anchors=50):
    """(1, 4+nc, anchors): rows are (cx, cy, w, h, class, prob); other anchors are empty."""
    out = np.zeros((1, 4 + num_classes, anchors), np.float32)
    for i, (cx, cy, w, h, cls, prob) in enumerate(rows):
        out[0, :4, i] = (cx, cy, w, h)
        out[0, 4 + cls, i] = prob
    return out


IDENTITY = fit((192, 320), (192, 320))[0]


def _detect(num_classes=3):
    return ModelDescription(DETECT, {i: f"class{i}" for i in range(num_classes)})


def decode(output, geometry, settings):
    """Decode a plain detect output, its class count read from its channels."""
    return decode_with(output, geometry, _detect(min(output.shape[1:]) - 4), settings)


def test_overlapping_same_class_boxes_are_suppressed_other_classes_kept():
    out = _output([(100, 100, 40, 40, 0, 0.9), (102, 101, 40, 40, 0, 0.8), (102, 101, 40, 40, 1, 0.7),
                   (250, 150, 20, 20, 2, 0.6)])
    dets = decode(out, IDENTITY, PREDICT_NMS)
    order = np.argsort(dets.class_ids)
    assert dets.class_ids[order].tolist() == [0, 1, 2]
    np.testing.assert_allclose(dets.scores[order], [0.9, 0.7, 0.6], rtol=1e-6)
    np.testing.assert_allclose(dets.boxes[np.argmax(dets.scores)], [80, 80, 120, 120])


def test_transposed_layout_decodes_the_same():
    out = _output([(100, 100, 40, 40, 0, 0.9), (250, 150, 20, 20, 2, 0.6)])
    a, b = decode(out, IDENTITY, PREDICT_NMS), decode(out.transpose(0, 2, 1), IDENTITY, PREDICT_NMS)
    np.testing.assert_array_equal(a.boxes, b.boxes)
    np.testing.assert_array_equal(a.class_ids, b.class_ids)


def test_confidence_threshold_and_multi_label():
    out = _output([(100, 100, 40, 40, 0, 0.2)])
    out[0, 5, 0] = 0.1  # the same anchor is also a little like class 1
    assert len(decode(out, IDENTITY, PREDICT_NMS)) == 0
    val = decode(out, IDENTITY, VAL_NMS)
    assert sorted(val.class_ids.tolist()) == [0, 1]  # Ultralytics' val keeps every label above conf


def test_max_detections_caps_the_result():
    rows = [(10 + 15 * (i % 20), 10 + 15 * (i // 20), 8, 8, 0, 0.5 + i / 1000) for i in range(40)]
    dets = decode(_output(rows, anchors=60), IDENTITY, NmsSettings(conf=0.25, iou=0.7, max_det=10))
    assert len(dets) == 10 and dets.scores.min() == pytest.approx(0.53)  # the ten best of 0.500..0.539


def test_boxes_map_back_through_the_letterbox():
    geometry, _ = fit((480, 640), (192, 320))  # scale 0.4, 32 px padding left and right
    out = _output([(32 + 0.4 * 320, 0.4 * 240, 0.4 * 100, 0.4 * 50, 0, 0.9)])
    dets = decode(out, geometry, PREDICT_NMS)
    np.testing.assert_allclose(dets.boxes[0], [270, 215, 370, 265], atol=1e-3)


@pytest.mark.parametrize(
    "shape",
    [(1, 1000), (2, 8, 100), (1, 4, 100), (1, 100, 4), (1, 1, 8, 100)],
    ids=["2-d", "batch-of-2", "4-channels", "4-channels-transposed", "4-d"],
)
def test_non_detection_outputs_are_refused(shape):
    with pytest.raises(ModelError, match=rf"output of shape \[{', '.join(map(str, shape))}\] is not this detect"):
        _detect(4).split(np.zeros(shape, np.float32))


def _pair(shift, width=100, first_class=0, second_class=0):
    """Two 100x100 boxes, the second `shift` px to the right: IoU = (100 - shift) / (100 + shift)."""
    return _output([(150, 100, width, 100, first_class, 0.9), (150 + shift, 100, width, 100, second_class, 0.8)],
                   anchors=10)


@pytest.mark.parametrize("settings", [PREDICT_NMS, VAL_NMS], ids=["predict", "val"])
@pytest.mark.parametrize(
    ("shift", "kept"),
    [
        (16, 1),  # IoU 84/116 = 0.724, just above 0.7: the lower-scoring box is suppressed
        (20, 2),  # IoU 80/120 = 0.667, just below 0.7: both stay (a threshold of 0.5 or 0.3 would drop one)
        (50, 2),  # IoU 50/150 = 0.333: both stay
    ],
    ids=["iou-0.72", "iou-0.67", "iou-0.33"],
)
def test_nms_suppresses_above_iou_0_7_only(settings, shift, kept):
    dets = decode(_pair(shift), IDENTITY, settings)
    assert len(dets) == kept
    assert dets.scores[0] == pytest.approx(0.9)  # the best box always survives, first


def test_overlap_across_classes_never_suppresses():
    dets = decode(_pair(0, second_class=1), IDENTITY, PREDICT_NMS)  # identical boxes, two classes
    assert sorted(dets.class_ids.tolist()) == [0, 1]


@pytest.mark.parametrize(
    ("settings", "prob", "kept"),
    [
        (PREDICT_NMS, 0.26, 1),  # above predict's 0.25
        (PREDICT_NMS, 0.24, 0),
        (VAL_NMS, 0.0011, 1),  # above val's 0.001
        (VAL_NMS, 0.0009, 0),
    ],
    ids=["predict-above", "predict-below", "val-above", "val-below"],
)
def test_confidence_thresholds_are_ultralytics_defaults(settings, prob, kept):
    assert len(decode(_output([(100, 100, 40, 40, 1, prob)]), IDENTITY, settings)) == kept


def test_single_label_keeps_only_the_best_class_of_each_anchor():
    out = _output([(100, 100, 40, 40, 2, 0.6)])
    out[0, 4, 0] = 0.5  # the same anchor is also quite like class 0
    dets = decode(out, IDENTITY, NmsSettings(conf=0.25, iou=0.7, multi_label=False))
    assert dets.class_ids.tolist() == [2] and dets.scores.tolist() == [pytest.approx(0.6)]
    assert dets.boxes.dtype == np.float32 and dets.scores.dtype == np.float32 and dets.class_ids.dtype == np.int64


def test_only_the_top_30000_candidates_enter_nms():
    """As Ultralytics: the 30001st best candidate is dropped before NMS, even if nothing overlaps it."""
    anchors = MAX_NMS_CANDIDATES + 1
    out = np.zeros((1, 6, anchors), np.float32)
    out[0, :4] = np.array([[50], [50], [20], [20]], np.float32)  # one box, over and over: class 0
    out[0, 4, :-1] = np.linspace(0.5, 0.9, anchors - 1, dtype=np.float32)
    out[0, :4, -1] = (250, 150, 20, 20)  # far away, class 1, the lowest score of all
    out[0, 5, -1] = 0.3
    dets = decode(out, IDENTITY, PREDICT_NMS)
    assert dets.class_ids.tolist() == [0] and dets.scores[0] == pytest.approx(0.9)


def test_empty_output_gives_typed_empty_detections():
    for dets in (decode(_output([]), IDENTITY, VAL_NMS), Detections.empty()):
        assert len(dets) == 0 and dets.boxes.shape == (0, 4) and dets.scores.shape == dets.class_ids.shape == (0,)
        assert (dets.boxes.dtype, dets.scores.dtype, dets.class_ids.dtype) == (np.float32, np.float32, np.int64)


def test_ties_keep_the_earlier_anchor():
    """Equal scores: the sort is stable, so of two overlapping boxes the lower anchor index survives
    (numpy's default sort reorders ties among 40 candidates with two score levels)."""
    rows = [(20 + 30 * (i % 10), 20 + 60 * (i // 10), 20, 20, 0, (0.5, 0.6)[i % 2]) for i in range(20)]
    rows += [(cx + 1, cy, w, h, cls, prob) for cx, cy, w, h, cls, prob in rows]  # IoU 0.90 twins, anchors 20..39
    dets = decode(_output(rows, anchors=40), IDENTITY, PREDICT_NMS)
    expected = np.array([[cx - 10, cy - 10, cx + 10, cy + 10] for cx, cy, *_ in rows[:20]], np.float32)
    order = np.lexsort((dets.boxes[:, 0], dets.boxes[:, 1]))
    np.testing.assert_array_equal(dets.boxes[order], expected[np.lexsort((expected[:, 0], expected[:, 1]))])


def _task(task, num_classes=1, extra=0, kpt_shape=None, end_to_end=False):
    return ModelDescription(task, {i: f"class{i}" for i in range(num_classes)}, extra, kpt_shape, end_to_end)


def _rect_iou(mask, x1, y1, x2, y2):
    expected = np.zeros_like(mask)
    expected[y1:y2, x1:x2] = True
    return (mask & expected).sum() / (mask | expected).sum()


def _segment_output(boxes):
    """A segment output (1, 4+1+32, 50) whose rows use mask coefficient 0 only, and protos (1, 32, 48, 80)
    with channel 0 positive on proto rows 10..20, columns 20..40 (input pixels 40..80, 80..160)."""
    out = np.zeros((1, 4 + 1 + 32, 50), np.float32)
    for i, box in enumerate(boxes):
        out[0, :4, i], out[0, 4, i], out[0, 5, i] = box, 0.9 - i * 0.1, 1.0
    protos = np.full((1, 32, 48, 80), -10.0, np.float32)
    protos[0, 0, 10:20, 20:40] = 10.0
    return [out, protos]


def test_segment_masks_are_coefficients_times_protos_cut_to_the_box():
    whole, cut = (120, 60, 120, 60), (250, 60, 40, 60)  # the second box covers input x 230..270: no proto region
    dets = decode_with(_segment_output([whole, cut]), IDENTITY, _task("segment", extra=32), PREDICT_NMS)
    assert dets.masks.shape == (2, 192, 320) and dets.masks.dtype == bool
    assert _rect_iou(dets.masks[0], 80, 40, 160, 80) > 0.95
    assert dets.masks[1].sum() == 0
    half = decode_with(_segment_output([(100, 60, 40, 60)]), IDENTITY, _task("segment", extra=32), PREDICT_NMS)
    assert _rect_iou(half.masks[0], 80, 40, 120, 80) > 0.95  # the box x 80..120 cuts the region in half


def test_segment_masks_map_back_through_the_letterbox():
    geometry, _ = fit((480, 640), (192, 320))  # scale 0.4, 32 px padding left and right
    dets = decode_with(_segment_output([(120, 60, 120, 60)]), geometry, _task("segment", extra=32), PREDICT_NMS)
    assert dets.masks.shape == (1, 480, 640)
    assert _rect_iou(dets.masks[0], 120, 100, 320, 200) > 0.95  # input x 80..160 -> (x - 32) / 0.4


@pytest.mark.parametrize("per_point", [3, 2])
def test_keypoints_map_back_through_the_letterbox(per_point):
    geometry, _ = fit((480, 640), (192, 320))
    out = np.zeros((1, 4 + 1 + 2 * per_point, 20), np.float32)
    out[0, :5, 0] = (32 + 0.4 * 320, 0.4 * 240, 40, 20, 0.9)
    point = (32 + 0.4 * 100, 0.4 * 50, 0.7)[:per_point], (32 + 0.4 * 600, 0.4 * 400, 0.2)[:per_point]
    out[0, 5:, 0] = np.concatenate(point)
    dets = decode_with(out, geometry, _task("pose", extra=2 * per_point, kpt_shape=(2, per_point)), PREDICT_NMS)
    confidence = (0.7, 0.2) if per_point == 3 else (1.0, 1.0)
    np.testing.assert_allclose(dets.keypoints[0], [[100, 50, confidence[0]], [600, 400, confidence[1]]], atol=1e-3)


def _obb_output(rows):
    out = np.zeros((1, 4 + 1 + 1, 20), np.float32)
    for i, (cx, cy, w, h, score, angle) in enumerate(rows):
        out[0, :, i] = (cx, cy, w, h, score, angle)
    return out


def test_obb_nms_is_rotated():
    """Two long thin boxes crossing at 90 degrees: the same cx cy w h, so axis-aligned NMS would keep one."""
    crossing = _obb_output([(160, 96, 100, 10, 0.9, 0.0), (160, 96, 100, 10, 0.8, np.pi / 2)])
    dets = decode_with(crossing, IDENTITY, _task("obb", extra=1), PREDICT_NMS)
    assert len(dets) == 2
    np.testing.assert_allclose(dets.rboxes[:, 4], [0.0, np.pi / 2], atol=1e-6)
    np.testing.assert_allclose(dets.boxes[1], [155, 46, 165, 146], atol=1e-3)  # the upright one's bounds
    overlapping = _obb_output([(160, 96, 100, 10, 0.9, 0.3), (161, 96, 100, 10, 0.8, 0.3)])
    assert len(decode_with(overlapping, IDENTITY, _task("obb", extra=1), PREDICT_NMS)) == 1


def test_obb_boxes_map_back_through_the_letterbox():
    geometry, _ = fit((480, 640), (192, 320))
    dets = decode_with(_obb_output([(32 + 0.4 * 320, 0.4 * 240, 40, 8, 0.9, 0.5)]), geometry, _task("obb", extra=1),
                       PREDICT_NMS)
    np.testing.assert_allclose(dets.rboxes[0], [320, 240, 100, 20, 0.5], atol=1e-3)


def test_end_to_end_rows_are_read_not_suppressed_again():
    """x1 y1 x2 y2 score class rows, ranked by the model: overlapping boxes both stay; rows below conf go."""
    geometry, _ = fit((480, 640), (192, 320))
    rows = np.zeros((1, 300, 6), np.float32)
    rows[0, 0] = (32 + 0.4 * 100, 0.4 * 100, 32 + 0.4 * 200, 0.4 * 200, 0.9, 2)
    rows[0, 1] = (32 + 0.4 * 102, 0.4 * 100, 32 + 0.4 * 202, 0.4 * 200, 0.8, 2)
    rows[0, 2] = (40, 0, 50, 10, 0.1, 1)
    dets = decode_with(rows, geometry, _task("detect", num_classes=3, end_to_end=True), PREDICT_NMS)
    assert dets.class_ids.tolist() == [2, 2]
    np.testing.assert_allclose(dets.boxes, [[100, 100, 200, 200], [102, 100, 202, 200]], atol=1e-3)
    assert len(decode_with(rows, geometry, _task("detect", num_classes=3, end_to_end=True), VAL_NMS)) == 3


def test_boxes_wholly_outside_the_image_are_dropped():
    """In the padding, a box clips to zero area: COCOeval's IoU of it with itself is 0, so a model would
    disagree with itself. Was: agreement 0.93 of a segmentation model with itself."""
    geometry, _ = fit((480, 640), (192, 320))  # 32 px of padding left and right
    out = _output([(10, 100, 8, 8, 0, 0.9), (160, 100, 20, 20, 1, 0.8)])
    dets = decode(out, geometry, PREDICT_NMS)
    assert dets.class_ids.tolist() == [1]


def test_rotated_boxes_thinner_than_a_hundredth_of_a_pixel_are_dropped():
    dets = decode_with(_obb_output([(160, 96, 1e-6, 80, 0.9, 0.4), (100, 50, 20, 10, 0.8, 0.1)]), IDENTITY,
                       _task("obb", extra=1), PREDICT_NMS)
    np.testing.assert_allclose(dets.rboxes[:, :2], [[100, 50]])


# ---- known answers at the edges where a one-line slip changes the answer, task by task ----

def test_a_rotated_box_turns_x_towards_y_as_ultralytics():
    """cx cy w h angle (radians) -> corners: (+w/2, 0) rotated by +30 degrees lands at (cos, sin) * w/2, as
    Ultralytics' xywhr2xyxyxyxy; a mirrored angle puts it at (cos, -sin) and every IoU with a label goes wrong."""
    corners = cv2.boxPoints(opencv_rect((0.0, 0.0, 2.0, 1.0, np.pi / 6))).astype(np.float64)
    c, s = np.cos(np.pi / 6), np.sin(np.pi / 6)
    expected = np.array([(x * c - y * s, x * s + y * c) for x, y in [(1, 0.5), (1, -0.5), (-1, 0.5), (-1, -0.5)]])
    np.testing.assert_allclose(corners[np.lexsort(corners.T)], expected[np.lexsort(expected.T)], atol=1e-5)


def _obb_rows(rows, num_classes=1):
    """(1, 4+nc+1, 20) OBB output from (cx, cy, w, h, class, score, angle) rows."""
    out = np.zeros((1, 4 + num_classes + 1, 20), np.float32)
    for i, (cx, cy, w, h, cls, score, angle) in enumerate(rows):
        out[0, :4, i], out[0, 4 + cls, i], out[0, -1, i] = (cx, cy, w, h), score, angle
    return out


@pytest.mark.parametrize(
    ("shift", "kept"),
    [
        (12, 1),  # rotated IoU 0.718: suppressed at 0.7
        (16, 2),  # rotated IoU 0.664: both stay (a threshold of 0.35 would drop one)
    ],
    ids=["iou-0.72", "iou-0.66"],
)
def test_rotated_nms_suppresses_above_iou_0_7_only(shift, kept):
    """Two 100x10 boxes at 0.5 rad, the second `shift` px along their axis and 0.5 px across it (with no
    offset across, their long edges are collinear and OpenCV 5.1's rotated NMS underestimates the overlap)."""
    angle = 0.5
    second = (160 + shift * np.cos(angle) - 0.5 * np.sin(angle), 96 + shift * np.sin(angle) + 0.5 * np.cos(angle))
    out = _obb_rows([(160, 96, 100, 10, 0, 0.9, angle), (*second, 100, 10, 0, 0.8, angle)])
    dets = decode_with(out, IDENTITY, _task("obb", extra=1), PREDICT_NMS)
    assert len(dets) == kept and dets.scores[0] == pytest.approx(0.9)


def test_rotated_nms_is_class_aware_and_ranks_across_classes_before_max_det():
    """Identical rotated boxes of two classes both stay; with max_det 1 the best of all classes is kept,
    not the first class's (class 0 scores 0.5, class 1 scores 0.9)."""
    out = _obb_rows([(160, 96, 100, 10, 0, 0.5, 0.3), (160, 96, 100, 10, 1, 0.9, 0.3)], num_classes=2)
    both = decode_with(out, IDENTITY, _task("obb", num_classes=2, extra=1), PREDICT_NMS)
    assert sorted(both.class_ids.tolist()) == [0, 1]
    best = decode_with(out, IDENTITY, _task("obb", num_classes=2, extra=1), NmsSettings(conf=0.25, iou=0.7, max_det=1))
    assert best.class_ids.tolist() == [1] and best.scores.tolist() == [pytest.approx(0.9)]


def _flat_protos(logit):
    """Protos (1, 32, 48, 80) whose channel 0 is `logit` everywhere (the rest 0), for coefficient 1 on it."""
    protos = np.zeros((1, 32, 48, 80), np.float32)
    protos[0, 0] = logit
    return protos


def _one_segment(box):
    out = np.zeros((1, 4 + 1 + 32, 50), np.float32)
    out[0, :4, 0], out[0, 4, 0], out[0, 5, 0] = box, 0.9, 1.0
    return out


@pytest.mark.parametrize(
    ("logit", "pixels"),
    [
        (0.3, 400),  # sigmoid(0.3) = 0.57 > 0.5: inside (a threshold of 0.5 on the logit would drop it)
        (-0.3, 0),  # sigmoid(-0.3) = 0.43: outside
    ],
    ids=["logit+0.3", "logit-0.3"],
)
def test_mask_threshold_is_probability_0_5(logit, pixels):
    dets = decode_with([_one_segment((100, 60, 20, 20)), _flat_protos(logit)], IDENTITY, _task("segment", extra=32),
                       PREDICT_NMS)
    assert dets.masks[0].sum() == pixels


def test_mask_covers_exactly_the_pixels_whose_centre_is_in_the_box():
    """Box x 10.6..20.6, y 5.4..9.4: pixel centres 11.5..20.5 and 5.5..8.5 are inside, so columns 11..20,
    rows 5..8 (truncating the edges would take columns 10..19 and rows 5..8)."""
    dets = decode_with([_one_segment((15.6, 7.4, 10.0, 4.0)), _flat_protos(10.0)], IDENTITY,
                       _task("segment", extra=32), PREDICT_NMS)
    rows, cols = np.nonzero(dets.masks[0])
    assert (rows.min(), rows.max(), cols.min(), cols.max()) == (5, 8, 11, 20)
    assert dets.masks[0].sum() == 4 * 10


def _end_to_end_rows(rows):
    """(1, 300, 6) end-to-end output from (x1, y1, x2, y2, score, class) rows."""
    out = np.zeros((1, 300, 6), np.float32)
    out[0, :len(rows)] = rows
    return out


@pytest.mark.parametrize(
    ("score", "kept"),
    [(0.25, 0), (0.2501, 1)],  # as Ultralytics' end-to-end postprocess: score > conf, not >=
    ids=["at-conf", "above-conf"],
)
def test_end_to_end_rows_need_a_score_above_conf(score, kept):
    out = _end_to_end_rows([(10, 10, 50, 50, score, 0)])
    assert len(decode_with(out, IDENTITY, _task("detect", end_to_end=True), PREDICT_NMS)) == kept


def test_end_to_end_rows_are_cut_at_max_det_keeping_the_models_ranking():
    out = _end_to_end_rows([(10 * i, 0, 10 * i + 8, 8, 0.9 - 0.1 * i, 0) for i in range(5)])
    dets = decode_with(out, IDENTITY, _task("detect", end_to_end=True), NmsSettings(conf=0.25, iou=0.7, max_det=3))
    np.testing.assert_allclose(dets.scores, [0.9, 0.8, 0.7], rtol=1e-6)


def test_end_to_end_class_ids_are_rounded_not_truncated():
    """A float class column can carry 1.9999999 for class 2 (a Cast-free export, or an INT8 head)."""
    out = _end_to_end_rows([(10, 10, 50, 50, 0.9, np.float32(1.9999999)), (60, 10, 90, 50, 0.8, 1.0000001)])
    dets = decode_with(out, IDENTITY, _task("detect", num_classes=3, end_to_end=True), PREDICT_NMS)
    assert dets.class_ids.tolist() == [2, 1]


# ---- pinned by the mutation triage (issue 28): each case fails on a one-token slip that survived mutmut ----

def _ramp_protos(axis, crossing):
    """Protos (1, 32, 48, 80) whose channel 0 is (proto column or row) - crossing: bilinear sampling of a
    linear ramp is exact, so the mask's edge is where the sampled proto coordinate passes `crossing`."""
    rows, cols = np.mgrid[0:48, 0:80].astype(np.float32)
    protos = np.zeros((1, 32, 48, 80), np.float32)
    protos[0, 0] = (cols if axis == "x" else rows) - crossing
    return protos


@pytest.mark.parametrize(
    ("image_hw", "axis"),
    [
        ((480, 640), "x"),  # scale 0.4, 32 px padding left: a pixel centre's x in proto cells
        ((100, 640), "y"),  # scale 0.5, 71 px padding on top, input 192 high but 320 wide: its y
    ],
    ids=["x-pad-left", "y-pad-top"],
)
def test_mask_edge_is_where_the_pixel_centre_maps_in_the_protos(image_hw, axis):
    """Image pixel centre (i + 0.5) -> input (i + 0.5) * scale + pad -> proto cells * 48/192 or 80/320 - 0.5;
    the ramp crosses zero 0.05 cells past a pixel centre, so a slip of one image pixel (or a wrong pad,
    scale or axis) moves the edge, while OpenCV's 1/32-cell sampling does not."""
    geometry, _ = fit(image_hw, (192, 320))
    i = 0 if axis == "y" else 1
    pad, cells = (geometry.pad_top, 48) if axis == "y" else (geometry.pad_left, 80)
    centres = ((np.arange(image_hw[i]) + 0.5) * geometry.scale + pad) * cells / (192, 320)[i] - 0.5
    crossing = centres[image_hw[i] // 2] + 0.05
    box = (160, 96, 200, 120)  # input pixels 60..260 x 36..156: inside the image in both geometries
    dets = decode_with([_one_segment(box), _ramp_protos(axis, crossing)], geometry, _task("segment", extra=32),
                       PREDICT_NMS)
    x1, y1, x2, y2 = dets.boxes[0]
    low, high = (y1, y2) if axis == "y" else (x1, x2)
    first, last = int(np.ceil(low - 0.5)), int(np.ceil(high - 0.5))  # the pixels whose centre is in the box
    middle = dets.masks[0][:, int((x1 + x2) / 2)] if axis == "y" else dets.masks[0][int((y1 + y2) / 2)]
    expected = centres[first:last] > crossing
    assert expected.any() and not expected.all()
    np.testing.assert_array_equal(middle[first:last], expected)


def test_thin_boxes_and_zero_coefficients_give_empty_masks_and_leave_the_next_one_whole():
    """A box between two pixel centres covers no pixel (x 10.2..10.4; then y 30.2..30.4); coefficients of 0
    give logit 0, probability 0.5, which is not above 0.5; the box after them still gets its mask."""
    out = np.zeros((1, 4 + 1 + 32, 50), np.float32)
    rows = [((10.3, 60, 0.2, 20), 1.0), ((100, 30.3, 20, 0.2), 1.0), ((200, 60, 20, 20), 0.0),
            ((260, 60, 20, 20), 1.0)]
    for k, (box, coefficient) in enumerate(rows):
        out[0, :4, k], out[0, 4, k], out[0, 5, k] = box, 0.9 - 0.1 * k, coefficient
    dets = decode_with([out, _flat_protos(10.0)], IDENTITY, _task("segment", extra=32), PREDICT_NMS)
    assert dets.masks.sum(axis=(1, 2)).tolist() == [0, 0, 0, 400]


def test_keypoints_of_several_detections_stay_with_their_box_as_float32():
    out = np.zeros((1, 4 + 1 + 4, 20), np.float32)
    out[0, :, 0] = (50, 50, 20, 20, 0.9, 41, 42, 43, 44)
    out[0, :, 1] = (150, 50, 20, 20, 0.8, 141, 142, 143, 144)
    dets = decode_with(out, IDENTITY, _task("pose", extra=4, kpt_shape=(2, 2)), PREDICT_NMS)
    assert dets.keypoints.dtype == np.float32 and dets.keypoints.shape == (2, 2, 3)
    np.testing.assert_allclose(dets.keypoints, [[[41, 42, 1], [43, 44, 1]], [[141, 142, 1], [143, 144, 1]]])


def test_an_obb_output_with_nothing_above_conf_gives_typed_empty_detections():
    dets = decode_with(_obb_output([(160, 96, 40, 20, 0.1, 0.3)]), IDENTITY, _task("obb", extra=1), PREDICT_NMS)
    assert len(dets) == 0 and dets.boxes.shape == (0, 4) and dets.rboxes.shape == (0, 5)


def test_rotated_bounds_are_clipped_to_the_image():
    """Upright 40x20 boxes centred on two corners of the 320x192 image: bounds clip to 0 and to w, h."""
    dets = decode_with(_obb_output([(4, 6, 40, 20, 0.9, 0.0), (316, 186, 40, 20, 0.8, 0.0)]), IDENTITY,
                       _task("obb", extra=1), PREDICT_NMS)
    np.testing.assert_allclose(dets.boxes, [[0, 0, 24, 16], [296, 176, 320, 192]], atol=1e-4)


def test_boxes_wholly_in_the_top_padding_and_rotated_boxes_in_the_side_padding_are_dropped():
    top = fit((100, 640), (192, 320))[0]  # 71 px of padding on top
    assert decode(_output([(160, 30, 20, 20, 0, 0.9), (160, 96, 20, 20, 1, 0.8)]), top, PREDICT_NMS
                  ).class_ids.tolist() == [1]
    side = fit((480, 640), (192, 320))[0]  # 32 px of padding left and right
    dets = decode_with(_obb_output([(10, 96, 8, 8, 0.9, 0.2), (160, 96, 20, 10, 0.8, 0.2)]), side,
                       _task("obb", extra=1), PREDICT_NMS)
    np.testing.assert_allclose(dets.scores, [0.8])

