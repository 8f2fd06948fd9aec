"""Build each suite artifact once per content hash, shared between pytest-xdist workers.

pytest-xdist runs session fixtures once per worker. Following its documented recipe, the artifacts
live in the base temp folder all workers share (`getbasetemp().parent` under xdist), and a file
lock per content hash makes the first worker build while the others wait, then read its result.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from filelock import FileLock

import quantlab


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


class ArtifactStore:
    """root/<key>/<file>, each built by exactly one process of the run."""

    def __init__(self, root: Path):
        self.root = root
        root.mkdir(parents=True, exist_ok=True)

    def build_once(self, key: str, filename: str, build: Callable[[Path], object]) -> Path:
        """root/key/filename; build(that path) runs unless another worker already built it.

        build must leave the file in place only when it succeeded (quantlab writes results atomically).
        """
        target = self.root / key / filename
        with FileLock(str(self.root / f"{key}.lock")):
            if not target.exists():
                target.parent.mkdir(parents=True, exist_ok=True)
                build(target)
        return target
