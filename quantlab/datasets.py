"""Ultralytics datasets: data.yaml, YOLO txt labels, and the (image, labels) samples to evaluate.

A data.yaml is resolved as Ultralytics' check_det_dataset resolves it (ultralytics/data/utils.py), read with a
stricter YAML loader, and every image, label and list file it leads to must stay inside the dataset root.
"""

from __future__ import annotations

import math
import os
import stat
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np
import yaml

from quantlab.errors import ConfigError, DatasetError, SkippedImageWarning, first_line
from quantlab.images import ALLOW_OUTSIDE_ROOT, IMAGE_SUFFIXES, leads_outside, list_images
from quantlab.textsafe import for_terminal, quoted, shorten

if TYPE_CHECKING:
    from quantlab.description import ModelDescription

MAX_BYTES = {
    "data.yaml": 1 << 20,  # Ultralytics' largest (Objects365: 365 names and a download script) is 20 KB
    "list of images": 256 << 20,  # millions of lines
    "label file": 16 << 20,  # a dense segment image's polygons take a few hundred KB
}
# objects in one image's label file: dense scenes (SKU-110K) hold a few hundred; pycocotools' matching
# grows faster than linearly in them, and 600,000 valid lines under the byte cap took 6 minutes for 2 images
MAX_LABEL_LINES = 10_000
MAX_YAML_DEPTH = 32  # a data.yaml nests two or three deep; far deeper ends in RecursionError
MAX_CLASSES = 100_000  # `nc` alone makes one name per class (LVIS has 1203 classes)
MAX_PATH_CHARS = 4096  # Linux's PATH_MAX: a longer list line is no path, and resolving it costs a stat a part
PATH_SHOWN = 200  # characters of a path built from a data.yaml's or list's text, in a message


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


def load_dataset(yaml_path: str | Path, split: str = "val") -> Dataset:
    """Read an Ultralytics data.yaml and list the images of `split`.

    The dataset root is the data.yaml's `path` (a relative one from the data.yaml's folder, else from the
    current folder), or the data.yaml's folder without one. The split's entries are resolved from the root
    as Ultralytics does (see _entry_target); an entry, image, list line or label file leading outside the
    root (a symlink, `..`, an absolute path elsewhere) is refused unless QUANTLAB_ALLOW_OUTSIDE_ROOT=1.
    """
    path = Path(yaml_path)
    spec = _load_yaml(path)
    entries, single = _split_entries(spec, split, path)
    names, kpt_shape = _names(spec, path), _kpt_shape(spec, path)
    root = _dataset_root(spec, path)
    images = sorted({image for item in entries for image in _entry_images(item, root, path, single)})
    labelled = _with_usable_labels(images, root)
    if not labelled:
        skipped = f" ({len(images)} skipped: see the warnings)" if images else ""
        raise DatasetError(f"{path}: the '{split}' split has no images{skipped}")
    return Dataset(path, tuple(labelled), names, kpt_shape)


# --- the data.yaml as YAML ---------------------------------------------------------------------------------------

class _Refused(yaml.YAMLError):
    """YAML that no data.yaml needs, refused before anything is built from it."""


class _DataYamlLoader(yaml.SafeLoader):
    """yaml.SafeLoader (no Python tags) and stricter: no aliases (a data.yaml needs none, and nine nested
    ones in 600 bytes are a billion strings to whatever walks them), no key given twice (the last would win
    silently), and nesting at most MAX_YAML_DEPTH deep."""

    def __init__(self, text: str):
        super().__init__(text)
        self.depth = 0

    def compose_node(self, parent, index):
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent):
            raise _Refused(f"a YAML alias (*{shorten(event.anchor, 20)}, line {event.start_mark.line + 1}): "
                           "a data.yaml needs none, and aliases can expand without bound")
        if self.depth >= MAX_YAML_DEPTH:
            raise _Refused(f"nested more than {MAX_YAML_DEPTH} deep (line {event.start_mark.line + 1})")
        self.depth += 1
        try:
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = (key_node.tag, key_node.value) if isinstance(key_node, yaml.ScalarNode) else None
            if key in seen:
                raise _Refused(f"the key {quoted(key_node.value)} is given twice (line {key_node.start_mark.line + 1})")
            if key is not None:
                seen.add(key)
        return super().construct_mapping(node, deep)


