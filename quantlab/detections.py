"""Decode YOLO outputs per task, class-aware NMS with OpenCV (rotated for OBB), everything mapped back
through the letterbox: boxes, segmentation masks (coefficients times protos), keypoints, rotated boxes.
End-to-end outputs are already selected boxes: they are read, never suppressed again."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from quantlab.description import OBB, POSE, SEGMENT, ModelDescription
from quantlab.preprocess import Letterbox, boxes_to_image, points_to_image

MAX_NMS_CANDIDATES = 30000  # as Ultralytics: the top-scoring candidates that enter NMS
MASK_CHUNK = 64  # masks upsampled at a time, to bound memory on large images


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


def _cxcywh_to_xyxy(boxes: np.ndarray) -> np.ndarray:
    half = boxes[:, 2:4] / 2
    return np.concatenate([boxes[:, :2] - half, boxes[:, :2] + half], axis=1)


def _candidates(probs: np.ndarray, settings: NmsSettings) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(row, class, score) of every candidate above conf, best first, at most MAX_NMS_CANDIDATES."""
    if settings.multi_label:
        row, cls = np.nonzero(probs > settings.conf)
        scores = probs[row, cls]
    else:
        cls = probs.argmax(axis=1)
        scores = probs[np.arange(len(probs)), cls]
        row = np.nonzero(scores > settings.conf)[0]
        cls, scores = cls[row], scores[row]
    order = np.argsort(-scores, kind="stable")[:MAX_NMS_CANDIDATES]
    return row[order], cls[order], scores[order]


def _nms(boxes: np.ndarray, angles: np.ndarray | None, scores: np.ndarray, cls: np.ndarray,
         settings: NmsSettings) -> np.ndarray:
    """Indices kept by class-aware NMS: OpenCV's batched NMS on cx cy w h boxes, or its rotated NMS
    (classes kept apart by moving each class's centres far from the others') when angles are given."""
    if angles is None:
        xyxy = _cxcywh_to_xyxy(boxes)
        xywh = np.concatenate([xyxy[:, :2], xyxy[:, 2:] - xyxy[:, :2]], axis=1)
        keep = cv2.dnn.NMSBoxesBatched(xywh.tolist(), scores.tolist(), cls.tolist(), settings.conf, settings.iou)
    else:
        offset = (np.abs(boxes).max() * 4 + 1) * cls
        rects = [((float(x + o), float(y)), (float(w), float(h)), float(np.degrees(a)))
                 for (x, y, w, h), a, o in zip(boxes, angles, offset)]
        keep = cv2.dnn.NMSBoxesRotated(rects, scores.tolist(), settings.conf, settings.iou)
    return np.asarray(keep, dtype=np.int64).reshape(-1)[: settings.max_det]


def _masks(coefficients: np.ndarray, protos: np.ndarray, xyxy: np.ndarray, geometry: Letterbox) -> np.ndarray:
    """(N, H, W) bool masks in original-image pixels: sigmoid(coefficients @ protos) upsampled to the
    input, cut to each box, the padding removed and resized to the image (Ultralytics' process_mask)."""
    (h, w), (ih, iw) = geometry.image_hw, geometry.input_hw
    c, mh, mw = protos.shape[-3:]
    logits = (coefficients.astype(np.float32) @ protos.reshape(c, -1)).reshape(-1, mh, mw)
    top, left = geometry.pad_top, geometry.pad_left
    bottom, right = top + geometry.content_hw[0], left + geometry.content_hw[1]
    masks = np.zeros((len(logits), h, w), bool)
    ys, xs = np.arange(ih)[:, None] + 0.5, np.arange(iw)[None, :] + 0.5
    for start in range(0, len(logits), MASK_CHUNK):
        chunk = logits[start:start + MASK_CHUNK]
        up = cv2.resize(chunk.transpose(1, 2, 0), (iw, ih), interpolation=cv2.INTER_LINEAR).reshape(ih, iw, -1)
        box = xyxy[start:start + MASK_CHUNK]
        inside = ((xs[..., None] >= box[:, 0]) & (xs[..., None] < box[:, 2])
                  & (ys[..., None] >= box[:, 1]) & (ys[..., None] < box[:, 3]))
        cut = ((up > 0) & inside)[top:bottom, left:right].astype(np.uint8)
        resized = cv2.resize(cut, (w, h), interpolation=cv2.INTER_NEAREST).reshape(h, w, -1)
        masks[start:start + len(chunk)] = resized.transpose(2, 0, 1) > 0
    return masks


