"""Decode YOLOv8 outputs, class-aware NMS with OpenCV, boxes mapped back through the letterbox."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from quantlab.errors import ModelError
from quantlab.preprocess import Letterbox, boxes_to_image

MAX_NMS_CANDIDATES = 30000  # as Ultralytics: the top-scoring candidates that enter NMS


@dataclass(frozen=True)
class NmsSettings:
    """conf: minimum class probability; iou: NMS overlap threshold; multi_label: one row per class above conf."""

    conf: float
    iou: float
    max_det: int = 300
    multi_label: bool = False


VAL_NMS = NmsSettings(conf=0.001, iou=0.7, max_det=300, multi_label=True)  # Ultralytics val defaults
PREDICT_NMS = NmsSettings(conf=0.25, iou=0.7, max_det=300)  # Ultralytics predict defaults


@dataclass(frozen=True)
class Detections:
    """boxes: (N, 4) float32 x1 y1 x2 y2 in original-image pixels; scores: (N,) float32; class_ids: (N,) int64.

    Each task adds its own part, None where the task has none, all in original-image pixels:
    masks (N, H, W) bool (segment), keypoints (N, K, 3) float32 x y confidence (pose),
    rboxes (N, 5) float32 cx cy w h angle in radians (obb; boxes then hold their axis-aligned bounds).
    """

    boxes: np.ndarray
    scores: np.ndarray
    class_ids: np.ndarray
    masks: np.ndarray | None = None
    keypoints: np.ndarray | None = None
    rboxes: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.scores)

    @classmethod
    def empty(cls) -> Detections:
        return cls(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64))


def split_output(output: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(1, 4+nc, N) or (1, N, 4+nc) -> boxes (N, 4) cx cy w h in input pixels, class probs (N, nc)."""
    if output.ndim != 3 or output.shape[0] != 1 or min(output.shape[1:]) < 5:
        raise ModelError(f"output of shape {list(output.shape)} is not a YOLOv8 detection output (1, 4+nc, N)")
    rows = output[0] if output.shape[1] <= output.shape[2] else output[0].T  # anchors outnumber channels
    return rows[:4].T, rows[4:].T


def _cxcywh_to_xyxy(boxes: np.ndarray) -> np.ndarray:
    half = boxes[:, 2:4] / 2
    return np.concatenate([boxes[:, :2] - half, boxes[:, :2] + half], axis=1)


def decode(output: np.ndarray, geometry: Letterbox, settings: NmsSettings = VAL_NMS) -> Detections:
    """Turn one raw YOLOv8 output into detections in original-image pixels."""
    boxes, probs = split_output(output)
    if settings.multi_label:
        anchor, cls = np.nonzero(probs > settings.conf)
        scores = probs[anchor, cls]
    else:
        cls = probs.argmax(axis=1)
        scores = probs[np.arange(len(probs)), cls]
        anchor = np.nonzero(scores > settings.conf)[0]
        cls, scores = cls[anchor], scores[anchor]
    if anchor.size == 0:
        return Detections.empty()
    order = np.argsort(-scores, kind="stable")[:MAX_NMS_CANDIDATES]
    anchor, cls, scores = anchor[order], cls[order], scores[order]
    xyxy = _cxcywh_to_xyxy(boxes[anchor].astype(np.float32))
    xywh = np.concatenate([xyxy[:, :2], xyxy[:, 2:] - xyxy[:, :2]], axis=1)
    keep = cv2.dnn.NMSBoxesBatched(xywh.tolist(), scores.tolist(), cls.tolist(), settings.conf, settings.iou)
    keep = np.asarray(keep, dtype=np.int64).reshape(-1)[: settings.max_det]
    return Detections(boxes_to_image(xyxy[keep], geometry), scores[keep].astype(np.float32),
                      cls[keep].astype(np.int64))
