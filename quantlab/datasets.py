"""Ultralytics datasets: data.yaml, YOLO txt labels, and the (image, labels) samples to evaluate."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np
import yaml

from quantlab.errors import ConfigError, DatasetError
from quantlab.images import IMAGE_SUFFIXES, list_images

if TYPE_CHECKING:
    from quantlab.description import ModelDescription


class LabelWarning(UserWarning):
    """A label line was malformed or out of range and was skipped."""


@dataclass(frozen=True)
class Dataset:
    """A labelled split: its images and class names. Labels are read per image, lazily.

    kpt_shape: the data.yaml's (K keypoints, D values each: 2 x y or 3 x y visibility), None without one.
    """

    yaml_path: Path
    images: tuple[Path, ...]
    names: dict[int, str]
    kpt_shape: tuple[int, int] | None = None


@dataclass(frozen=True)
class Labels:
    """boxes: (N, 4) float32 x1 y1 x2 y2 in image pixels; class_ids: (N,) int64.

    The task's own part, None where it has none, as in detections.Detections: masks (N, H, W) bool,
    keypoints (N, K, 3) float32 x y visibility (0 absent, 1 occluded, 2 visible), rboxes (N, 5) cx cy w h angle.
    """

    boxes: np.ndarray
    class_ids: np.ndarray
    masks: np.ndarray | None = None
    keypoints: np.ndarray | None = None
    rboxes: np.ndarray | None = None


def _names(spec: dict, path: Path) -> dict[int, str]:
    names = spec.get("names")
    if isinstance(names, list) and names:
        return dict(enumerate(str(n) for n in names))
    if isinstance(names, dict) and names:
        try:
            indexed = {int(k): str(v) for k, v in names.items()}
        except (TypeError, ValueError):
            raise DatasetError(f"{path}: 'names' keys must be class indices 0..N-1, got "
                               f"{', '.join(repr(k) for k in list(names)[:5])}") from None
        if sorted(indexed) != list(range(len(indexed))):
            raise DatasetError(f"{path}: 'names' keys must be the class indices 0..{len(indexed) - 1}, got "
                               f"{sorted(indexed)[:8]}")
        return indexed
    raise DatasetError(f"{path}: 'names' must be a non-empty list or a mapping of class index to name")


def check_class_names(dataset: Dataset, description: ModelDescription, model_path: Path) -> None:
    """Refuse a data.yaml whose classes or keypoints are not the model's: every mAP would be silently wrong.

    Counts must match; the same names in another order is a class-order mix-up and also refused.
    A data.yaml has a kpt_shape exactly when the model is a pose model, and then the same one.
    """
    if dataset.kpt_shape != description.kpt_shape:
        if description.kpt_shape is None:
            raise DatasetError(f"{dataset.yaml_path}: kpt_shape {list(dataset.kpt_shape)} (keypoint labels) but the "
                               f"model {model_path} is a {description.task} model, with no keypoints; use the "
                               "data.yaml the model was trained with")
        if dataset.kpt_shape is None:
            raise DatasetError(f"{dataset.yaml_path}: no kpt_shape but the model {model_path} is a pose model "
                               f"predicting {list(description.kpt_shape)}; add the kpt_shape it was trained with")
        raise DatasetError(f"{dataset.yaml_path}: kpt_shape {list(dataset.kpt_shape)} but the model {model_path} "
                           f"predicts {list(description.kpt_shape)}; use the data.yaml the model was trained with")
    model_names = description.class_names
    if len(dataset.names) != len(model_names):
        raise DatasetError(f"{dataset.yaml_path}: lists {len(dataset.names)} class names but the model "
                           f"{model_path} has {len(model_names)} classes; use the data.yaml the model was "
                           "trained with")
    ours, theirs = [dataset.names[i] for i in sorted(dataset.names)], [model_names[i] for i in sorted(model_names)]
    if ours != theirs and sorted(ours) == sorted(theirs):
        raise DatasetError(f"{dataset.yaml_path}: the class names are the model's ({model_path}) in another "
                           f"order ({', '.join(ours[:4])} ... vs {', '.join(theirs[:4])} ...)")


def _split_images(entry, root: Path, path: Path) -> list[Path]:
    entries = entry if isinstance(entry, list) else [entry]
    images: list[Path] = []
    for item in entries:
        if not isinstance(item, str) or not item:
            raise DatasetError(f"{path}: split entry {item!r} is not a folder or .txt path")
        target = Path(item) if Path(item).is_absolute() else root / item
        if target.is_dir():
            images.extend(list_images(target, recursive=True))
        elif target.suffix == ".txt" and target.is_file():
            for line in _read_text(target).splitlines():
                if line.strip():
                    p = Path(line.strip())
                    images.append(p if p.is_absolute() else root / p)
        else:
            raise DatasetError(f"{path}: split entry '{item}' is neither an image folder nor a .txt list "
                               f"(looked for {target})")
    return sorted(p for p in images if p.suffix.lower() in IMAGE_SUFFIXES)


def load_dataset(yaml_path: str | Path, split: str = "val") -> Dataset:
    """Read an Ultralytics data.yaml and list the images of `split`."""
    path = Path(yaml_path)
    if not path.is_file():
        raise DatasetError(f"{path}: data.yaml not found")
    try:
        spec = yaml.safe_load(_read_text(path))
    except yaml.YAMLError as exc:
        raise DatasetError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from exc
    if not isinstance(spec, dict) or split not in spec:
        raise DatasetError(f"{path}: no '{split}' entry (an Ultralytics data.yaml has path, train, val, names)")
    if not isinstance(spec.get("path") or "", str):
        raise DatasetError(f"{path}: 'path' must be a folder path, got {spec['path']!r}")
    root = Path(spec.get("path") or path.parent)
    root = root if root.is_absolute() else (path.parent / root)
    images = _split_images(spec[split], root, path)
    if not images:
        raise DatasetError(f"{path}: the '{split}' split has no images")
    return Dataset(path, tuple(images), _names(spec, path), _kpt_shape(spec, path))


def _kpt_shape(spec: dict, path: Path) -> tuple[int, int] | None:
    value = spec.get("kpt_shape")
    if value is None:
        return None
    valid = (isinstance(value, list) and len(value) == 2 and all(type(v) is int for v in value)
             and value[0] > 0 and value[1] in (2, 3))
    if not valid:
        raise DatasetError(f"{path}: 'kpt_shape' must be [K, D]: K keypoints > 0, D 2 (x y) or 3 (x y visibility), "
                           f"got {value!r}")
    return value[0], value[1]


def _read_text(path: Path) -> str:
    """A text file as UTF-8 (a BOM is dropped; CRLF lines split like LF); DatasetError if unreadable."""
    try:
        return path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DatasetError(f"{path}: not UTF-8 text (byte {exc.start}: {exc.object[exc.start:exc.start + 1]!r})") from exc
    except OSError as exc:
        raise DatasetError(f"{path}: cannot be read ({exc.strerror or exc})") from exc


def label_path(image_path: Path) -> Path:
    """Ultralytics' rule: the last /images/ in the path becomes /labels/, the suffix .txt."""
    parts = list(image_path.parts)
    for i in range(len(parts) - 2, -1, -1):
        if parts[i] == "images":
            parts[i] = "labels"
            break
    return Path(*parts).with_suffix(".txt")