def _load_yaml(path: Path) -> dict:
    """The data.yaml's top-level mapping; DatasetError, in one line, for anything else."""
    text, loader = _read_text(path, "data.yaml"), None
    try:
        loader = _DataYamlLoader(text)  # its reader refuses a NUL or other control character here
        spec = loader.get_single_data()
    except _Refused as exc:
        raise DatasetError(f"{path}: refused: {exc}") from exc
    except yaml.YAMLError as exc:
        raise DatasetError(f"{path}: not valid YAML ({_yaml_problem(exc)})") from exc
    except ValueError as exc:  # an integer of over 4300 digits, a date such as 2024-13-45
        raise DatasetError(f"{path}: not valid YAML ({shorten(first_line(exc), 100)})") from exc
    finally:
        if loader is not None:
            loader.dispose()
    if not isinstance(spec, dict):
        kind = "empty" if spec is None else f"a {type(spec).__name__}"
        raise DatasetError(f"{path}: not a data.yaml: its top level is {kind}, not a mapping of keys "
                           "(path, train, val, names)")
    return spec


def _yaml_problem(exc: yaml.YAMLError) -> str:
    """PyYAML's cause and line, without the snippet of the file it quotes."""
    if isinstance(exc, yaml.MarkedYAMLError):
        mark = exc.problem_mark or exc.context_mark
        where = f", line {mark.line + 1}" if mark else ""
        cause = ", ".join(part for part in (exc.context, exc.problem) if part) or "malformed"
        return shorten(cause, 120) + where
    return shorten(first_line(exc), 100)


# --- where the images are: Ultralytics' resolution, kept inside the dataset root ------------------------------

def _split_entries(spec: dict, split: str, path: Path) -> tuple[list, bool]:
    """(the split's entries, whether it was one entry rather than a list: only that gets the ../ fallback).
    Ultralytics reads a 'validation' key where 'val' is missing."""
    key = "validation" if split == "val" and "val" not in spec and "validation" in spec else split
    if key not in spec:
        raise DatasetError(f"{path}: no '{split}' entry (an Ultralytics data.yaml has path, train, val, names)")
    value = spec[key]
    if value is None or value == "" or value == []:
        raise DatasetError(f"{path}: the '{key}' entry is empty; name an image folder or a .txt list of images")
    return (value, False) if isinstance(value, list) else ([value], True)


def _dataset_root(spec: dict, path: Path) -> Path:
    """The resolved folder split entries are read from: `path`, or the data.yaml's folder without one.

    Ultralytics reads a relative `path` from the current folder, else from its DATASETS_DIR setting; quantlab
    has no such setting, and reads it from the data.yaml's folder first (a dataset then works from any
    folder, as `path: .` in CVAT's exports means), then from the current folder.
    """
    value = spec.get("path")
    yaml_folder = Path(os.path.abspath(path)).parent  # the folder as given, as Ultralytics takes it
    if value is None or value == "":
        return _not_home(yaml_folder.resolve(), path)
    if not isinstance(value, str):
        raise DatasetError(f"{path}: 'path' must be a folder path, got {quoted(value)}")
    given = Path(value)
    candidates = [given] if given.is_absolute() else [yaml_folder / given, Path.cwd() / given]
    for candidate in candidates:
        if _is_dir(candidate):
            return _not_home(candidate.resolve(), path)
    looked = " and ".join(shorten(c, PATH_SHOWN) for c in candidates)
    raise DatasetError(f"{path}: 'path' {quoted(value, 80)} is not a folder (looked for {looked})")


def _not_home(root: Path, path: Path) -> Path:
    """`root`, unless it is the user's home folder or a folder above it (`path: /`, `path: ../..`, a dataset
    unpacked into the home folder): every file there would be part of the dataset, so a label linked to
    ~/.aws/credentials or ~/.git-credentials would be read as one."""
    home = Path.home().resolve()
    if (root == home or root in home.parents) and os.environ.get(ALLOW_OUTSIDE_ROOT) != "1":
        raise DatasetError(f"{path}: its dataset root would be {shorten(root, PATH_SHOWN)}, the home folder or a "
                           f"folder above it, where every file would be part of the dataset; set 'path' to the "
                           f"dataset's own folder ({ALLOW_OUTSIDE_ROOT}=1 allows it)")
    return root


