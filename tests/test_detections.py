"""Decoding YOLOv8 outputs and class-aware NMS, on outputs built by hand."""

import numpy as np
import pytest

from quantlab.detections import MAX_NMS_CANDIDATES, PREDICT_NMS, Detections, VAL_NMS, NmsSettings, decode, split_output
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
    with pytest.raises(ModelError, match=rf"output of shape \[{', '.join(map(str, shape))}\] is not a YOLOv8"):
        split_output(np.zeros(shape, np.float32))


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
