"""Accuracy against labels or a reference's detections: mAP through pycocotools' COCOeval."""

from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass, field, replace

import cv2
import numpy as np
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from quantlab.datasets import Labels
from quantlab.detections import Detections, opencv_rect
from quantlab.errors import ConfigError

MAX_DETS = 300  # detections per image that count, as Ultralytics' val (COCOeval keeps 100, 20 for keypoints)
KINDS = ("bbox", "segm", "keypoints", "obb")
# COCO's person keypoint sigmas (nose, eyes, ears, shoulders, elbows, wrists, hips, knees, ankles)
COCO_KPT_SIGMAS = np.array([.26, .25, .25, .35, .35, .79, .79, .72, .72, .62, .62, 1.07, 1.07, .87, .87, .89, .89]) / 10
OKS_AREA_SCALE = 0.53  # OKS object area = box area x 0.53, as Ultralytics (labels have no segment area)
KEYPOINT_CONF = 0.5  # a reference model's keypoint counts as present from this confidence on


@dataclass(frozen=True)
class MapResult:
    """COCO-style AP: map50 at IoU 0.5, map50_95 averaged over IoU 0.50:0.95; per_class AP50-95."""

    map50: float
    map50_95: float
    per_class: dict[str, float] = field(default_factory=dict)
    images: int = 0


