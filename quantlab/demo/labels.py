"""The demo's YOLO label lines for each task (detect, segment, pose, obb), from the shapes as drawn.

Coordinates are those of the detect boxes: image pixels, the image spanning [0, W] x [0, H]; each
label line is normalised by W and H, as Ultralytics reads it.

An object's visible region is its filled outline, clipped to the image, minus what the objects drawn
after it painted over it (their fill, or the stroke of an outlined one), as Ultralytics' segment data
leaves the occluded part out of the lower object's mask. It is rasterised (SUPERSAMPLE times finer
than the image) and traced with cv2.findContours rather than intersected as polygons: one method
covers the concave star, clipping by the image border, and an occluder that splits a shape in two
(cv2.intersectConvexConvex handles only convex pairs, and a polygon difference would need a clipping
library). Circles need no special case: they are drawn as the 48-gon of their outline, and that is
what is rasterised. An outlined (hollow) shape's region is its whole inside, as its detect box is.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import cv2
import numpy as np

from quantlab.demo import DemoTask

if TYPE_CHECKING:
    from quantlab.demo.shapes import ShapeObject

KEYPOINT_NAMES = ("top", "right", "bottom", "left")  # the outline's extreme points, in this order
KPT_SHAPE = (len(KEYPOINT_NAMES), 3)  # x y visibility
FLIP_IDX = (0, 3, 2, 1)  # a horizontal flip swaps the rightmost and the leftmost point
SUPERSAMPLE = 4  # mask pixels per image pixel along each axis: region edges within 1/4 px of the drawn ones
_SIMPLIFY_PX = 0.25  # polygon vertices dropped where the outline stays within this distance (image pixels)
_FIXED_BITS = 4  # cv2 fixed-point drawing: coordinates carry 4 fractional bits, as the shapes were drawn


def _box_fields(box: tuple[float, float, float, float], height: int, width: int) -> str:
    """'cx cy w h' of an x1 y1 x2 y2 pixel box, normalised."""
    x1, y1, x2, y2 = box
    return f"{(x1 + x2) / 2 / width:.6f} {(y1 + y2) / 2 / height:.6f} {(x2 - x1) / width:.6f} {(y2 - y1) / height:.6f}"


def detect_label_lines(objects: list[ShapeObject], height: int, width: int) -> list[str]:
    """YOLO detect lines: `class cx cy w h`, normalised to [0, 1]."""
    return [f"{obj.class_id} {_box_fields(obj.box, height, width)}" for obj in objects]


def _fixed_point(outline: np.ndarray, origin: tuple[int, int], scale: int) -> np.ndarray:
    """(K, 2) int32 vertices in a mask of `scale` pixels per image pixel whose corner is `origin`.

    Mask pixel i covers image x in [x0 + i / scale, x0 + (i + 1) / scale]; OpenCV puts pixel i's centre
    at coordinate i, hence the half-pixel shift.
    """
    mask_xy = (outline - origin) * scale - 0.5
    return np.round(mask_xy * (1 << _FIXED_BITS)).astype(np.int32)


def _paint(mask: np.ndarray, obj: ShapeObject, origin: tuple[int, int], scale: int, value: int,
           footprint: bool) -> None:
    """Paint one object into `mask`: its region (filled outline), or its footprint (what it drew over)."""
    poly = _fixed_point(np.asarray(obj.outline, np.float64), origin, scale)
    if footprint and obj.stroke_px:  # an outlined shape covered only its stroke; its inside shows through
        cv2.polylines(mask, [poly], True, value, obj.stroke_px * scale, cv2.LINE_8, shift=_FIXED_BITS)
    else:
        cv2.fillPoly(mask, [poly], value, cv2.LINE_8, shift=_FIXED_BITS)


def _overlaps(a: tuple[float, ...], b: tuple[float, ...], margin: float) -> bool:
    """Whether x1 y1 x2 y2 boxes a and b, b grown by `margin` pixels, overlap."""
    return a[0] - margin < b[2] and b[0] - margin < a[2] and a[1] - margin < b[3] and b[1] - margin < a[3]


def visible_contours(objects: list[ShapeObject], index: int) -> list[np.ndarray]:
    """The visible region of objects[index] as (K, 2) float64 polygons in image pixels, largest first.

    Usually one polygon; more where a later object splits the region; none where it is hidden whole.
    """
    obj = objects[index]
    x0, y0 = math.floor(obj.box[0]), math.floor(obj.box[1])  # the box is already clipped to the image,
    x1, y1 = math.ceil(obj.box[2]), math.ceil(obj.box[3])  # so this window clips the region to it too
    scale = SUPERSAMPLE
    mask = np.zeros(((y1 - y0) * scale, (x1 - x0) * scale), np.uint8)
    _paint(mask, obj, (x0, y0), scale, 1, footprint=False)
    for later in objects[index + 1:]:
        if _overlaps(obj.box, later.box, later.stroke_px):
            _paint(mask, later, (x0, y0), scale, 0, footprint=True)
    contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    contours = sorted(contours, key=cv2.contourArea, reverse=True)
    # contour vertices are the centres of the region's edge pixels in the mask: back to image pixels
    return [(c.reshape(-1, 2) + 0.5) / scale + (x0, y0) for c in contours]


def _simplified(polygon: np.ndarray) -> np.ndarray:
    """Drop vertices on the staircase of the raster edge: (K', 2) float64, K' >= 3 where K >= 3."""
    kept = cv2.approxPolyDP(polygon.astype(np.float32).reshape(-1, 1, 2), _SIMPLIFY_PX, closed=True)
    return kept.reshape(-1, 2).astype(np.float64) if len(kept) >= 3 else polygon


def _normalised(values: np.ndarray, height: int, width: int) -> str:
    """'x1 y1 x2 y2 ...' of (K, 2) image pixels, normalised and clipped to [0, 1]."""
    xy = np.clip(values / (width, height), 0.0, 1.0)
    return " ".join(f"{v:.6f}" for v in xy.reshape(-1))


def segment_label_lines(objects: list[ShapeObject], height: int, width: int) -> list[str]:
    """YOLO segment lines: `class x1 y1 ... xn yn`, the polygon of each object's visible region.

    A region split in two by a later object keeps its largest part: a YOLO polygon is one ring. An object
    hidden whole, or left only a sliver of under 3 vertices (0 of the 6,352 objects at the default seed),
    falls back to its clipped outline, so every object keeps a line.
    """
    lines = []
    for index, obj in enumerate(objects):
        contours = visible_contours(objects, index)
        if contours and len(contours[0]) >= 3:
            polygon = _simplified(contours[0])
        else:
            polygon = np.asarray(obj.outline, np.float64)
        lines.append(f"{obj.class_id} {_normalised(polygon, height, width)}")
    return lines


def _hidden_by(point: tuple[float, float], occluder: ShapeObject) -> bool:
    """Whether `point` lies under what `occluder` drew: its fill, or within half its stroke of the outline."""
    poly = np.asarray(occluder.outline, np.float32).reshape(-1, 1, 2)
    if occluder.stroke_px:
        return abs(cv2.pointPolygonTest(poly, point, True)) <= occluder.stroke_px / 2
    return cv2.pointPolygonTest(poly, point, False) >= 0


def keypoints(objects: list[ShapeObject], index: int, height: int, width: int) -> np.ndarray:
    """(4, 3) float64 x y visibility of objects[index]: its outline's top, right, bottom, left extremes.

    Image pixels; visibility 2 where seen, 1 where a later object covers it, and x = y = v = 0 where the
    point lies outside the image (the COCO and Ultralytics convention for an unlabelled keypoint).
    """
    outline = np.asarray(objects[index].outline, np.float64)
    extremes = (outline[:, 1].argmin(), outline[:, 0].argmax(), outline[:, 1].argmax(), outline[:, 0].argmin())
    result = np.zeros(KPT_SHAPE)
    for k, vertex in enumerate(extremes):
        x, y = outline[vertex]
        if not (0 <= x <= width and 0 <= y <= height):
            continue
        hidden = any(_hidden_by((float(x), float(y)), later) for later in objects[index + 1:])
        result[k] = (x, y, 1 if hidden else 2)
    return result


def pose_label_lines(objects: list[ShapeObject], height: int, width: int) -> list[str]:
    """YOLO pose lines: `class cx cy w h` (the detect box) then `x y v` per keypoint, normalised."""
    lines = []
    for index, obj in enumerate(objects):
        points = keypoints(objects, index, height, width)
        kpts = " ".join(f"{x / width:.6f} {y / height:.6f} {int(v)}" for x, y, v in points)
        lines.append(f"{obj.class_id} {_box_fields(obj.box, height, width)} {kpts}")
    return lines


def obb_corners(objects: list[ShapeObject], index: int) -> np.ndarray:
    """(4, 2) float64 corners of the min-area rectangle around objects[index]'s visible region, image pixels.

    cv2.boxPoints order; every visible part counts. Not clipped: corners may fall outside the image.
    """
    contours = visible_contours(objects, index)
    points = np.concatenate(contours) if contours else np.asarray(objects[index].outline, np.float64)
    return cv2.boxPoints(cv2.minAreaRect(points.astype(np.float32))).astype(np.float64)


def obb_label_lines(objects: list[ShapeObject], height: int, width: int) -> list[str]:
    """YOLO OBB lines: `class x1 y1 x2 y2 x3 y3 x4 y4`, normalised and clipped to [0, 1].

    Clipped because Ultralytics rejects a label coordinate outside [0, 1]; a rectangle tilted against
    the border then loses a sliver of its corner.
    """
    return [f"{obj.class_id} {_normalised(obb_corners(objects, index), height, width)}"
            for index, obj in enumerate(objects)]


_LABEL_LINES = {
    DemoTask.DETECT: detect_label_lines,
    DemoTask.SEGMENT: segment_label_lines,
    DemoTask.POSE: pose_label_lines,
    DemoTask.OBB: obb_label_lines,
}


def label_lines(task: DemoTask, objects: list[ShapeObject], height: int, width: int) -> list[str]:
    """The label file's lines for one image of `height` x `width` pixels, one per object, in `task`'s format."""
    return _LABEL_LINES[task](objects, height, width)


def yaml_entries(task: DemoTask) -> dict:
    """What data.yaml needs for `task` beyond train, val and names (Ultralytics' pose keys)."""
    if task is DemoTask.POSE:
        return {"kpt_shape": list(KPT_SHAPE), "flip_idx": list(FLIP_IDX)}
    return {}
