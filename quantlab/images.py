"""Find and decode images on disk, Unicode-safe, skipping corrupt files with a warning."""

from __future__ import annotations

import os
import stat
import warnings
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import BinaryIO

import cv2
import numpy as np

from quantlab.errors import ImageError, SkippedImageWarning
from quantlab.imageheader import HeaderError, ImageHeader, read_header
from quantlab.textsafe import for_terminal

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"})
ALLOW_OUTSIDE_ROOT = "QUANTLAB_ALLOW_OUTSIDE_ROOT"  # =1: follow symlinks and list entries out of a dataset
# Images are decoded whole (3 bytes a pixel) before the letterbox shrinks them: 120 MP (360 MB decoded) covers
# 100 MP medium-format cameras (Fujifilm GFX100: 11648 x 8736); a 50 kB file claiming 400 MP is a bomb.
MAX_IMAGE_PIXELS = 120_000_000
# The most bytes an image within that budget takes even uncompressed at 16-bit RGBA (8 bytes a pixel)
MAX_IMAGE_FILE_BYTES = 1 << 30


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
            warnings.warn(f"skipping {for_terminal(image)}: a symlink leading outside the dataset root "
                          f"{for_terminal(root)} ({ALLOW_OUTSIDE_ROOT}=1 follows it)", SkippedImageWarning, stacklevel=3)
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
        found = f"{len(files)} other files ({for_terminal(', '.join(others[:8]))})" if files else "nothing"
        hint = "" if recursive else "; images in sub-folders need recursive=True / --recursive"
        raise ImageError(
            f"{folder}: no images ({', '.join(sorted(IMAGE_SUFFIXES))}) found, only {found}{hint}"
        )
    resolved_root = Path(root or folder).resolve()
    kept = _inside(images, resolved_root)
    if not kept:
        raise ImageError(f"{folder}: each of its {len(images)} images is a symlink leading outside "
                         f"{for_terminal(resolved_root)}; set {ALLOW_OUTSIDE_ROOT}=1 to follow them")
    return kept


def read_image(path: str | Path) -> np.ndarray:
    """Decode one file to (H, W, 3) uint8 BGR, as cv2.imread does (EXIF rotation, 16-bit scaled).

    Its header is read first: a file that is not a regular file, not a JPEG, PNG, BMP, WebP or TIFF by its
    first bytes, or that claims more than MAX_IMAGE_PIXELS, is refused (ImageError) before it is decoded.
    Bytes are read in Python and decoded by cv2.imdecode, so non-ASCII paths work on every OS.
    """
    path = Path(path)
    try:
        with _open_regular_file(path) as f:
            header = read_header(f)
            _check_claimed_size(path, header)
            data = _read_bounded(path, f)
    except HeaderError as exc:
        raise ImageError(f"{for_terminal(path)}: {exc}") from exc
    except OSError as exc:
        raise ImageError(f"{for_terminal(path)}: cannot be read ({exc.strerror or exc})") from exc
    try:
        image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    except cv2.error:  # some decoders raise on malformed data instead of returning None
        image = None
    if image is None:
        # imdecode returns None when it cannot allocate, too: asking for the same memory tells which
        # (MemoryError, not a skipped image, or calibration would quietly run on fewer images)
        del data
        np.empty((header.height, header.width, 3), np.uint8)
        raise ImageError(f"{for_terminal(path)}: not a decodable {header.format} image (truncated or corrupt)")
    return image


def _open_regular_file(path: Path) -> BinaryIO:
    """Open `path` for reading only if it is a regular file: a FIFO or a device is refused, not read
    (O_NONBLOCK: opening a FIFO without a writer would otherwise wait forever)."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    try:
        mode = os.fstat(fd).st_mode
    except OSError:
        os.close(fd)
        raise
    if not stat.S_ISREG(mode):
        os.close(fd)
        kind = "a directory" if stat.S_ISDIR(mode) else "a FIFO, socket or device"
        raise ImageError(f"{for_terminal(path)}: {kind}, not an image file")
    return os.fdopen(fd, "rb")


def _read_bounded(path: Path, f: BinaryIO) -> bytes:
    """The whole file, if it is no larger than MAX_IMAGE_FILE_BYTES (and did not grow past that meanwhile)."""
    size_bytes = os.fstat(f.fileno()).st_size
    if size_bytes > MAX_IMAGE_FILE_BYTES:
        raise ImageError(f"{for_terminal(path)}: {size_bytes >> 20} MiB, larger than any image within the "
                         f"{MAX_IMAGE_PIXELS // 1_000_000} MP budget ({MAX_IMAGE_FILE_BYTES >> 20} MiB)")
    f.seek(0)
    data = f.read(size_bytes + 1)  # one byte more: a file that grew since is refused, not read on
    if len(data) != size_bytes:
        raise ImageError(f"{for_terminal(path)}: changed while it was read")
    return data


def _check_claimed_size(path: Path, header: ImageHeader) -> None:
    """Refuse an empty image, or one whose decoded pixels would exceed the budget."""
    claimed = f"a {header.format} whose header claims {header.width}x{header.height} pixels"
    if header.pixels == 0:
        raise ImageError(f"{for_terminal(path)}: {claimed} (an empty image)")
    if header.pixels > MAX_IMAGE_PIXELS:
        raise ImageError(f"{for_terminal(path)}: {claimed} ({header.pixels / 1e6:.0f} MP), over the "
                         f"{MAX_IMAGE_PIXELS // 1_000_000} MP that quantlab decodes per image")


def iter_images(paths: Iterable[Path]) -> Iterator[tuple[Path, np.ndarray]]:
    """Yield (path, BGR image) one at a time; an unreadable file is skipped with one warning."""
    for path in paths:
        try:
            yield path, read_image(path)
        except ImageError as exc:
            warnings.warn(f"skipping {exc}", SkippedImageWarning, stacklevel=2)
