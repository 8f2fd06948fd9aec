"""Output parity: how a model's raw outputs compare with a reference model's, part by part.

One cosine over a whole YOLO output is dominated by box pixels and hides a broken score channel,
so each real part of the detection output (boxes, class scores, then mask coefficients, keypoints
or the angle) is compared on its own, and a segmentation model's proto output beside them.
End-to-end outputs are ranked selections, not anchors: their scores are compared rank by rank (where
one model is sure of its row, see _sure_ranks), and
their boxes and task values only for the reference's confident rows, each paired with the
candidate's row of the same class that overlaps it most (IoU >= 0.5); 'top1_agreement' is then the
fraction of confident reference rows that found such a pair.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from pycocotools import mask as mask_utils

from quantlab.description import OBB, SEGMENT, ModelDescription
from quantlab.detections import cxcywh_to_xyxy, xyxy_to_xywh

CONFIDENT_SCORE = 0.25  # rows the reference model is confident about, for top-1 agreement and row pairing
PAIR_IOU = 0.5  # an end-to-end candidate row is the reference row's object from this IoU on
SURE_SCORE = 0.5  # end-to-end scores compared where one model is at least this sure
PROTOS = "protos"


@dataclass(frozen=True)
class ChannelParity:
    """How one group of output channels compares to the reference: cosine, max and mean |error|."""

    cosine: float
    max_abs: float
    mean_abs: float

    def as_dict(self) -> dict:
        return {"cosine": self.cosine, "max_abs": self.max_abs, "mean_abs": self.mean_abs}


class _Accumulator:
    def __init__(self):
        self.dot = self.norm_a = self.norm_b = self.abs_sum = 0.0
        self.max_abs = 0.0
        self.count = 0

    def add(self, a: np.ndarray, b: np.ndarray) -> None:
        a, b = a.astype(np.float64).ravel(), b.astype(np.float64).ravel()
        diff = np.abs(a - b)
        self.dot += float(a @ b)
        self.norm_a += float(a @ a)
        self.norm_b += float(b @ b)
        self.abs_sum += float(diff.sum())
        self.max_abs = max(self.max_abs, float(diff.max(initial=0.0)))
        self.count += a.size

    def result(self) -> ChannelParity:
        denom = np.sqrt(self.norm_a * self.norm_b)
        cosine = self.dot / denom if denom > 0 else float(self.norm_a == self.norm_b)
        return ChannelParity(float(cosine), self.max_abs, self.abs_sum / max(self.count, 1))


def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(len(a), len(b)) IoU of x1 y1 x2 y2 boxes, by pycocotools; neither may be empty."""
    return np.asarray(mask_utils.iou(xyxy_to_xywh(a).astype(np.float64), xyxy_to_xywh(b).astype(np.float64),
                                     np.zeros(len(b), np.uint8)))


def _paired_rows(parts: dict, reference: dict, centred: bool) -> tuple[np.ndarray, np.ndarray]:
    """End-to-end rows: the reference's confident rows, and for each the candidate's row of the same
    class that overlaps it most, at IoU >= PAIR_IOU (-1 where there is none: a detection gained or lost
    is agreement's business, not a numeric difference). centred: boxes are cx cy w h (OBB rows,
    paired by their unrotated extent), else x1 y1 x2 y2."""
    confident = np.nonzero(reference["scores"][:, 0] >= CONFIDENT_SCORE)[0]
    theirs, mine = reference["boxes"][confident], parts["boxes"]
    if centred:
        theirs, mine = cxcywh_to_xyxy(theirs), cxcywh_to_xyxy(mine)
    if not len(theirs) or not len(mine):  # no confident row, or no row at all in the candidate
        return confident, np.full(len(confident), -1)
    iou = _iou(theirs, mine)
    iou[reference["class_ids"][confident, 0][:, None] != parts["class_ids"][None, :, 0]] = -1
    best = iou.argmax(axis=1)
    return confident, np.where(iou[np.arange(len(confident)), best] >= PAIR_IOU, best, -1)


def _sure_ranks(scores: np.ndarray, reference: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """End-to-end scores rank by rank where either model is sure (>= SURE_SCORE), else every rank: a
    detection near an in-graph confidence threshold (0.25 in nms=True exports) shows in one model and
    not the other, which is agreement's business; a head that lost its scores still shows as zeros."""
    sure = (scores >= SURE_SCORE) | (reference >= SURE_SCORE)
    return (scores[sure], reference[sure]) if sure.any() else (scores, reference)


def detection_parity(parity: dict | None) -> dict:
    """The detection output's entry in an evaluation's {output name: parity}; {} without a reference."""
    return next(iter((parity or {}).values()), {})


def task_cosine(result: dict) -> float | None:
    """The lowest cosine among the task's own parts (mask coefficients, protos, keypoints, angle) in a
    compute() result; None for a detect model, which has none."""
    cosines = [part["cosine"] for name, part in result.items()
               if isinstance(part, dict) and name not in ("boxes", "scores")]
    return min(cosines) if cosines else None


class OutputParity:
    """Compares a model's outputs with a reference's, part by part (see the module docstring)."""

    def __init__(self, description: ModelDescription):
        self.description = description
        self._parts: dict[str, _Accumulator] = {}
        self._agree = 0
        self._confident = 0

    def _add(self, name: str, a: np.ndarray, b: np.ndarray) -> None:
        self._parts.setdefault(name, _Accumulator()).add(a, b)

    def update(self, outputs: Sequence[np.ndarray] | np.ndarray,
               references: Sequence[np.ndarray] | np.ndarray) -> OutputParity:
        """outputs and references: the two models' outputs in the model's order (or the detection output alone)."""
        outputs = [outputs] if isinstance(outputs, np.ndarray) else list(outputs)
        references = [references] if isinstance(references, np.ndarray) else list(references)
        parts, reference = self.description.split(outputs[0]), self.description.split(references[0])
        if self.description.end_to_end:
            self._add("scores", *_sure_ranks(parts["scores"][:, 0], reference["scores"][:, 0]))
            confident, paired = _paired_rows(parts, reference, self.description.task == OBB)
            for name in set(parts) - {"scores", "class_ids"}:
                self._add(name, parts[name][paired[paired >= 0]], reference[name][confident[paired >= 0]])
            self._agree += int((paired >= 0).sum())
            self._confident += len(confident)
        else:
            for name in parts:
                self._add(name, parts[name], reference[name])
            confident = reference["scores"].max(axis=1) >= CONFIDENT_SCORE
            self._agree += int((parts["scores"][confident].argmax(1) == reference["scores"][confident].argmax(1)).sum())
            self._confident += int(confident.sum())
        if self.description.task == SEGMENT and len(outputs) > 1 and len(references) > 1:
            self._add(PROTOS, outputs[1], references[1])
        return self

    def compute(self) -> dict:
        """{part: {'cosine', 'max_abs', 'mean_abs'}} for 'boxes', 'scores' and the task's parts, and
        'top1_agreement': the fraction of confident reference rows whose class the model gives too, or None."""
        result = {name: acc.result().as_dict() for name, acc in self._parts.items()}
        result["top1_agreement"] = self._agree / self._confident if self._confident else None
        return result
