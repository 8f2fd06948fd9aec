"""Accuracy against labels or a reference's detections: mAP through pycocotools' COCOeval."""

from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass, field

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from quantlab.detections import Detections



@dataclass(frozen=True)
class MapResult:
    """COCO-style AP: map50 at IoU 0.5, map50_95 averaged over IoU 0.50:0.95; per_class AP50-95."""

    map50: float
    map50_95: float
    per_class: dict[str, float] = field(default_factory=dict)
    images: int = 0


class DetectionMAP:
    """Accumulates detections and targets image by image; compute() runs COCOeval once."""

    def __init__(self, names: dict[int, str]):
        self.names = dict(names)
        self._images: list[dict] = []
        self._targets: list[dict] = []
        self._predictions: list[dict] = []

    def update(self, predicted: Detections, target_boxes: np.ndarray, target_classes: np.ndarray) -> DetectionMAP:
        """predicted and target boxes: (N, 4) x1 y1 x2 y2 in the same image's pixels."""
        image_id = len(self._images) + 1
        self._images.append({"id": image_id})
        for box, cls in zip(np.asarray(target_boxes, np.float64).reshape(-1, 4), target_classes):
            w, h = box[2] - box[0], box[3] - box[1]
            self._targets.append({"id": len(self._targets) + 1, "image_id": image_id, "category_id": int(cls),
                                  "bbox": [box[0], box[1], w, h], "area": w * h, "iscrowd": 0})
        for box, score, cls in zip(predicted.boxes.astype(np.float64), predicted.scores, predicted.class_ids):
            self._predictions.append({"image_id": image_id, "category_id": int(cls), "score": float(score),
                                      "bbox": [box[0], box[1], box[2] - box[0], box[3] - box[1]]})
        return self

    @property
    def has_targets(self) -> bool:
        return bool(self._targets)

    def compute(self) -> MapResult:
        if not self._targets:
            raise ValueError("mAP is undefined without any target box")
        if not self._predictions:
            return MapResult(0.0, 0.0, {name: 0.0 for name in self.names.values()}, len(self._images))
        categories = [{"id": i, "name": n} for i, n in self.names.items()]
        with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints its progress
            truth = COCO()
            truth.dataset = {"images": self._images, "annotations": self._targets, "categories": categories}
            truth.createIndex()
            evaluation = COCOeval(truth, truth.loadRes(self._predictions), iouType="bbox")
            evaluation.params.maxDets = [1, 10, 300]
            evaluation.evaluate()
            evaluation.accumulate()
        # precision: (IoU thresholds, recall points, classes, area ranges, max dets); -1 where undefined
        precision = evaluation.eval["precision"][:, :, :, 0, -1]
        present = {t["category_id"] for t in self._targets}
        per_class = {self.names[cat_id]: _mean_defined(precision[:, :, k])
                     for k, cat_id in enumerate(evaluation.params.catIds) if cat_id in present}
        return MapResult(_mean_defined(precision[0]), _mean_defined(precision), per_class, len(self._images))


def _mean_defined(precision: np.ndarray) -> float:
    defined = precision[precision > -1]
    return float(defined.mean()) if defined.size else 0.0
