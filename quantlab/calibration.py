"""A streaming, seeded onnxruntime CalibrationDataReader over a folder of images."""

from __future__ import annotations

import hashlib
import os
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from onnxruntime.quantization import CalibrationDataReader

from quantlab.errors import ImageError, SkippedImageWarning
from quantlab.images import read_image
from quantlab.preprocess import letterbox

DEFAULT_NUM_CALIB = 100


def sample_images(paths: Sequence[Path], num_images: int, seed: int) -> list[Path]:
    """`num_images` of `paths` (all when fewer), chosen by `seed`, kept in their sorted order."""
    if num_images < 1:
        raise ValueError(f"num_images must be at least 1, got {num_images}")
    ordered = sorted(paths)
    if num_images >= len(ordered):
        return ordered
    chosen = np.random.default_rng(seed).choice(len(ordered), size=num_images, replace=False)
    return [ordered[i] for i in sorted(chosen)]


def split_sample(paths: Sequence[Path], num_calib: int, num_check: int, seed: int) -> tuple[list[Path], list[Path]]:
    """(calibration sample, check images): images to calibrate on and images held out to judge the result.

    The calibration sample is sample_images(paths, num_calib, seed) whenever num_check images are left
    over; from a smaller folder up to num_check (at most half of it) are held out first and the rest
    calibrate. A single image both calibrates and judges: there is nothing to hold out (check is empty).
    """
    ordered = sorted(paths)
    if len(ordered) - num_calib >= num_check:
        calib = sample_images(ordered, num_calib, seed)
        chosen = set(calib)
        return calib, sample_images([p for p in ordered if p not in chosen], num_check, seed)
    held_out = min(num_check, len(ordered) // 2)
    if held_out == 0:
        return ordered, []
    check = sample_images(ordered, held_out, seed)
    chosen = set(check)
    return sample_images([p for p in ordered if p not in chosen], num_calib, seed), check


def sample_digest(paths: Sequence[Path]) -> str:
    """sha256 over the sampled file names, to record which images calibrated a model."""
    return hashlib.sha256(b"\n".join(os.fsencode(p.name) for p in paths)).hexdigest()  # any file name


class ImageCalibrationReader(CalibrationDataReader):
    """Feeds letterboxed images to onnxruntime one at a time; holds at most one tensor.

    get_next() returns {input_name: (1, 3, H, W) float32} or None when done; rewind() restarts.
    """

    def __init__(self, paths: Sequence[Path], input_name: str, input_hw: tuple[int, int],
                 num_images: int = DEFAULT_NUM_CALIB, seed: int = 0):
        self.paths = sample_images(paths, num_images, seed)
        self.input_name = input_name
        self.input_hw = tuple(input_hw)
        self.used = 0  # images actually fed in the last pass (unreadable ones are skipped)
        self._position = 0

    def __len__(self) -> int:
        return len(self.paths)

    def get_next(self) -> dict[str, np.ndarray] | None:
        while self._position < len(self.paths):
            path = self.paths[self._position]
            self._position += 1
            try:
                tensor, _ = letterbox(read_image(path), self.input_hw)
            except ImageError as exc:
                warnings.warn(f"skipping {exc}", SkippedImageWarning, stacklevel=2)
                continue
            self.used += 1
            return {self.input_name: tensor}
        return None

    def rewind(self) -> None:
        self._position = 0
        self.used = 0
