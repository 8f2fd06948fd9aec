"""Find and decode images on disk, Unicode-safe, skipping corrupt files with a warning."""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Iterator
from pathlib import Path

import cv2
import numpy as np

from quantlab.errors import ImageError, SkippedImageWarning

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"})


def list_images(directory: str | Path, recursive: bool = False) -> list[Path]:
    """Image files under `directory` (by suffix, any case), sorted by path."""
    root = Path(directory)
    if not root.is_dir():
        raise ImageError(f"{root}: not a directory of images")
    candidates = root.rglob("*") if recursive else root.iterdir()
    files = [p for p in candidates if p.is_file() or (p.is_symlink() and not p.exists())]  # dangling: warned later
    images = sorted(p for p in files if p.suffix.lower() in IMAGE_SUFFIXES)
    if not images:
        others = sorted({p.suffix.lower() or "(no suffix)" for p in files})
        found = f"{len(files)} other files ({', '.join(others[:8])})" if files else "nothing"
        hint = "" if recursive else "; images in sub-folders need recursive=True / --recursive"
        raise ImageError(
            f"{root}: no images ({', '.join(sorted(IMAGE_SUFFIXES))}) found, only {found}{hint}"
        )
    return images


def read_image(path: str | Path) -> np.ndarray:
    """Decode one file to (H, W, 3) uint8 BGR, as cv2.imread does (EXIF rotation, 16-bit scaled).

    Bytes are read by numpy and decoded by cv2.imdecode, so non-ASCII paths work on every OS.
    """
    path = Path(path)
    try:
        data = np.fromfile(path, dtype=np.uint8)
    except OSError as exc:
        raise ImageError(f"{path}: cannot be read ({exc.strerror or exc})") from exc
    image = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    if image is None:
        raise ImageError(f"{path}: not a decodable image (empty, truncated or not an image format)")
    return image


def iter_images(paths: Iterable[Path]) -> Iterator[tuple[Path, np.ndarray]]:
    """Yield (path, BGR image) one at a time; an unreadable file is skipped with one warning."""
    for path in paths:
        try:
            yield path, read_image(path)
        except ImageError as exc:
            warnings.warn(f"skipping {exc}", SkippedImageWarning, stacklevel=2)