def _entry_images(item, root: Path, path: Path, single: bool) -> list[Path]:
    """The images one split entry names: a folder (searched recursively), an image, or a .txt list."""
    target = _entry_target(item, root, path, single)
    if _is_dir(target):
        return list_images(target, recursive=True, root=root)
    if target.suffix.lower() in IMAGE_SUFFIXES and target.is_file():
        return [target]
    if target.suffix == ".txt" and target.is_file():
        return _listed_images(target, root)
    hint = " (write / for a folder, not \\)" if "\\" in item else ""
    raise DatasetError(f"{path}: split entry {quoted(item, 80)} is neither an image folder nor a .txt list "
                       f"(looked for {shorten(target, PATH_SHOWN)}){hint}")


def _entry_target(item, root: Path, path: Path, single: bool) -> Path:
    """Ultralytics' check_det_dataset: the entry from the root, an absolute one as it is; a single entry
    that does not exist and starts with ../ is tried without it (Roboflow writes `val: ../valid/images` into
    the data.yaml at its export's root). Refused if it leads outside the root."""
    if not isinstance(item, str) or not item:
        raise DatasetError(f"{path}: split entry {quoted(item)} is not a folder or .txt path")
    target = _resolved(root / item)
    if single and item.startswith("../") and not _exists(target):
        target = _resolved(root / item[3:])
    if leads_outside(target, root):
        raise DatasetError(f"{path}: split entry {quoted(item, 80)} leads outside the dataset root {for_terminal(root)} "
                           f"(to {shorten(target, PATH_SHOWN)}); set 'path' to a folder holding every split, "
                           f"or {ALLOW_OUTSIDE_ROOT}=1 to read it there")
    return target


def _listed_images(list_path: Path, root: Path) -> list[Path]:
    """The images a .txt list names, one a line, as Ultralytics reads them: a line starting with ./ from the
    list's folder, an absolute one as it is, lines without an image suffix left out. Any other relative line
    is read from the dataset root (Ultralytics reads it from the current folder, which is the root where
    CVAT's exports are used). A line leading outside the root, or to a folder, pipe or device, is skipped
    with a warning."""
    images = []
    for number, line in enumerate(_read_text(list_path, "list of images").splitlines(), start=1):
        entry = line.strip()
        if Path(entry).suffix.lower() not in IMAGE_SUFFIXES:
            continue
        image = (list_path.parent if entry.startswith("./") else root) / entry
        problem = _list_line_problem(entry, image, root)
        if problem:
            _skip(f"{for_terminal(list_path)}:{number}: {problem}")
        else:
            images.append(image)
    return images


def _list_line_problem(entry: str, image: Path, root: Path) -> str | None:
    """Why a list line naming `image` is skipped; None where it is kept (a missing image is warned when read)."""
    if len(entry) > MAX_PATH_CHARS:
        return f"{quoted(entry)} is longer than any path ({len(entry)} characters)"
    if leads_outside(image, root):
        return f"{quoted(entry, 60)} leads outside the dataset root {for_terminal(root)} ({ALLOW_OUTSIDE_ROOT}=1 follows it)"
    if _exists(image) and not image.is_file():
        return f"{quoted(entry, 60)} is not a regular file (a folder, pipe or device)"
    return None


def _with_usable_labels(images: list[Path], root: Path) -> list[Path]:
    """`images` less those whose label file leads outside the root or is not a regular file, each skipped
    with a warning: read as no labels, the image's detections would all count as false positives."""
    kept = []
    for image in images:
        label = label_path(image)
        problem = _label_problem(label, root)
        if problem:
            _skip(f"{for_terminal(image)}: its label file {for_terminal(label)} {problem}")
        else:
            kept.append(image)
    return kept


def _label_problem(label: Path, root: Path) -> str | None:
    """Why an image's label file cannot be read; None where it can, or where there is none (no objects)."""
    if not os.path.lexists(label):
        return None
    if leads_outside(label, root):
        how = "is a symlink leading" if Path(os.path.abspath(label)).is_relative_to(root) else "lies"
        return f"{how} outside the dataset root {for_terminal(root)} ({ALLOW_OUTSIDE_ROOT}=1 follows it)"
    if not label.is_file():
        return "is not a regular file (a folder, pipe or device)"
    return None