def read_labels(image_path: Path, image_hw: tuple[int, int], num_classes: int, task: str = "detect",
                kpt_shape: tuple[int, int] | None = None) -> Labels:
    """Labels of one image in pixels, in `task`'s Ultralytics format; no label file means no objects.

    Lines, normalised to [0, 1]: detect `cls cx cy w h` (a polygon line becomes its bounding box);
    segment `cls x1 y1 ... xn yn`; pose `cls cx cy w h` then K x D keypoint values, kpt_shape (K, D)
    from the data.yaml; obb `cls x1 y1 ... x4 y4`. Bad lines warn (LabelWarning, file:line) and are skipped.
    The task's part (masks, keypoints, rboxes) is empty rather than None for an image without objects.
    """
    _check_task(task, kpt_shape)
    path = label_path(image_path)
    rows = []
    if path.is_file():
        for number, line in enumerate(_read_text(path).splitlines(), start=1):
            if not line.strip():
                continue
            problem, row = _parse_line(line, num_classes, task, kpt_shape, image_hw)
            if problem:
                warnings.warn(f"{path}:{number}: {problem}; line skipped", LabelWarning, stacklevel=2)
                continue
            rows.append(row)
    return _stack_labels(rows, task, image_hw, kpt_shape)


def _check_task(task: str, kpt_shape: tuple[int, int] | None) -> None:
    if task not in _OBJECT_PARSERS:
        raise ConfigError(f"task {task!r} is not valid: choose one of {', '.join(_OBJECT_PARSERS)}")
    if task == "pose" and kpt_shape is None:
        raise ConfigError("task 'pose' needs kpt_shape (K, D): pass the data.yaml's (Dataset.kpt_shape)")


