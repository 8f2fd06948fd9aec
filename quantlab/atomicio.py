"""Atomic file writes (temporary file in the destination folder, then rename) and file hashing."""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from pathlib import Path

from quantlab.errors import OutputError


def _open_temp_beside(destination: Path) -> tuple[int, str]:
    folder = destination.parent
    if not folder.is_dir():
        raise OutputError(f"{destination}: output folder {folder} does not exist")
    try:
        return tempfile.mkstemp(prefix=f".{destination.stem[:40]}.", suffix=".tmp", dir=folder)
    except OSError as exc:
        raise OutputError(f"{destination}: cannot write to {folder} ({exc.strerror or exc})") from exc


def check_writable(destination: Path) -> None:
    """Fail before any work if a file cannot be created beside `destination`."""
    fd, tmp = _open_temp_beside(Path(destination))
    os.close(fd)
    os.unlink(tmp)


def atomic_write_bytes(destination: Path, data: bytes) -> None:
    """Write `data` at `destination`, or leave whatever was there untouched (also on interrupt)."""
    destination = Path(destination)
    fd, tmp = _open_temp_beside(destination)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, destination)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
