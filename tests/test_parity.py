"""Output parity against a reference model, part by part, on outputs built by hand."""

import numpy as np
import pytest

from quantlab.description import DETECT, OBB, SEGMENT, ModelDescription
from quantlab.parity import OutputParity, detection_parity, task_cosine


def _parity(num_classes):
    """Parity for a plain detect output with `num_classes` classes."""
    return OutputParity(ModelDescription(DETECT, {i: f"class{i}" for i in range(num_classes)}))


def test_parity_separates_box_and_score_channels():
    rng = np.random.default_rng(0)
    reference = np.concatenate([rng.uniform(0, 320, (1, 4, 100)), rng.uniform(0, 1, (1, 3, 100))], axis=1)
    same = _parity(3).update(reference, reference).compute()
    assert same["boxes"]["cosine"] == pytest.approx(1.0) and same["scores"]["max_abs"] == 0.0
    broken = reference.copy()
    broken[:, 4:] = 0  # every score rounded to zero, as with one INT8 scale over the head's Concat
    result = _parity(3).update(broken, reference).compute()
    assert result["boxes"]["cosine"] == pytest.approx(1.0)
    assert result["scores"]["cosine"] == 0.0
    whole = np.dot(broken.ravel(), reference.ravel()) / (np.linalg.norm(broken) * np.linalg.norm(reference))
    assert whole > 0.99  # one cosine over the whole output would have hidden it


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
    result = _parity(1).update(_yolo(boxes_out, probs), _yolo(boxes_ref, probs)).compute()
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
    parity = _parity(1).update(_yolo(opposite_out, probs), _yolo(opposite_ref, probs))
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
    result = _parity(2).update(_yolo(boxes, np.full((ANCHORS, 2), output)),
                                   _yolo(boxes, np.full((ANCHORS, 2), reference))).compute()
    assert result["scores"]["cosine"] == pytest.approx(cosine)


def test_top1_agreement_counts_anchors_the_reference_is_confident_about():
    """Confident: reference's best probability >= 0.25. Anchors 0-2 are, 3-7 are not."""
    reference = [[0.9, 0.1], [0.25, 0.1], [0.1, 0.6], [0.2, 0.1], [0.0, 0.24]] + [[0.0, 0.0]] * 3
    output = [[0.8, 0.1], [0.1, 0.3], [0.1, 0.7], [0.0, 0.9], [0.9, 0.0]] + [[0.0, 0.5]] * 3  # anchor 1 disagrees
    boxes = np.ones((ANCHORS, 4))
    result = _parity(2).update(_yolo(boxes, output), _yolo(boxes, reference)).compute()
    assert result["top1_agreement"] == pytest.approx(2 / 3)
    nothing_confident = _parity(2).update(_yolo(boxes, output), _yolo(boxes, np.full((ANCHORS, 2), 0.1)))
    assert nothing_confident.compute()["top1_agreement"] is None
    # over images: 2 of 3, then 0 of 1 confident anchors agree -> 2 of 4
    parity = _parity(2).update(_yolo(boxes, output), _yolo(boxes, reference))
    other = np.zeros((ANCHORS, 2))
    other[0] = (0.0, 0.9)
    parity.update(_yolo(boxes, other[:, ::-1]), _yolo(boxes, other))
    assert parity.compute()["top1_agreement"] == pytest.approx(2 / 4)


def test_parity_accumulates_in_float64_whatever_the_output_dtype():
    """Box pixels up to 300 in float16: their squares overflow float16 (max 65504) unless widened first."""
    boxes = np.full((ANCHORS, 4), 300.0)
    probs = np.full((ANCHORS, 1), 0.5)
    output = _yolo(boxes, probs).astype(np.float16)
    result = _parity(1).update(output, output.copy()).compute()
    assert result["boxes"]["cosine"] == pytest.approx(1.0)


def _rows(*rows):
    """End-to-end output (1, 300, 6) from (x1, y1, x2, y2, score, class) rows, the rest zero."""
    out = np.zeros((1, 300, 6), np.float32)
    out[0, :len(rows)] = rows
    return out


E2E = ModelDescription(DETECT, {0: "a", 1: "b"}, end_to_end=True)
REFERENCE_ROWS = [(10, 10, 50, 50, 0.9, 0), (100, 10, 140, 60, 0.8, 1), (200, 50, 240, 90, 0.6, 0)]