def _parse_line(line: str, num_classes: int, task: str, kpt_shape: tuple[int, int] | None,
                image_hw: tuple[int, int]):
    """(problem, (cls, box x1 y1 x2 y2 in pixels, the task's part or None))."""
    fields = line.split()
    try:
        values = [float(v) for v in fields]
    except ValueError:
        return f"not numbers: {line.strip()!r}", None
    problem = _count_problem(task, len(values), kpt_shape)
    if problem:
        return problem, None
    cls = values[0]
    if cls != int(cls) or not 0 <= cls < num_classes:
        return f"class {fields[0]} is not one of 0..{num_classes - 1}", None
    problem, box, part = _OBJECT_PARSERS[task](np.asarray(values[1:]), image_hw, kpt_shape)
    if not problem and (box[2] <= box[0] or box[3] <= box[1]):
        problem = "zero-size box"
    return (problem, None) if problem else (None, (int(cls), box, part))


def _count_problem(task: str, count: int, kpt_shape: tuple[int, int] | None) -> str | None:
    """What is wrong with a line of `count` values, the class included, for `task`; None if nothing."""
    if task == "detect" and (count < 5 or (count > 5 and count % 2 == 0)):
        return f"expected 'class cx cy w h', got {count} values"
    if task == "segment" and count == 5:
        return "a box, but a segment label needs a polygon 'class x1 y1 ... xn yn' to make its mask"
    if task == "segment" and (count < 7 or count % 2 == 0):
        return f"expected a polygon 'class x1 y1 ... xn yn' of 3 or more points, got {count} values"
    if task == "pose" and count != 5 + kpt_shape[0] * kpt_shape[1]:
        k, d = kpt_shape
        return f"expected 5 + {k}x{d} = {5 + k * d} values for kpt_shape [{k}, {d}], got {count}"
    if task == "obb" and count != 9:
        return f"expected 'class x1 y1 x2 y2 x3 y3 x4 y4', got {count} values"
    return None


_OUTSIDE = "coordinates outside [0, 1] (labels must be normalised)"


def _outside_unit(coords: np.ndarray) -> bool:
    return bool(np.any(coords < 0) or np.any(coords > 1))


def _to_pixels(points: np.ndarray, image_hw: tuple[int, int]) -> np.ndarray:
    """(P, 2) normalised x y -> pixels."""
    return points * np.array([image_hw[1], image_hw[0]])


def _bounds(points: np.ndarray) -> np.ndarray:
    """(P, 2) pixel x y -> x1 y1 x2 y2."""
    return np.concatenate([points.min(axis=0), points.max(axis=0)])


def _box_pixels(cxcywh: np.ndarray, image_hw: tuple[int, int]) -> np.ndarray:
    cx, cy, w, h = cxcywh
    return _to_pixels(np.array([[cx - w / 2, cy - h / 2], [cx + w / 2, cy + h / 2]]), image_hw).ravel()


