"""Build each suite artifact once per content hash, kept across runs and shared between pytest-xdist workers.

The store is a folder of entries, `root/<key>/`, one per content hash (content_key: the inputs and the versions
that decide the bytes). The plugin keeps it in pytest's cache folder (.pytest_cache/d/quantlab, emptied by
--cache-clear), in --quantlab-cache-dir, or, with pytest's cache off (-p no:cacheprovider), in this run's base
temp folder as pytest-xdist's recipe for once-only session fixtures does.

- Once: a file lock per key makes the first process build while the others wait, then read its entry.
- Whole or absent: an entry is built in a staging folder beside it and renamed into place with its manifest
  (the sha256 of every file), so a build that crashed or was killed leaves no entry.
- Never trusted blindly: every use re-hashes the entry's files against its manifest (cheap for the small
  models quantlab gates); an entry changed or half-removed since is rebuilt, not used.
- Bounded: after each build, the least recently used entries beyond MAX_ENTRIES or MAX_BYTES are removed
  (never one this process used, never one another process holds the lock of).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from filelock import FileLock, Timeout

import quantlab
from quantlab.atomicio import sha256_file

MANIFEST = "quantlab-entry.json"  # in each entry: {"file": the file asked for, "sha256": {relative path: hex}}
STAGING = ".staging-"
MAX_ENTRIES = 20
MAX_BYTES = 2 * 1024**3
_KEY_LOCK = re.compile(r".+-[0-9a-f]{16}\.lock")


def file_digest(paths: Iterable[Path]) -> str:
    """sha256 over the names and bytes of `paths`, in the order given."""
    digest = hashlib.sha256()
    for path in paths:
        digest.update(os.fsencode(path.name) + b"\0" + Path(path).read_bytes())
    return digest.hexdigest()


def content_key(label: str, **parts) -> str:
    """'<label>-<16 hex>': a hash of `parts` (JSON values) and the versions that decide the bytes."""
    versions = {"quantlab": quantlab.__version__, "onnxruntime": ort.__version__, "onnx": onnx.__version__,
                "numpy": np.__version__}
    text = json.dumps({"parts": parts, "versions": versions}, sort_keys=True, default=str)
    return f"{label}-{hashlib.sha256(text.encode()).hexdigest()[:16]}"


def shared_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The folder every worker of this run sees: the base temp's parent under xdist, else the base temp."""
    base = tmp_path_factory.getbasetemp()
    return (base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base) / "quantlab-artifacts"


def _files(folder: Path) -> dict[str, Path]:
    """Every file below `folder` but the manifest, by its path relative to it."""
    return {p.relative_to(folder).as_posix(): p for p in folder.rglob("*")
            if p.is_file() and p.name != MANIFEST}


class ArtifactStore:
    """root/<key>/<file>, each built by exactly one process, kept until evicted or cleared.

    built and reused count this object's calls of build_once: what it built, what it found intact.
    """

    def __init__(self, root: Path, max_entries: int = MAX_ENTRIES, max_bytes: int = MAX_BYTES):
        self.root = root
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.built = 0
        self.reused = 0
        self._used: set[str] = set()
        root.mkdir(parents=True, exist_ok=True)

    def build_once(self, key: str, filename: str, build: Callable[[Path], object]) -> Path:
        """root/key/filename; build(path) runs unless an intact entry of `key` is there already.

        build writes the file at the path it is given (and may write other files beside it, in its own
        folder); it raises when it fails, and then no entry is made.
        """
        entry = self.root / key
        self._used.add(key)
        with FileLock(str(self.root / f"{key}.lock")):
            if self._intact(entry, filename):
                os.utime(entry / MANIFEST)  # its last use, for eviction
                self.reused += 1
                return entry / filename
            self._remove(entry)
            for leftover in self.root.glob(f"{STAGING}{key}-*"):  # a builder killed while it held this lock
                shutil.rmtree(leftover, ignore_errors=True)
            stage = Path(tempfile.mkdtemp(prefix=f"{STAGING}{key}-", dir=self.root))
            try:
                build(stage / filename)
                if not (stage / filename).is_file():
                    raise FileNotFoundError(f"{stage / filename}: the build wrote no file")
                hashes = {name: sha256_file(path) for name, path in _files(stage).items()}
                (stage / MANIFEST).write_text(json.dumps({"file": filename, "sha256": hashes}))
                os.rename(stage, entry)
            finally:
                shutil.rmtree(stage, ignore_errors=True)
            self.built += 1
        self._evict()
        return entry / filename

    @staticmethod
    def _intact(entry: Path, filename: str) -> bool:
        """The entry holds exactly the files its manifest lists, each with its recorded sha256."""
        try:
            manifest = json.loads((entry / MANIFEST).read_text())
            files = _files(entry)
            return (manifest["file"] == filename and set(files) == set(manifest["sha256"])
                    and all(sha256_file(files[name]) == digest for name, digest in manifest["sha256"].items()))
        except (OSError, ValueError, KeyError, TypeError):
            return False

    @staticmethod
    def _remove(entry: Path) -> None:
        """Remove an entry: first its manifest (a half-removed entry is never intact), then the rest."""
        (entry / MANIFEST).unlink(missing_ok=True)
        shutil.rmtree(entry, ignore_errors=True)

    def entries(self) -> list[Path]:
        """The entries, most recently used first."""
        found = [p for p in self.root.iterdir() if (p / MANIFEST).is_file()]
        return sorted(found, key=lambda p: (p / MANIFEST).stat().st_mtime, reverse=True)

    def _evict(self) -> None:
        """Remove the least recently used entries beyond max_entries or max_bytes, but those in use."""
        kept, size = 0, 0
        for entry in self.entries():
            entry_bytes = sum(p.stat().st_size for p in entry.rglob("*") if p.is_file())
            if entry.name in self._used or (kept < self.max_entries and size + entry_bytes <= self.max_bytes):
                kept, size = kept + 1, size + entry_bytes
                continue
            try:
                with FileLock(str(self.root / f"{entry.name}.lock"), timeout=0):
                    self._remove(entry)
            except Timeout:  # another process is using it
                continue

    def clear(self) -> None:
        """Remove every entry, staging folder and lock file of the store (nothing else in its folder)."""
        for path in list(self.root.iterdir()):
            if (path / MANIFEST).is_file() or path.name.startswith(STAGING):
                self._remove(path)
            elif _KEY_LOCK.fullmatch(path.name):
                path.unlink(missing_ok=True)