def test_end_to_end_rows_are_paired_by_object_not_by_rank():
    """The same three boxes, the last two swapped in rank (scores 0.7 and 0.72): every pair is exact."""
    swapped = [REFERENCE_ROWS[0], (200, 50, 240, 90, 0.72, 0), (100, 10, 140, 60, 0.7, 1)]
    result = OutputParity(E2E).update(_rows(*swapped), _rows(*REFERENCE_ROWS)).compute()
    assert result["boxes"]["cosine"] == pytest.approx(1.0) and result["boxes"]["max_abs"] == 0.0
    assert result["top1_agreement"] == 1.0


def test_a_lost_end_to_end_row_costs_agreement_and_a_lost_score_channel_costs_score_cosine():
    lost = OutputParity(E2E).update(_rows(*REFERENCE_ROWS[:2]), _rows(*REFERENCE_ROWS)).compute()
    assert lost["top1_agreement"] == pytest.approx(2 / 3) and lost["boxes"]["cosine"] == pytest.approx(1.0)
    zeroed = [(*row[:4], 0.0, row[5]) for row in REFERENCE_ROWS]
    assert OutputParity(E2E).update(_rows(*zeroed), _rows(*REFERENCE_ROWS)).compute()["scores"]["cosine"] == 0.0


def test_an_image_without_a_confident_detection_pairs_nothing_and_the_next_one_counts():
    """An empty scene: the reference has no row to pair (its first row here is unsure, 0.3)."""
    parity = OutputParity(E2E).update(_rows((10, 10, 50, 50, 0.3, 0)), _rows((10, 10, 50, 50, 0.2, 0)))
    result = parity.update(_rows(*REFERENCE_ROWS), _rows(*REFERENCE_ROWS)).compute()
    assert result["boxes"]["cosine"] == pytest.approx(1.0) and result["top1_agreement"] == 1.0


# ---- known answers at the edges where a one-line slip changes what is compared or reported ----

def _agreement(candidate_rows, reference_rows, description=E2E):
    return OutputParity(description).update(_rows(*candidate_rows), _rows(*reference_rows)).compute()


@pytest.mark.parametrize(
    ("candidate", "reference", "agreement"),
    [
        # a reference row scored exactly 0.25 is confident (>=), and paired with the same box
        ([(10, 10, 50, 50, 0.9, 0)], [(10, 10, 50, 50, 0.25, 0)], 1.0),
        # below 0.25: no confident row, nothing to agree on
        ([(10, 10, 50, 50, 0.9, 0)], [(10, 10, 50, 50, 0.2499, 0)], None),
        # IoU exactly 0.5 (the candidate is the reference's top half): paired
        ([(0, 0, 100, 50, 0.9, 0)], [(0, 0, 100, 100, 0.9, 0)], 1.0),
        # IoU 0.49: not the same object
        ([(0, 0, 100, 49, 0.9, 0)], [(0, 0, 100, 100, 0.9, 0)], 0.0),
        # the same box, another class: not paired
        ([(10, 10, 50, 50, 0.9, 1)], [(10, 10, 50, 50, 0.9, 0)], 0.0),
    ],
    ids=["confident-at-0.25", "unsure-below-0.25", "iou-0.5-pairs", "iou-0.49-does-not", "other-class"],
)
def test_end_to_end_pairing_edges(candidate, reference, agreement):
    assert _agreement(candidate, reference)["top1_agreement"] == agreement


def test_end_to_end_obb_rows_are_paired_by_their_centre_form():
    """OBB rows are cx cy w h score class angle: read as corners (x2 < x1) they would overlap nothing."""
    obb = ModelDescription(OBB, {0: "a"}, extra_channels=1, end_to_end=True)
    rows = np.zeros((1, 300, 7), np.float32)
    rows[0, 0] = (50, 50, 40, 20, 0.9, 0, 0.3)
    moved = rows.copy()
    moved[0, 0, 6] = 0.4  # same box, angle off by 0.1 rad
    result = OutputParity(obb).update(moved, rows).compute()
    assert result["top1_agreement"] == 1.0
    assert result["angle"]["max_abs"] == pytest.approx(0.1) and result["angle"]["mean_abs"] == pytest.approx(0.1)
    assert result["boxes"]["max_abs"] == 0.0


