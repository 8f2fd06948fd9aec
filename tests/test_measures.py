"""quantlab.measures: the metrics table, and one variant's record built from hand-made evaluations whose
answers are computed here by hand; the record reads back from a pytest-benchmark file as it was written."""

import json
import math

import pytest

from quantlab.benchjson import OPTIONAL_NUMBERS, load_run
from quantlab.evaluate import EvalResult
from quantlab.gates import BUDGET_NAMES, Budgets
from quantlab.measures import BUDGETED, METRICS, Measures, measure
from quantlab.memory import MemoryUse
from quantlab.metrics import MapResult
from quantlab.report import SCHEMA_PATH


def _part(cosine: float) -> dict:
    return {"cosine": cosine, "max_abs": 0.1, "mean_abs": 0.01}


def _evaluation(map50_95: float | None, parts: dict | None, agreement: float | None = 0.97) -> EvalResult:
    return EvalResult(images=8, map=MapResult(0.9, map50_95) if map50_95 is not None else None,
                      agreement=agreement, parity={"output0": parts} if parts is not None else None,
                      metric="keypoints", box_map=MapResult(0.8, 0.6) if map50_95 is not None else None)


def _memory(session_bytes: int) -> MemoryUse:
    return MemoryUse(session_bytes, 100_000_000, 0.02, 3, True)


# a pose model's parity: boxes, scores and keypoints; the keypoints are the task's own part
POSE_PARTS = {"boxes": _part(0.9995), "scores": _part(0.991), "keypoints": _part(0.962), "top1_agreement": 0.97}


def test_a_record_holds_the_variants_numbers_against_the_reference():
    record = measure("auto", "onnxruntime", True, "pose", {"name": "auto"}, size_bytes=2_500_000,
                     reference_size=10_000_000, evaluation=_evaluation(0.61, POSE_PARTS),
                     reference=_evaluation(0.64, None), memory=_memory(30_000_000),
                     reference_memory=_memory(40_000_000), speedup=1.8)
    assert record.size_ratio == 0.25
    assert math.isclose(record.map_drop, 0.03)  # the reference's mAP50-95 minus the variant's: a loss is positive
    assert (record.map50, record.map50_95, record.box_map50_95) == (0.9, 0.61, 0.6)
    assert (record.box_cosine, record.score_cosine, record.top1_agreement) == (0.9995, 0.991, 0.97)
    assert record.task_cosine == 0.962  # the keypoints' cosine, not the scores'
    assert record.memory_ratio == 0.75 and record.memory_bytes == 30_000_000 and record.memory_spread == 0.02
    assert record.labelled and record.gated and record.speedup == 1.8


def test_the_task_cosine_is_the_lowest_of_the_tasks_own_parts():
    parts = {**POSE_PARTS, "scores": _part(0.90), "mask_coefficients": _part(0.95), "protos": _part(0.97)}
    record = measure("auto", "onnxruntime", True, "segment", None, 1, 1, _evaluation(None, parts),
                     _evaluation(None, None))
    assert record.task_cosine == 0.95 and record.score_cosine == 0.90
    detect = {k: v for k, v in POSE_PARTS.items() if k != "keypoints"}
    assert measure("auto", "onnxruntime", True, "detect", None, 1, 1, _evaluation(None, detect),
                   _evaluation(None, None)).task_cosine is None  # a detect model has no part of its own


def test_without_labels_or_memory_those_numbers_are_absent_not_zero():
    record = measure("dynamic", "onnxruntime", False, "detect", None, 3_000_000, 10_000_000,
                     _evaluation(None, POSE_PARTS, agreement=0.93), _evaluation(None, None))
    assert (record.map50, record.map50_95, record.map_drop, record.memory_ratio, record.speedup) == (None,) * 5
    assert not record.labelled and record.agreement == 0.93


def test_every_metric_is_a_record_field_and_every_budget_an_option_of_the_gates():
    assert {m.name for m in METRICS} <= set(Measures.__dataclass_fields__)
    assert BUDGET_NAMES == tuple(m.budget_name for m in BUDGETED)
    assert set(Budgets().as_dict()) == set(BUDGET_NAMES)


def test_the_report_schema_describes_every_metric():
    variant = json.loads(SCHEMA_PATH.read_text())["$defs"]["variant"]["properties"]
    budgets = json.loads(SCHEMA_PATH.read_text())["properties"]["budgets"]["properties"]
    assert {m.name for m in METRICS} <= set(variant)
    assert set(BUDGET_NAMES) <= set(budgets)


def test_the_report_schema_names_every_runtime():
    """A report with a variant on any runtime quantlab runs (tensorrt included) validates."""
    from quantlab.sessions import RUNTIMES

    variant = json.loads(SCHEMA_PATH.read_text())["$defs"]["variant"]["properties"]
    assert set(variant["runtime"]["enum"]) == set(RUNTIMES)


def test_a_record_in_extra_info_reads_back_as_written(tmp_path):
    record = measure("auto", "onnxruntime", True, "pose", {"name": "auto"}, 2_500_000, 10_000_000,
                     _evaluation(0.61, POSE_PARTS), _evaluation(0.64, None), _memory(30_000_000),
                     _memory(40_000_000), speedup=1.8)
    bench = {"name": "test_latency[auto]", "extra_info": record.as_dict(),
             "stats": {"median": 0.005, "q1": 0.0049, "q3": 0.0051, "stddev": 0.0001, "rounds": 100}}
    path = tmp_path / "run.json"
    path.write_text(json.dumps({"datetime": "2026-12-07T10:00:00+00:00", "benchmarks": [bench]}))
    read = load_run(path).variants["auto"]
    assert read.metrics == {k: record.as_dict()[k] for k in OPTIONAL_NUMBERS}
    assert (read.speedup, read.size_bytes, read.gated) == (1.8, 2_500_000, True)


@pytest.mark.parametrize("metric", [m for m in METRICS if m.budget], ids=lambda m: m.name)
def test_each_budgets_default_lies_in_its_own_range(metric):
    if metric.budget.default is not None:
        Budgets(**{metric.budget_name: metric.budget.default})  # raises if outside
    low, high = metric.valid
    assert metric.budget.default is None or low <= metric.budget.default <= high
