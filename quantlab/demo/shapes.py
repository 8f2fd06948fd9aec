"""The demo dataset: seeded shape images with YOLO labels, in the Ultralytics layout.

Every image is drawn from its own generator seeded by (seed, split, index), so one
split, or one image, can be rebuilt alone and always comes out byte-identical. The
images are the same for every task; only the label files and data.yaml differ.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import yaml

from quantlab.demo import DemoTask
from quantlab.demo.labels import label_lines, yaml_entries
from quantlab.errors import ConfigError, OutputError

CLASS_NAMES = ("circle", "rectangle", "triangle", "star")
SPLIT_SIZES = {"train": 1000, "val": 200, "calib": 600}
LABELLED_SPLITS = ("train", "val")
DEFAULT_SEED = 0
_SPLIT_IDS = {"train": 1, "val": 2, "calib": 3}

MIN_OBJECT_PX = 12
COMMON_OBJECT_PX = 24  # most objects are at least this big; SMALL_OBJECT_SHARE of them may be 12 px
SMALL_OBJECT_SHARE = 0.2
MIN_CONTRAST = 80  # mean absolute BGR difference between an object and the background under it
MAX_OVERLAP = 0.3  # partial occlusion, never an object hidden inside another
MIN_VISIBLE_FRACTION = 0.4


@dataclass(frozen=True)
class ShapeObject:
    """One drawn object, in image pixels.

    box: x1 y1 x2 y2 of its outline, clipped to the image. outline: the K (x, y) vertices of its
    polygon as drawn, not clipped (partly outside the image for an object cut by the border).
    stroke_px: 0 for a filled shape, else the width of the line it was outlined with (its labels
    still cover the whole inside, as its box does).
    """

    class_id: int
    box: tuple[float, float, float, float]
    outline: tuple[tuple[float, float], ...]
    stroke_px: int


def _random_colour(rng: np.random.Generator) -> np.ndarray:
    return rng.integers(0, 256, size=3).astype(np.float32)


def _background(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A (H, W, 3) float32 BGR background: gradient, noise, stripes or radial light."""
    kind = rng.integers(4)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    a, b = _random_colour(rng), _random_colour(rng)
    if kind == 0:  # linear gradient at a random angle
        angle = rng.uniform(0, 2 * math.pi)
        t = xx * math.cos(angle) + yy * math.sin(angle)
        t = (t - t.min()) / max(float(np.ptp(t)), 1.0)
        image = a + (b - a) * t[..., None]
    elif kind == 1:  # flat colour under Gaussian noise
        image = np.broadcast_to(a, (height, width, 3)).copy()
        image += rng.normal(0, rng.uniform(5, 25), size=image.shape).astype(np.float32)
    elif kind == 2:  # stripes: a texture that is not an object
        period = rng.uniform(6, 40)
        angle = rng.uniform(0, math.pi)
        t = np.sin((xx * math.cos(angle) + yy * math.sin(angle)) * 2 * math.pi / period)
        image = a + (b - a) * (0.5 + 0.25 * t)[..., None]
    else:  # radial light
        cx, cy = rng.uniform(0, width), rng.uniform(0, height)
        r = np.hypot(xx - cx, yy - cy) / math.hypot(width, height)
        image = a + (b - a) * np.clip(r, 0, 1)[..., None]
    return image.astype(np.float32)


def _clutter(rng: np.random.Generator, image: np.ndarray) -> None:
    """Thin lines, arcs and crosses: distractors that carry no label."""
    height, width = image.shape[:2]
    for _ in range(rng.integers(0, 5)):
        colour = tuple(float(c) for c in _random_colour(rng))
        p1 = (int(rng.integers(0, width)), int(rng.integers(0, height)))
        kind = rng.integers(3)
        if kind == 0:
            p2 = (int(rng.integers(0, width)), int(rng.integers(0, height)))
            cv2.line(image, p1, p2, colour, int(rng.integers(1, 3)), cv2.LINE_AA)
        elif kind == 1:
            axes = (int(rng.integers(8, 60)), int(rng.integers(8, 60)))
            start = float(rng.uniform(0, 360))
            cv2.ellipse(image, p1, axes, 0, start, start + rng.uniform(40, 160), colour, 1, cv2.LINE_AA)
        else:
            s = int(rng.integers(3, 8))
            cv2.line(image, (p1[0] - s, p1[1]), (p1[0] + s, p1[1]), colour, 1)
            cv2.line(image, (p1[0], p1[1] - s), (p1[0], p1[1] + s), colour, 1)


