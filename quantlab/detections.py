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
MIN_ROTATED_SIDE = 0.01  # px: a thinner rotated box is a line


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


def cxcywh_to_xyxy(boxes: np.ndarray) -> np.ndarray:
    """(N, 4) centre, width, height -> (N, 4) corners x1 y1 x2 y2."""
    half = boxes[:, 2:4] / 2
    return np.concatenate([boxes[:, :2] - half, boxes[:, :2] + half], axis=1)


def xyxy_to_xywh(boxes: np.ndarray) -> np.ndarray:
    """(N, 4) corners x1 y1 x2 y2 -> (N, 4) x y w h, the form OpenCV's NMS and pycocotools take."""
    return np.concatenate([boxes[:, :2], boxes[:, 2:4] - boxes[:, :2]], axis=1)


def opencv_rect(rbox) -> tuple:
    """A rotated box cx cy w h angle-radians as OpenCV's RotatedRect ((cx, cy), (w, h), angle-degrees);
    both turn x towards y, so the angle needs no sign change."""
    cx, cy, w, h, angle = (float(v) for v in rbox)
    return (cx, cy), (w, h), float(np.degrees(angle))


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
    """Indices kept by class-aware NMS, best first: OpenCV's batched NMS on cx cy w h boxes, or its
    rotated NMS class by class when angles are given."""
    if angles is None:
        xywh = xyxy_to_xywh(cxcywh_to_xyxy(boxes))
        keep = cv2.dnn.NMSBoxesBatched(xywh.tolist(), scores.tolist(), cls.tolist(), settings.conf, settings.iou)
        return np.asarray(keep, dtype=np.int64).reshape(-1)[: settings.max_det]
    kept = []
    for label in np.unique(cls):
        members = np.nonzero(cls == label)[0]
        rects = [opencv_rect((*box, angle)) for box, angle in zip(boxes[members], angles[members])]
        kept.extend(members[np.asarray(cv2.dnn.NMSBoxesRotated(rects, scores[members].tolist(), settings.conf,
                                                               settings.iou), dtype=np.int64).reshape(-1)])
    kept = np.asarray(kept, dtype=np.int64)
    return kept[np.argsort(-scores[kept], kind="stable")][: settings.max_det]


def _masks(coefficients: np.ndarray, protos: np.ndarray, boxes: np.ndarray, geometry: Letterbox) -> np.ndarray:
    """(N, H, W) bool masks in original-image pixels: sigmoid(coefficients @ protos) > 0.5 inside each
    box (Ultralytics' process_mask), the protos sampled bilinearly at each box pixel's centre, so the work
    is the boxes' area, not N whole images. boxes: x1 y1 x2 y2 in original-image pixels."""
    h, w = geometry.image_hw
    c, mh, mw = protos.shape[-3:]
    logits = (coefficients.astype(np.float32) @ protos.reshape(c, -1)).reshape(-1, mh, mw)
    masks = np.zeros((len(logits), w, h), bool).transpose(0, 2, 1)  # each mask column-major, as RLE wants
    # image pixel centre (col + 0.5) -> input pixels -> proto cell coordinates, an affine map per axis
    step_x, step_y = geometry.scale * mw / geometry.input_hw[1], geometry.scale * mh / geometry.input_hw[0]
    start_x = (0.5 * geometry.scale + geometry.pad_left) * mw / geometry.input_hw[1] - 0.5
    start_y = (0.5 * geometry.scale + geometry.pad_top) * mh / geometry.input_hw[0] - 0.5
    for mask, logit, (x1, y1, x2, y2) in zip(masks, logits, boxes):
        first_col, last_col = int(np.ceil(x1 - 0.5)), int(np.ceil(x2 - 0.5))  # pixels whose centre is inside
        first_row, last_row = int(np.ceil(y1 - 0.5)), int(np.ceil(y2 - 0.5))
        if last_col <= first_col or last_row <= first_row:
            continue
        to_proto = np.array([[step_x, 0, start_x + step_x * first_col], [0, step_y, start_y + step_y * first_row]])
        sampled = cv2.warpAffine(logit, to_proto, (last_col - first_col, last_row - first_row),
                                 flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_REPLICATE)
        mask[first_row:last_row, first_col:last_col] = sampled > 0
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
    corners = np.stack([cv2.boxPoints(opencv_rect(r)) for r in rboxes]) if len(rboxes) else np.zeros((0, 4, 2))
    bounds = np.concatenate([corners.min(axis=1), corners.max(axis=1)], axis=1)
    h, w = geometry.image_hw
    return rboxes, np.clip(bounds, 0, [w, h, w, h]).astype(np.float32)


def decode(outputs, geometry: Letterbox, description: ModelDescription, settings: NmsSettings = VAL_NMS,
           masks: bool = True) -> Detections:
    """Turn a model's raw outputs (a list in the model's order, or the detection output alone for a
    model with one output) into detections in original-image pixels, with the task's parts.
    masks=False leaves a segment model's masks out (None), where only boxes are compared."""
    outputs = [outputs] if isinstance(outputs, np.ndarray) else list(outputs)
    parts = description.split(outputs[0])
    if description.end_to_end:  # rows already selected and ranked inside the model
        scores = parts["scores"][:, 0]
        rows = np.nonzero(scores > settings.conf)[0][: settings.max_det]
        cls, scores = parts["class_ids"][rows, 0].round().astype(np.int64), scores[rows]
    else:
        rows, cls, scores = _candidates(parts["scores"], settings)
        angles = parts["angle"][rows, 0] if description.task == OBB else None
        keep = (_nms(parts["boxes"][rows].astype(np.float32), angles, scores, cls, settings) if len(rows)
                else np.zeros(0, np.int64))
        rows, cls, scores = rows[keep], cls[keep], scores[keep]
    boxes = parts["boxes"][rows].astype(np.float32)  # cx cy w h, but x1 y1 x2 y2 in end-to-end non-OBB rows
    found = {"scores": scores.astype(np.float32), "class_ids": cls.astype(np.int64)}
    if description.task == OBB:
        found["rboxes"], found["boxes"] = _rotated(boxes, parts["angle"][rows, 0].astype(np.float32), geometry)
    else:
        found["boxes"] = boxes_to_image(boxes if description.end_to_end else cxcywh_to_xyxy(boxes), geometry)
    # a box wholly outside the image clips to zero area, a rotated one can be a line: no object there,
    # and no IoU even with itself (OpenCV's rotated intersection loses sides of 1e-5 px)
    inside = (found["boxes"][:, 2] > found["boxes"][:, 0]) & (found["boxes"][:, 3] > found["boxes"][:, 1])
    if "rboxes" in found:
        inside &= found["rboxes"][:, 2:4].min(axis=1) >= MIN_ROTATED_SIDE
    found, rows = {key: value[inside] for key, value in found.items()}, rows[inside]
    if description.task == SEGMENT and masks:
        found["masks"] = _masks(parts["mask_coefficients"][rows], outputs[1][0], found["boxes"], geometry)
    if description.task == POSE:
        found["keypoints"] = _keypoints(parts["keypoints"][rows], description.kpt_shape, geometry)
    return Detections(**found)