def _keypoints(values: np.ndarray, kpt_shape: tuple[int, int], geometry: Letterbox) -> np.ndarray:
    """(N, K, 3) x y confidence in original-image pixels; 2-value keypoints get confidence 1."""
    count, per_point = kpt_shape
    points = values.reshape(-1, count, per_point).astype(np.float32)
    confidence = points[..., 2] if per_point == 3 else np.ones(points.shape[:2], np.float32)
    xy = points_to_image(points[..., :2].reshape(-1, 2), geometry).reshape(-1, count, 2)
    return np.concatenate([xy, confidence[..., None]], axis=2)


def _rotated(boxes: np.ndarray, angles: np.ndarray, geometry: Letterbox) -> tuple[np.ndarray, np.ndarray]:
    """Rotated boxes (cx cy w h angle) in original-image pixels, and their axis-aligned bounds, clipped."""
    centres = points_to_image(boxes[:, :2], geometry)
    rboxes = np.concatenate([centres, boxes[:, 2:4] / geometry.scale, angles[:, None]], axis=1).astype(np.float32)
    corners = np.stack([cv2.boxPoints(((x, y), (w, h), float(np.degrees(a)))) for x, y, w, h, a in rboxes]) \
        if len(rboxes) else np.zeros((0, 4, 2), np.float32)
    bounds = np.concatenate([corners.min(axis=1), corners.max(axis=1)], axis=1)
    h, w = geometry.image_hw
    return rboxes, np.clip(bounds, 0, [w, h, w, h]).astype(np.float32)


def decode(outputs, geometry: Letterbox, description: ModelDescription, settings: NmsSettings = VAL_NMS
           ) -> Detections:
    """Turn a model's raw outputs (a list in the model's order, or the detection output alone for a
    model with one output) into detections in original-image pixels, with the task's parts."""
    outputs = [outputs] if isinstance(outputs, np.ndarray) else list(outputs)
    parts = description.split(outputs[0])
    if description.end_to_end:  # rows already selected and ranked inside the model
        scores = parts["scores"][:, 0]
        rows = np.nonzero(scores > settings.conf)[0][: settings.max_det]
        cls, scores = parts["class_ids"][rows, 0].round().astype(np.int64), scores[rows]
        xyxy = parts["boxes"][rows].astype(np.float32)
    else:
        rows, cls, scores = _candidates(parts["scores"], settings)
        boxes = parts["boxes"][rows].astype(np.float32)
        angles = parts["angle"][rows, 0] if description.task == OBB else None
        keep = _nms(boxes, angles, scores, cls, settings) if len(rows) else np.zeros(0, np.int64)
        rows, cls, scores = rows[keep], cls[keep], scores[keep]
        xyxy = _cxcywh_to_xyxy(boxes[keep])
    found = {"scores": scores.astype(np.float32), "class_ids": cls.astype(np.int64)}
    if description.task == OBB:
        found["rboxes"], found["boxes"] = _rotated(parts["boxes"][rows].astype(np.float32),
                                                   parts["angle"][rows, 0].astype(np.float32), geometry)
    else:
        found["boxes"] = boxes_to_image(xyxy, geometry)
    if description.task == SEGMENT:
        found["masks"] = _masks(parts["mask_coefficients"][rows], outputs[1][0], xyxy, geometry)
    if description.task == POSE:
        found["keypoints"] = _keypoints(parts["keypoints"][rows], description.kpt_shape, geometry)
    return Detections(**found)