def _detect_object(coords: np.ndarray, image_hw: tuple[int, int], kpt_shape=None):
    """(problem, box, None): a box line, or a polygon line's bounding box."""
    if _outside_unit(coords):
        return _OUTSIDE, None, None
    if len(coords) > 4:
        return None, _bounds(_to_pixels(coords.reshape(-1, 2), image_hw)), None
    return None, _box_pixels(coords, image_hw), None


def _segment_object(coords: np.ndarray, image_hw: tuple[int, int], kpt_shape=None):
    """(problem, polygon bounds, (H, W) bool mask)."""
    if _outside_unit(coords):
        return _OUTSIDE, None, None
    polygon = _to_pixels(coords.reshape(-1, 2), image_hw)
    mask = np.zeros(image_hw, np.uint8)
    cv2.fillPoly(mask, [polygon.astype(np.int32)], 1)  # whole pixels, as Ultralytics' polygon2mask
    return None, _bounds(polygon), mask.astype(bool)


def _pose_object(coords: np.ndarray, image_hw: tuple[int, int], kpt_shape: tuple[int, int]):
    """(problem, box, (K, 3) float32 x y visibility): 0 0 is an absent keypoint; D=2 present ones are visible."""
    keypoints = coords[4:].reshape(kpt_shape)
    if _outside_unit(coords[:4]) or _outside_unit(keypoints[:, :2]):
        return _OUTSIDE, None, None
    wrong_visibility = sorted({float(v) for v in keypoints[:, 2]} - {0, 1, 2}) if kpt_shape[1] == 3 else []
    if wrong_visibility:
        return f"keypoint visibility must be 0, 1 or 2, got {wrong_visibility}", None, None
    visibility = keypoints[:, 2] if kpt_shape[1] == 3 else np.full(len(keypoints), 2.0)
    visibility = np.where((keypoints[:, 0] == 0) & (keypoints[:, 1] == 0), 0.0, visibility)
    part = np.column_stack([_to_pixels(keypoints[:, :2], image_hw), visibility]).astype(np.float32)
    return None, _box_pixels(coords[:4], image_hw), part


def _obb_object(coords: np.ndarray, image_hw: tuple[int, int], kpt_shape=None):
    """(problem, corner bounds, (5,) float32 cx cy w h angle-radians from cv2.minAreaRect, w h as it returns)."""
    if _outside_unit(coords):
        return _OUTSIDE, None, None
    corners = _to_pixels(coords.reshape(4, 2), image_hw).astype(np.float32)
    (cx, cy), (w, h), degrees = cv2.minAreaRect(corners)
    if w * h <= 0:
        return "zero-size box (the corners are on one line)", None, None
    return None, _bounds(corners), np.array([cx, cy, w, h, np.deg2rad(degrees)], np.float32)


_OBJECT_PARSERS = {"detect": _detect_object, "segment": _segment_object, "pose": _pose_object, "obb": _obb_object}
_PART_FIELDS = {"segment": "masks", "pose": "keypoints", "obb": "rboxes"}


def _stack_labels(rows: list, task: str, image_hw: tuple[int, int], kpt_shape: tuple[int, int] | None) -> Labels:
    """One Labels from (cls, box, part) rows."""
    classes = np.asarray([cls for cls, _, _ in rows], np.int64)
    boxes = np.asarray([box for _, box, _ in rows], np.float32).reshape(-1, 4)
    if task == "detect":
        return Labels(boxes, classes)
    parts = np.stack([part for _, _, part in rows]) if rows else _no_parts(task, image_hw, kpt_shape)
    return Labels(boxes, classes, **{_PART_FIELDS[task]: parts})


def _no_parts(task: str, image_hw: tuple[int, int], kpt_shape: tuple[int, int] | None) -> np.ndarray:
    if task == "segment":
        return np.zeros((0, *image_hw), bool)
    return np.zeros((0, kpt_shape[0], 3) if task == "pose" else (0, 5), np.float32)