def _skip(message: str) -> None:
    warnings.warn(f"skipping {message}", SkippedImageWarning, stacklevel=4)


def _resolved(path: Path) -> Path:
    """`path` with its symlinks and `..` followed; as given, made absolute, where that fails (a symlink loop)."""
    try:
        return path.resolve()
    except (OSError, RuntimeError, ValueError):  # RuntimeError: a symlink loop; ValueError: a NUL in the name
        return Path(os.path.abspath(path))


def _exists(path: Path) -> bool:
    try:
        return path.exists()
    except OSError:  # a name too long
        return False


def _is_dir(path: Path) -> bool:
    try:
        return path.is_dir()
    except OSError:
        return False


# --- class names and keypoints --------------------------------------------------------------------------------

def _names(spec: dict, path: Path) -> dict[int, str]:
    """`names` (a list, or a mapping of class index to name), checked against `nc` where both are given;
    `nc` alone names the classes class_0, class_1, ... as Ultralytics does."""
    names, count = spec.get("names"), spec.get("nc")
    if count is not None and (type(count) is not int or not 0 < count <= MAX_CLASSES):
        raise DatasetError(f"{path}: 'nc' must be a class count 1..{MAX_CLASSES}, got {quoted(count)}")
    if names is None:
        if count is None:
            raise DatasetError(f"{path}: no 'names' (nor 'nc'): list the class names the model was trained with")
        return {i: f"class_{i}" for i in range(count)}
    indexed = _indexed_names(names, path)
    if count is not None and count != len(indexed):
        raise DatasetError(f"{path}: 'nc' is {count} but 'names' lists {len(indexed)} classes; they must agree")
    odd = next((i for i, name in indexed.items() if not name.isprintable()), None)
    if odd is not None:
        raise DatasetError(f"{path}: class name {odd} {quoted(indexed[odd])} holds a control character "
                           "(a newline, tab or terminal escape)")
    return indexed


def _indexed_names(names, path: Path) -> dict[int, str]:
    if isinstance(names, list) and names:
        return dict(enumerate(str(n) for n in names))
    if isinstance(names, dict) and names:
        try:
            indexed = {_class_index(k): str(v) for k, v in names.items()}
        except ValueError:
            raise DatasetError(f"{path}: 'names' keys must be class indices 0..N-1, got "
                               f"{', '.join(quoted(k) for k in list(names)[:5])}") from None
        if sorted(indexed) != list(range(len(names))):  # len(names): 0 and '0' are one index, given twice
            raise DatasetError(f"{path}: 'names' keys must be the class indices 0..{len(names) - 1}, once each, "
                               f"got {quoted(sorted(indexed)[:8], 60)}")
        return indexed
    raise DatasetError(f"{path}: 'names' must be a non-empty list or a mapping of class index to name")


def _class_index(key) -> int:
    """A `names` key: an int or a string of digits (YAML reads `0:` as an int, JSON-style `"0":` as text)."""
    if type(key) is int:
        return key
    if isinstance(key, str) and key.isascii() and key.isdigit():
        return int(key)
    raise ValueError(key)


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
                           f"order ({_first_names(ours)} ... vs {_first_names(theirs)} ...)")


def _first_names(names: list[str]) -> str:
    return ", ".join(shorten(name, 40) for name in names[:4])


def _kpt_shape(spec: dict, path: Path) -> tuple[int, int] | None:
    value = spec.get("kpt_shape")
    if value is None:
        return None
    valid = (isinstance(value, list) and len(value) == 2 and all(type(v) is int for v in value)
             and value[0] > 0 and value[1] in (2, 3))
    if not valid:
        raise DatasetError(f"{path}: 'kpt_shape' must be [K, D]: K keypoints > 0, D 2 (x y) or 3 (x y visibility), "
                           f"got {quoted(value, 40)}")
    return value[0], value[1]


