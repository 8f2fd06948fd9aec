"""What a reported number claims to be: each task's metric and its words, the JSON field each mAP lands in,
and the direction every parity and accuracy gate checks."""

import pytest

from quantlab.description import DETECT, OBB, POSE, SEGMENT, ModelDescription
from quantlab.evaluate import EvalResult, _box_kind, _metric_kind
from quantlab.gates import Check
from quantlab.metrics import MapResult
from quantlab.report import METRIC_WORDS


@pytest.mark.parametrize(
    ("task", "metric", "box_metric", "words"),
    [
        (DETECT, "bbox", "bbox", "box mAP"),
        (SEGMENT, "segm", "bbox", "mask mAP"),
        (POSE, "keypoints", "bbox", "keypoint OKS mAP"),
        (OBB, "obb", "obb", "rotated-box mAP"),  # agreement too compares rotated boxes
    ],
    ids=[DETECT, SEGMENT, POSE, OBB],
)
def test_each_task_is_scored_by_its_own_metric_and_says_so(task, metric, box_metric, words):
    description = ModelDescription(task, {0: "a"}, {SEGMENT: 32, POSE: 51, OBB: 1}.get(task, 0),
                                   (17, 3) if task == POSE else None)
    assert (_metric_kind(description), _box_kind(description)) == (metric, box_metric)
    assert METRIC_WORDS[metric].startswith(words)


def test_each_map_lands_in_the_field_named_for_it():
    """mAP50 0.6 and mAP50-95 0.4 for the task, box mAP50-95 0.3 beside it: no field holds another's number."""
    result = EvalResult(images=2, map=MapResult(0.6, 0.4, {"a": 0.4}), agreement=0.9, parity=None, metric="segm",
                        box_map=MapResult(0.5, 0.3)).as_dict()
    assert (result["map50"], result["map50_95"], result["box_map50_95"]) == (0.6, 0.4, 0.3)
    assert (result["metric"], result["agreement"], result["per_class"]) == ("segm", 0.9, {"a": 0.4})


@pytest.mark.parametrize(
    ("metric", "limit", "passing", "failing"),
    [
        ("box_cosine", 0.99, 0.995, 0.98),  # cosines and agreements are minimums: lower is worse
        ("score_cosine", 0.99, 0.995, 0.98),
        ("task_cosine", 0.98, 0.99, 0.97),
        ("top1_agreement", 0.9, 0.95, 0.85),
        ("agreement", 0.95, 0.96, 0.9),
        ("speedup", 1.3, 1.5, 1.2),
        ("map_drop", 0.01, 0.005, 0.02),  # drops and ratios are maximums: higher is worse
        ("size_ratio", 0.3, 0.27, 0.35),
        ("memory_ratio", 0.8, 0.7, 0.9),
    ],
)
def test_every_gate_checks_its_metric_in_the_right_direction(metric, limit, passing, failing):
    check = Check(metric, limit)
    assert check.fails({"name": "int8", metric: passing}) is None
    message = check.fails({"name": "int8", metric: failing})
    assert message is not None and metric in message
