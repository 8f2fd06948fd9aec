"""The YOLOv8 letterbox (Ultralytics LetterBox, auto=False, center=True) and its inverse for boxes."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from quantlab.errors import ImageError

PAD_VALUE = 114


@dataclass(frozen=True)
class Letterbox:
    """How an image of `image_hw` was fitted into `input_hw`: scale, then pad left/top."""

    image_hw: tuple[int, int]
    input_hw: tuple[int, int]
    scale: float
    pad_left: int
    pad_top: int


def _resized_hw(image_hw: tuple[int, int], scale: float) -> tuple[int, int]:
    """The image's size after scaling, rounded as Ultralytics does; thin images keep 1 px."""
    return max(round(image_hw[0] * scale), 1), max(round(image_hw[1] * scale), 1)


def to_bgr8(image: np.ndarray) -> np.ndarray:
    """Normalise grayscale (H, W) or (H, W, 1), BGRA, and 16-bit images to (H, W, 3) uint8 BGR."""
    if image.dtype == np.uint16:
        image = (image >> 8).astype(np.uint8)  # the 8-bit image whose 16-bit form is v * 257
    elif image.dtype != np.uint8:
        raise ImageError(f"image dtype {image.dtype} is not supported: expected uint8 or uint16")
    if image.ndim == 2 or (image.ndim == 3 and image.shape[2] == 1):
        return cv2.cvtColor(image.reshape(image.shape[:2]), cv2.COLOR_GRAY2BGR)
    if image.ndim == 3 and image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    if image.ndim == 3 and image.shape[2] == 3:
        return image
    raise ImageError(f"image shape {image.shape} is not an image: expected (H, W), (H, W, 1|3|4)")


def fit(image_hw: tuple[int, int], input_hw: tuple[int, int]) -> tuple[Letterbox, tuple[int, int]]:
    """The letterbox geometry and the resized content size (h, w), rounded as Ultralytics does."""
    h, w = image_hw
    scale = min(input_hw[0] / h, input_hw[1] / w)
    new_h, new_w = _resized_hw(image_hw, scale)
    pad_top = round((input_hw[0] - new_h) / 2 - 0.1)
    pad_left = round((input_hw[1] - new_w) / 2 - 0.1)
    return Letterbox((h, w), tuple(input_hw), scale, pad_left, pad_top), (new_h, new_w)


def letterbox(image: np.ndarray, input_hw: tuple[int, int]) -> tuple[np.ndarray, Letterbox]:
    """Fit a BGR image into input_hw for YOLOv8.

    Returns the tensor (1, 3, H, W) float32 RGB in [0, 1], padding 114/255, and the geometry.
    """
    image = to_bgr8(image)
    geometry, (new_h, new_w) = fit(image.shape[:2], input_hw)
    if (new_h, new_w) != image.shape[:2]:
        image = cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
    bottom = input_hw[0] - new_h - geometry.pad_top
    right = input_hw[1] - new_w - geometry.pad_left
    padded = cv2.copyMakeBorder(image, geometry.pad_top, bottom, geometry.pad_left, right,
                                cv2.BORDER_CONSTANT, value=(PAD_VALUE,) * 3)
    chw = padded[:, :, ::-1].transpose(2, 0, 1)  # BGR -> RGB, HWC -> CHW
    tensor = np.ascontiguousarray(chw, dtype=np.float32)[None] / np.float32(255)
    return tensor, geometry


def points_to_image(points: np.ndarray, geometry: Letterbox) -> np.ndarray:
    """Map (N, 2) x y points in letterbox pixels to original-image pixels (not clipped)."""
    out = np.asarray(points, dtype=np.float32).reshape(-1, 2).copy()
    out[:, 0] = (out[:, 0] - geometry.pad_left) / geometry.scale
    out[:, 1] = (out[:, 1] - geometry.pad_top) / geometry.scale
    return out


def boxes_to_image(boxes: np.ndarray, geometry: Letterbox) -> np.ndarray:
    """Map (N, 4) x1 y1 x2 y2 boxes in letterbox pixels to original-image pixels, clipped."""
    out = points_to_image(np.asarray(boxes, dtype=np.float32).reshape(-1, 2), geometry).reshape(-1, 4)
    h, w = geometry.image_hw
    out[:, [0, 2]] = out[:, [0, 2]].clip(0, w)
    out[:, [1, 3]] = out[:, [1, 3]].clip(0, h)
    return out