def _outline_points(rng: np.random.Generator, class_id: int, cx: float, cy: float, size: float) -> np.ndarray:
    """(K, 2) float32 polygon of one shape of `size` pixels across, centred at (cx, cy)."""
    r = size / 2
    rotation = rng.uniform(0, 2 * math.pi)
    if class_id == 0:  # circle (slightly elliptic)
        aspect = rng.uniform(0.8, 1.25)
        t = np.linspace(0, 2 * math.pi, 48, endpoint=False)
        pts = np.stack([r * np.cos(t) * aspect ** 0.5, r * np.sin(t) / aspect ** 0.5], axis=1)
        rotation = 0.0
    elif class_id == 1:  # rectangle, mildly rotated
        aspect = rng.uniform(0.5, 2.0)
        w, h = size * math.sqrt(aspect) / 1.2, size / math.sqrt(aspect) / 1.2
        pts = np.array([[-w, -h], [w, -h], [w, h], [-w, h]]) / 2
        rotation = rng.uniform(-math.pi / 9, math.pi / 9)
    elif class_id == 2:  # triangle with jittered corners
        angles = np.array([0, 2 * math.pi / 3, 4 * math.pi / 3]) + rng.uniform(-0.25, 0.25, 3)
        pts = np.stack([r * np.cos(angles), r * np.sin(angles)], axis=1)
    else:  # five-pointed star
        angles = np.arange(10) * math.pi / 5
        radii = np.where(np.arange(10) % 2 == 0, r, r * rng.uniform(0.38, 0.5))
        pts = np.stack([radii * np.cos(angles), radii * np.sin(angles)], axis=1)
    c, s = math.cos(rotation), math.sin(rotation)
    pts = pts @ np.array([[c, s], [-s, c]])
    return (pts + [cx, cy]).astype(np.float32)


