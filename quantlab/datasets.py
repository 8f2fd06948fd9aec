"""Ultralytics datasets: data.yaml, YOLO txt labels, and the (image, labels) samples to evaluate."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

from quantlab.errors import DatasetError
from quantlab.images import IMAGE_SUFFIXES, list_images


class LabelWarning(UserWarning):
    """A label line was malformed or out of range and was skipped."""


@dataclass(frozen=True)
class Dataset:
    """A labelled split: its images and class names. Labels are read per image, lazily."""

    yaml_path: Path
    images: tuple[Path, ...]
    names: dict[int, str]


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


def check_class_names(dataset: Dataset, model_names: dict[int, str], model_path: Path) -> None:
    """Refuse a data.yaml whose classes are not the model's: every mAP would be silently wrong.

    Counts must match; the same names in another order is a class-order mix-up and also refused.
    """
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
    return Dataset(path, tuple(images), _names(spec, path))


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


def read_labels(image_path: Path, image_hw: tuple[int, int], num_classes: int) -> Labels:
    """Labels of one image in pixels; no label file means no objects. Bad lines warn and are skipped."""
    path = label_path(image_path)
    boxes, classes = [], []
    if path.is_file():
        h, w = image_hw
        for number, line in enumerate(_read_text(path).splitlines(), start=1):
            if not line.strip():
                continue
            problem, row = _parse_line(line, num_classes)
            if problem:
                warnings.warn(f"{path}:{number}: {problem}; line skipped", LabelWarning, stacklevel=2)
                continue
            cls, cx, cy, bw, bh = row
            boxes.append([(cx - bw / 2) * w, (cy - bh / 2) * h, (cx + bw / 2) * w, (cy + bh / 2) * h])
            classes.append(cls)
    return Labels(np.asarray(boxes, np.float32).reshape(-1, 4), np.asarray(classes, np.int64))


def _parse_line(line: str, num_classes: int):
    """(problem, (cls, cx, cy, w, h)); polygon lines (segments) become their bounding box."""
    fields = line.split()
    try:
        values = [float(v) for v in fields]
    except ValueError:
        return f"not numbers: {line.strip()!r}", None
    if len(values) < 5 or (len(values) > 5 and len(values) % 2 == 0):
        return f"expected 'class cx cy w h', got {len(values)} values", None
    cls = values[0]
    if cls != int(cls) or not 0 <= cls < num_classes:
        return f"class {fields[0]} is not one of 0..{num_classes - 1}", None
    coords = np.asarray(values[1:])
    if np.any(coords < 0) or np.any(coords > 1):
        return "coordinates outside [0, 1] (labels must be normalised)", None
    if len(values) > 5:
        xs, ys = coords[0::2], coords[1::2]
        coords = np.array([(xs.min() + xs.max()) / 2, (ys.min() + ys.max()) / 2,
                           xs.max() - xs.min(), ys.max() - ys.min()])
    if coords[2] <= 0 or coords[3] <= 0:
        return "zero-size box", None
    return None, (int(cls), *coords[:4].tolist())
