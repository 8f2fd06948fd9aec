"""Find and decode images on disk, Unicode-safe, skipping corrupt files with a warning."""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterable, Iterator
from pathlib import Path

import cv2
import numpy as np

from quantlab.errors import ImageError, SkippedImageWarning, printable

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"})
ALLOW_OUTSIDE_ROOT = "QUANTLAB_ALLOW_OUTSIDE_ROOT"  # =1: follow symlinks and list entries out of a dataset


def leads_outside(path: Path, root: Path) -> bool:
    """Whether `path`, its symlinks and `..` followed, lies outside `root` (a resolved folder).

    A symlink loop or an unresolvable name counts as outside. Always False where the user set
    QUANTLAB_ALLOW_OUTSIDE_ROOT=1: a dataset from a stranger must not make quantlab read ~/.aws or /etc.
    """
    if os.environ.get(ALLOW_OUTSIDE_ROOT) == "1":
        return False
    try:
        return not path.resolve().is_relative_to(root)
    except (OSError, RuntimeError, ValueError):  # RuntimeError: a symlink loop; ValueError: a NUL in the name
        return True


def _inside(images: list[Path], root: Path) -> list[Path]:
    """`images` less those that are symlinks out of `root`, each skipped with a warning."""
    kept = []
    for image in images:
        if leads_outside(image, root):
            warnings.warn(f"skipping {printable(image)}: a symlink leading outside the dataset root "
                          f"{printable(root)} ({ALLOW_OUTSIDE_ROOT}=1 follows it)", SkippedImageWarning, stacklevel=3)
        else:
            kept.append(image)
    return kept


def list_images(directory: str | Path, recursive: bool = False, root: str | Path | None = None) -> list[Path]:
    """Image files under `directory` (by suffix, any case), sorted by path.

    A symlink leading outside `root` (default: `directory` itself) is skipped with a warning, unless
    QUANTLAB_ALLOW_OUTSIDE_ROOT=1.
    """
    folder = Path(directory)
    if not folder.is_dir():
        raise ImageError(f"{folder}: not a directory of images")
    candidates = folder.rglob("*") if recursive else folder.iterdir()
    files = [p for p in candidates if p.is_file() or (p.is_symlink() and not p.exists())]  # dangling: warned later
    images = sorted(p for p in files if p.suffix.lower() in IMAGE_SUFFIXES)
    if not images:
        others = sorted({p.suffix.lower() or "(no suffix)" for p in files})
        found = f"{len(files)} other files ({printable(', '.join(others[:8]))})" if files else "nothing"
        hint = "" if recursive else "; images in sub-folders need recursive=True / --recursive"
        raise ImageError(
            f"{folder}: no images ({', '.join(sorted(IMAGE_SUFFIXES))}) found, only {found}{hint}"
        )
    resolved_root = Path(root or folder).resolve()
    kept = _inside(images, resolved_root)
    if not kept:
        raise ImageError(f"{folder}: each of its {len(images)} images is a symlink leading outside "
                         f"{printable(resolved_root)}; set {ALLOW_OUTSIDE_ROOT}=1 to follow them")
    return kept


def read_image(path: str | Path) -> np.ndarray:
    """Decode one file to (H, W, 3) uint8 BGR, as cv2.imread does (EXIF rotation, 16-bit scaled).

    Bytes are read by numpy and decoded by cv2.imdecode, so non-ASCII paths work on every OS.
    """
    path = Path(path)
    try:
        data = np.fromfile(path, dtype=np.uint8)
    except OSError as exc:
        raise ImageError(f"{printable(path)}: cannot be read ({exc.strerror or exc})") from exc
    image = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    if image is None:
        raise ImageError(f"{printable(path)}: not a decodable image (empty, truncated or not an image format)")
    return image


def iter_images(paths: Iterable[Path]) -> Iterator[tuple[Path, np.ndarray]]:
    """Yield (path, BGR image) one at a time; an unreadable file is skipped with one warning."""
    for path in paths:
        try:
            yield path, read_image(path)
        except ImageError as exc:
            warnings.warn(f"skipping {exc}", SkippedImageWarning, stacklevel=2)