def test_end_to_end_scores_are_compared_where_either_model_is_sure():
    """Rank 0: both sure (0.9, 0.9); rank 1: only the candidate, at exactly 0.5 (0.5 vs 0.1); rank 2: only the
    reference, at exactly 0.5 (0.1 vs 0.5); ranks 3+: neither (left out). |error| 0, 0.4, 0.4: mean 0.8 / 3."""
    candidate = _rows((0, 0, 10, 10, 0.9, 0), (20, 0, 30, 10, 0.5, 0), (40, 0, 50, 10, 0.1, 0), (60, 0, 70, 10, 0.1, 0))
    reference = _rows((0, 0, 10, 10, 0.9, 0), (20, 0, 30, 10, 0.1, 0), (40, 0, 50, 10, 0.5, 0), (60, 0, 70, 10, 0.3, 0))
    scores = OutputParity(E2E).update(candidate, reference).compute()["scores"]
    assert scores["max_abs"] == pytest.approx(0.4) and scores["mean_abs"] == pytest.approx(0.8 / 3)


def test_end_to_end_scores_lost_where_no_model_is_sure_still_show():
    """Nothing reaches 0.5: every rank is compared, so a candidate that lost its scores has cosine 0, not 1."""
    reference = _rows(*[(10 * i, 0, 10 * i + 8, 8, 0.3, 0) for i in range(3)])
    lost = _rows(*[(10 * i, 0, 10 * i + 8, 8, 0.0, 0) for i in range(3)])
    assert OutputParity(E2E).update(lost, reference).compute()["scores"]["cosine"] == 0.0


def test_end_to_end_parts_and_agreement_accumulate_over_images():
    """Image 1: 3 of 3 rows paired; image 2: 2 of 3 (one lost): 5 of 6. Class ids are paired on, not compared."""
    parity = OutputParity(E2E).update(_rows(*REFERENCE_ROWS), _rows(*REFERENCE_ROWS))
    result = parity.update(_rows(*REFERENCE_ROWS[:2]), _rows(*REFERENCE_ROWS)).compute()
    assert result["top1_agreement"] == pytest.approx(5 / 6)
    assert set(result) == {"boxes", "scores", "top1_agreement"}


def test_a_segment_models_detection_output_alone_is_compared_without_protos():
    seg = ModelDescription(SEGMENT, {0: "a"}, extra_channels=2)
    output = np.concatenate([np.ones((1, 4, ANCHORS)), np.full((1, 1, ANCHORS), 0.5), np.ones((1, 2, ANCHORS))], 1)
    result = OutputParity(seg).update(output, output).compute()
    assert "protos" not in result and result["mask_coefficients"]["cosine"] == pytest.approx(1.0)


def test_segment_protos_are_compared_beside_the_detection_output():
    """The second output (protos) is its own part: negated protos have cosine -1 while every row agrees."""
    seg = ModelDescription(SEGMENT, {0: "a"}, extra_channels=2)
    output = np.concatenate([np.ones((1, 4, ANCHORS)), np.full((1, 1, ANCHORS), 0.5), np.ones((1, 2, ANCHORS))], 1)
    protos = np.arange(1, 2 * 4 * 4 + 1, dtype=np.float32).reshape(1, 2, 4, 4)
    result = OutputParity(seg).update([output, -protos], [output, protos]).compute()
    assert result["protos"]["cosine"] == pytest.approx(-1.0)
    assert result["mask_coefficients"]["cosine"] == pytest.approx(1.0)
    assert task_cosine(result) == pytest.approx(-1.0)


@pytest.mark.parametrize(
    ("result", "expected"),
    [
        # the task's worst part is what a gate on task_cosine must see: protos 0.8, not the coefficients' 0.9
        ({"boxes": {"cosine": 0.5}, "scores": {"cosine": 0.6}, "mask_coefficients": {"cosine": 0.9},
          "protos": {"cosine": 0.8}, "top1_agreement": 0.7}, 0.8),
        ({"boxes": {"cosine": 0.5}, "scores": {"cosine": 0.6}, "keypoints": {"cosine": 0.95},
          "top1_agreement": 0.1}, 0.95),
        # a detect model has no task part: None, never the box or score cosine
        ({"boxes": {"cosine": 0.5}, "scores": {"cosine": 0.6}, "top1_agreement": 0.9}, None),
    ],
    ids=["segment-worst-part", "pose", "detect-none"],
)
def test_task_cosine_is_the_worst_task_part(result, expected):
    assert task_cosine(result) == expected


def test_detection_parity_is_the_first_outputs_entry():
    parity = {"output0": {"boxes": {"cosine": 0.9}}, "output1": {"boxes": {"cosine": 0.1}}}
    assert detection_parity(parity) == {"boxes": {"cosine": 0.9}}
    assert detection_parity(None) == {} and detection_parity({}) == {}