def _overlap_of_smaller(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    """Intersection over the smaller box's area: 1.0 when one box holds the other."""
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    smaller = min((a[2] - a[0]) * (a[3] - a[1]), (b[2] - b[0]) * (b[3] - b[1]))
    return iw * ih / smaller if smaller > 0 else 0.0


def _place_object(rng: np.random.Generator, width: int, height: int, taken: list[ShapeObject]):
    """Pick a class, size and position; return (class_id, polygon, clipped box) or None."""
    class_id = int(rng.integers(len(CLASS_NAMES)))
    largest = 0.6 * min(width, height)
    smallest = MIN_OBJECT_PX if rng.random() < SMALL_OBJECT_SHARE else COMMON_OBJECT_PX
    size = float(math.exp(rng.uniform(math.log(smallest), math.log(largest))))
    margin = -0.3 * size if rng.random() < 0.15 else size / 2  # some objects cut by the border
    cx = rng.uniform(margin, width - margin) if width > 2 * margin else width / 2
    cy = rng.uniform(margin, height - margin) if height > 2 * margin else height / 2
    pts = _outline_points(rng, class_id, cx, cy, size)
    x1, y1 = pts.min(axis=0)
    x2, y2 = pts.max(axis=0)
    full_area = (x2 - x1) * (y2 - y1)
    box = (max(0.0, float(x1)), max(0.0, float(y1)), min(float(width), float(x2)), min(float(height), float(y2)))
    bw, bh = box[2] - box[0], box[3] - box[1]
    if bw < 4 or bh < 4 or bw * bh < MIN_VISIBLE_FRACTION * full_area:
        return None
    if any(_overlap_of_smaller(box, other.box) > MAX_OVERLAP for other in taken):
        return None
    return class_id, pts, box


def _draw_objects(rng: np.random.Generator, image: np.ndarray) -> list[ShapeObject]:
    height, width = image.shape[:2]
    wanted = int(rng.choice([1, 2, 3, 4, 5, 6, 8], p=[0.15, 0.2, 0.2, 0.15, 0.12, 0.1, 0.08]))
    objects: list[ShapeObject] = []
    for _ in range(wanted * 4):
        if len(objects) == wanted:
            break
        placed = _place_object(rng, width, height, objects)
        if placed is None:
            continue
        class_id, pts, box = placed
        centre = np.clip(pts.mean(axis=0).astype(int), 0, [width - 1, height - 1])
        under = image[centre[1], centre[0]]
        colour = _random_colour(rng)
        for _ in range(10):  # enough contrast to be visible, as a photographer would ensure
            if np.abs(colour - under).mean() > MIN_CONTRAST:
                break
            colour = _random_colour(rng)
        poly = np.round(pts * 16).astype(np.int32)  # 4 fractional bits, for sub-pixel edges
        colour_t = tuple(float(c) for c in colour)
        thickness = 0
        if rng.random() < 0.7:
            cv2.fillPoly(image, [poly], colour_t, cv2.LINE_AA, shift=4)
        else:
            thickness = max(2, int(math.sqrt((box[2] - box[0]) * (box[3] - box[1])) / 10))
            cv2.polylines(image, [poly], True, colour_t, thickness, cv2.LINE_AA, shift=4)
        outline = tuple((float(x), float(y)) for x, y in poly / 16)  # the fixed-point vertices drawn
        objects.append(ShapeObject(class_id, box, outline, thickness))
    return objects


def _lighting(rng: np.random.Generator, image: np.ndarray) -> np.ndarray:
    """Global gain and bias, an illumination ramp, sometimes blur."""
    height, width = image.shape[:2]
    ramp = np.linspace(rng.uniform(0.7, 1.0), rng.uniform(1.0, 1.3), width if rng.random() < 0.5 else height)
    ramp = ramp[None, :, None] if ramp.size == width else ramp[:, None, None]
    image = image * rng.uniform(0.6, 1.3) * ramp + rng.uniform(-30, 30)
    if rng.random() < 0.3:
        image = cv2.GaussianBlur(image, (0, 0), rng.uniform(0.5, 1.2))
    return np.clip(image, 0, 255).astype(np.uint8)


def render_image(seed: int, split: str, index: int) -> tuple[np.ndarray, list[ShapeObject]]:
    """Draw image `index` of `split`: (H, W, 3) uint8 BGR and its objects."""
    rng = np.random.default_rng([seed, _SPLIT_IDS[split], index])
    width = int(rng.integers(256, 513))
    height = int(np.clip(width / rng.uniform(0.75, 2.0), 160, 512))
    image = _background(rng, height, width)
    _clutter(rng, image)
    objects = _draw_objects(rng, image)
    return _lighting(rng, image), objects


def write_dataset(out_dir: str | Path, seed: int = DEFAULT_SEED, splits=("train", "val", "calib"),
                  sizes: dict[str, int] | None = None, task: DemoTask | str = DemoTask.DETECT) -> Path:
    """Write the chosen splits under out_dir in the Ultralytics layout; return the data.yaml path.

    images/<split>/<split>_NNNNN.jpg, labels/<split>/<same>.txt for the labelled splits, in the
    format of `task` (DemoTask or its name); the images do not depend on the task. out_dir must be
    new or empty (the user's own images must never join a split); data.yaml names no absolute path,
    so the folder can be moved (Ultralytics then reads it relative to the yaml).
    """
    task = DemoTask.from_value(task)
    unknown = set(splits) - set(SPLIT_SIZES)
    if unknown:
        raise ConfigError(f"unknown split(s) {', '.join(sorted(unknown))}: choose from {', '.join(SPLIT_SIZES)}")
    out = Path(out_dir).resolve()
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise OutputError(f"{out}: not a new or empty folder; the demo dataset is written only into one")
    sizes = {**SPLIT_SIZES, **(sizes or {})}
    for split in splits:
        image_dir = out / "images" / split
        image_dir.mkdir(parents=True, exist_ok=True)
        label_dir = out / "labels" / split
        if split in LABELLED_SPLITS:
            label_dir.mkdir(parents=True, exist_ok=True)
        for index in range(sizes[split]):
            image, objects = render_image(seed, split, index)
            stem = f"{split}_{index:05d}"
            quality = 75 + (index * 7) % 21
            ok, encoded = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
            if not ok:
                raise RuntimeError(f"OpenCV could not encode demo image {stem}")
            (image_dir / f"{stem}.jpg").write_bytes(encoded.tobytes())
            if split in LABELLED_SPLITS:
                lines = label_lines(task, objects, *image.shape[:2])
                (label_dir / f"{stem}.txt").write_text("".join(line + "\n" for line in lines))
    data_yaml = out / "data.yaml"
    spec = {
        "train": "images/train",
        "val": "images/val",
        "names": dict(enumerate(CLASS_NAMES)),
        **yaml_entries(task),
        "quantlab_seed": seed,
    }
    data_yaml.write_text(yaml.safe_dump(spec, sort_keys=False))
    return data_yaml