class DetectionMAP:
    """Accumulates predictions and truth image by image; compute() runs COCOeval once.

    kind: what a prediction is matched by: "bbox" box IoU, "segm" mask IoU, "keypoints" OKS (pose),
    "obb" rotated-box IoU. kpt_sigmas: (K,) OKS sigmas; by default COCO's when K == 17, else 1/K each
    (as Ultralytics). Truth objects without a present keypoint are ignored, as COCOeval does: missing
    them costs nothing and a prediction on them is no false positive.
    """

    def __init__(self, names: dict[int, str], kind: str = "bbox", kpt_sigmas: np.ndarray | None = None):
        if kind not in KINDS:
            raise ConfigError(f"mAP kind {kind!r} is not valid: choose one of {', '.join(KINDS)}")
        self.names = dict(names)
        self.kind = kind
        self.kpt_sigmas = None if kpt_sigmas is None else np.asarray(kpt_sigmas, np.float64)
        self._images: list[dict] = []
        self._targets: list[dict] = []
        self._predictions: list[dict] = []

    def update(self, predicted: Detections, truth: Labels | Detections) -> DetectionMAP:
        """One image's predictions and truth (its labels, or a reference model's detections), in its pixels.

        Both need the kind's part (masks, keypoints or rboxes) where they have objects.
        """
        if self.kind == "keypoints" and isinstance(truth, Detections) and truth.keypoints is not None:
            truth = _confident_keypoints(truth)
        image_id = len(self._images) + 1
        self._images.append({"id": image_id, **self._image_size(predicted, truth)})
        for target in self._annotations(truth, image_id, "truth"):
            self._targets.append({**target, "id": len(self._targets) + 1, "iscrowd": 0,
                                  **_target_extras(self.kind, target)})
        for prediction, score in zip(self._annotations(predicted, image_id, "predicted"), predicted.scores):
            self._predictions.append({**prediction, "score": float(score)})
        return self

    def _annotations(self, objects, image_id: int, role: str) -> list[dict]:
        """COCO annotations of one image's objects: box, class and the kind's part."""
        if len(objects.boxes) and self.kind != "bbox" and getattr(objects, _PART_OF[self.kind]) is None:
            raise ValueError(f"mAP of kind {self.kind!r} needs {role} {_PART_OF[self.kind]}, but they are None")
        return [{"image_id": image_id, "category_id": int(cls), "bbox": _xywh(box), **_part(self.kind, objects, i)}
                for i, (box, cls) in enumerate(zip(objects.boxes, objects.class_ids))]

    def _image_size(self, predicted: Detections, truth) -> dict:
        """{'height', 'width'} for masks (pycocotools reads them); both masks must be the image's size."""
        if self.kind != "segm":
            return {}
        sizes = {m.shape[1:] for m in (predicted.masks, truth.masks) if m is not None and len(m)}
        if not sizes:
            return {}
        if len(sizes) > 1:
            raise ValueError(f"predicted and truth masks differ in size: {sorted(sizes)}; both must be the image's")
        (height, width), = sizes
        return {"height": height, "width": width}

    @property
    def has_targets(self) -> bool:
        """Whether any truth object can be scored (for keypoints: has a present keypoint)."""
        return any(map(_scored, self._targets))

    def compute(self) -> MapResult:
        if not self.has_targets:
            raise ValueError(f"mAP is undefined without any target {_TARGET_NOUN[self.kind]}")
        if not self._predictions:
            return MapResult(0.0, 0.0, {name: 0.0 for name in self.names.values()}, len(self._images))
        evaluation = self._evaluate()
        params = evaluation.params
        # precision: (IoU thresholds, recall points, classes, area ranges, max dets); -1 where undefined
        precision = evaluation.eval["precision"][..., params.areaRngLbl.index("all"), params.maxDets.index(MAX_DETS)]
        present = {t["category_id"] for t in self._targets if _scored(t)}
        per_class = {self.names[cat_id]: _mean_defined(precision[:, :, k])
                     for k, cat_id in enumerate(params.catIds) if cat_id in present}
        return MapResult(_mean_defined(precision[0]), _mean_defined(precision), per_class, len(self._images))

    def _evaluate(self) -> COCOeval:
        categories = [{"id": i, "name": n} for i, n in self.names.items()]
        with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints its progress
            truth = COCO()
            truth.dataset = {"images": self._images, "annotations": self._targets, "categories": categories}
            truth.createIndex()
            if self.kind == "obb":
                evaluation = _RotatedCOCOeval(truth, truth.loadRes(self._predictions), iouType="bbox")
            else:
                evaluation = COCOeval(truth, truth.loadRes(self._predictions), iouType=self.kind)
            evaluation.params.maxDets = [MAX_DETS]
            if self.kind == "keypoints":
                evaluation.params.kpt_oks_sigmas = self._sigmas()
            evaluation.evaluate()
            evaluation.accumulate()
        return evaluation

    def _sigmas(self) -> np.ndarray:
        """The OKS sigmas for the K keypoints every object has."""
        counts = {len(a["keypoints"]) // 3 for a in self._targets + self._predictions}
        if len(counts) != 1:
            raise ValueError(f"objects have different keypoint counts: {sorted(counts)}")
        (count,) = counts
        default = COCO_KPT_SIGMAS if count == len(COCO_KPT_SIGMAS) else np.full(count, 1 / count)
        sigmas = default if self.kpt_sigmas is None else self.kpt_sigmas
        if sigmas.shape != (count,):
            raise ValueError(f"kpt_sigmas has shape {sigmas.shape}, but the objects have {count} keypoints")
        return sigmas


_PART_OF = {"segm": "masks", "keypoints": "keypoints", "obb": "rboxes"}
_TARGET_NOUN = {"bbox": "box", "segm": "mask", "keypoints": "with a present keypoint", "obb": "rotated box"}


def _xywh(box: np.ndarray) -> list[float]:
    x1, y1, x2, y2 = np.asarray(box, np.float64).tolist()
    return [x1, y1, x2 - x1, y2 - y1]


def _part(kind: str, objects, index: int) -> dict:
    """The kind's annotation fields for object `index`: an RLE mask, flat keypoints, or the rotated box."""
    if kind == "segm":
        return {"segmentation": mask_utils.encode(np.asfortranarray(objects.masks[index].astype(np.uint8)))}
    if kind == "keypoints":
        return {"keypoints": objects.keypoints[index].astype(np.float64).ravel().tolist()}
    if kind == "obb":
        return {"rbox": objects.rboxes[index].astype(np.float64).tolist()}
    return {}


def _target_extras(kind: str, target: dict) -> dict:
    """A truth object's area (OKS scales by it) and, for keypoints, how many are present."""
    width, height = target["bbox"][2:]
    if kind == "segm":
        return {"area": float(mask_utils.area(target["segmentation"]))}
    if kind == "keypoints":
        present = int(np.count_nonzero(np.asarray(target["keypoints"][2::3]) > 0))
        return {"area": width * height * OKS_AREA_SCALE, "num_keypoints": present}
    if kind == "obb":
        return {"area": target["rbox"][2] * target["rbox"][3]}
    return {"area": width * height}


def _scored(target: dict) -> bool:
    """COCOeval ignores a keypoint target without a present keypoint; every other target counts."""
    return target.get("num_keypoints", 1) > 0


def _confident_keypoints(detections: Detections) -> Detections:
    """A reference model's detections as truth: a keypoint is present (2) from KEYPOINT_CONF on, else absent (0)."""
    keypoints = detections.keypoints.copy()
    keypoints[..., 2] = np.where(keypoints[..., 2] >= KEYPOINT_CONF, 2, 0)
    return replace(detections, keypoints=keypoints)


def _mean_defined(precision: np.ndarray) -> float:
    defined = precision[precision > -1]
    return float(defined.mean()) if defined.size else 0.0


class _RotatedCOCOeval(COCOeval):
    """COCOeval matching by rotated-box IoU (annotations carry 'rbox'); pycocotools' matching and AP otherwise."""

    def computeIoU(self, imgId, catId):  # pycocotools' names
        truth, found = self._gts[imgId, catId], self._dts[imgId, catId]  # per class: DetectionMAP keeps useCats
        if not truth and not found:
            return []
        # rows in evaluateImg's order: highest score first, at most maxDets
        order = np.argsort([-d["score"] for d in found], kind="mergesort")[:self.params.maxDets[-1]]
        return rotated_iou(np.array([found[i]["rbox"] for i in order]).reshape(-1, 5),
                           np.array([t["rbox"] for t in truth]).reshape(-1, 5))


def rotated_iou(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """(A, 5) and (B, 5) cx cy w h angle-radians -> (A, B) IoU, intersections by cv2.rotatedRectangleIntersection."""
    return np.array([[_pair_rotated_iou(a, b) for b in second] for a in first]).reshape(len(first), len(second))


def _pair_rotated_iou(first: np.ndarray, second: np.ndarray) -> float:
    area_first, area_second = first[2] * first[3], second[2] * second[3]
    if area_first <= 0 or area_second <= 0:  # a degenerate box overlaps nothing (and OpenCV may refuse it)
        return 0.0
    overlap, corners = cv2.rotatedRectangleIntersection(opencv_rect(first), opencv_rect(second))
    if overlap == cv2.INTERSECT_NONE or corners is None:
        return 0.0
    # OpenCV documents no order for the corners (recent versions sort them, old ones did not);
    # the intersection of two rectangles is convex, so its hull is that polygon in order
    intersection = cv2.contourArea(cv2.convexHull(corners))
    return float(intersection / (area_first + area_second - intersection))