def _read_text(path: Path, kind: str) -> str:
    """A `kind` file's text as UTF-8 (a BOM is dropped; CRLF lines split like LF); DatasetError, naming the
    file, where it is not a regular file, is larger than MAX_BYTES[kind], or is not UTF-8."""
    data = _read_regular(path, MAX_BYTES[kind], kind)
    if len(data) > MAX_BYTES[kind]:
        raise DatasetError(f"{for_terminal(path)}: larger than {MAX_BYTES[kind] / (1 << 20):g} MiB, more than any "
                           f"{kind} needs")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DatasetError(f"{for_terminal(path)}: not UTF-8 text (byte {exc.start}: "
                           f"{data[exc.start:exc.start + 1]!r})") from exc


def _read_regular(path: Path, max_bytes: int, kind: str) -> bytes:
    """Up to max_bytes + 1 bytes of a regular file. Opened without blocking and checked before reading: a
    pipe or a device (a label symlinked to /dev/zero) is refused, never read, and never hangs."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except FileNotFoundError:
        raise DatasetError(f"{for_terminal(path)}: {kind} not found") from None
    except (OSError, ValueError) as exc:
        raise DatasetError(f"{for_terminal(path)}: cannot be read ({getattr(exc, 'strerror', None) or exc})") from exc
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise DatasetError(f"{for_terminal(path)}: not a regular file (a folder, pipe or device)")
        with os.fdopen(fd, "rb", closefd=False) as file:
            return file.read(max_bytes + 1)
    except OSError as exc:
        raise DatasetError(f"{for_terminal(path)}: cannot be read ({exc.strerror or exc})") from exc
    finally:
        os.close(fd)


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
    if path.is_file():  # a folder, pipe or device is not read; load_dataset skipped its image
        lines = _read_text(path, "label file").splitlines()
        if sum(1 for line in lines if line.strip()) > MAX_LABEL_LINES:
            raise DatasetError(f"{for_terminal(path)}: more than {MAX_LABEL_LINES:,} objects for one image, more than "
                               "any dataset labels; is it a label file?")
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            problem, row = _parse_line(line, num_classes, task, kpt_shape, image_hw)
            if problem:
                warnings.warn(f"{for_terminal(path)}:{number}: {problem}; line skipped", LabelWarning, stacklevel=2)
                continue
            rows.append(row)
    return _stack_labels(rows, task, image_hw, kpt_shape)


def _check_task(task: str, kpt_shape: tuple[int, int] | None) -> None:
    if task not in _OBJECT_PARSERS:
        raise ConfigError(f"task {quoted(task)} is not valid: choose one of {', '.join(_OBJECT_PARSERS)}")
    if task == "pose" and kpt_shape is None:
        raise ConfigError("task 'pose' needs kpt_shape (K, D): pass the data.yaml's (Dataset.kpt_shape)")


def _parse_line(line: str, num_classes: int, task: str, kpt_shape: tuple[int, int] | None,
                image_hw: tuple[int, int]):
    """(problem, (cls, box x1 y1 x2 y2 in pixels, the task's part or None)).

    A problem quotes at most one field of the line, cut short: a label file may be a stranger's symlink to
    a secret, and its lines must not reach the console or a CI log.
    """
    fields = line.split()
    values, problem = _numbers(fields)
    if problem:
        return problem, None
    problem = _count_problem(task, len(values), kpt_shape)
    if problem:
        return problem, None
    cls = values[0]
    if cls != int(cls) or not 0 <= cls < num_classes:
        return f"class {shorten(fields[0], 20)} is not one of 0..{num_classes - 1}", None
    problem, box, part = _OBJECT_PARSERS[task](np.asarray(values[1:]), image_hw, kpt_shape)
    if not problem and (box[2] <= box[0] or box[3] <= box[1]):
        problem = "zero-size box"
    return (problem, None) if problem else (None, (int(cls), box, part))


def _numbers(fields: list[str]) -> tuple[list[float], str | None]:
    """(the fields as floats, None), or ([], what is wrong with the first field that is not a finite number)."""
    values = []
    for position, field in enumerate(fields, start=1):
        try:
            value = float(field)
        except ValueError:
            return [], f"field {position} is not a number: {quoted(field)}"
        if not math.isfinite(value):  # nan passes every range check; inf and 1e309 break int()
            return [], f"field {position} is not a finite number: {quoted(field)}"
        values.append(value)
    return values, None


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
        return f"keypoint visibility must be 0, 1 or 2, got {wrong_visibility[:5]}", None, None
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
