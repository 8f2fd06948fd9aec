"""The self-check every quantized model passes before it is written: onnxruntime loads it, and
on a few images held out from calibration its outputs agree with the FP32 model's, part by part
(judged on images it was calibrated on, an over-fitted calibration would pass).

The floor separates a working INT8 model from a broken one with room on both sides: the demo's
good recipes score above 0.998, a quantized YOLOv8 head (one scale across box pixels and class
probabilities) 0.0. Every part is held to it: boxes, scores, and the task's own values.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from quantlab.description import DEFAULT_INPUT_HW, ModelDescription
from quantlab.errors import QuantizationError, first_line
from quantlab.parity import OutputParity
from quantlab.sessions import inference_session

MIN_COSINE = 0.98  # every part of the output: boxes, scores, and the task's own (masks, keypoints, angle)
CHECK_IMAGES = 8  # held out from calibration where the folder has them (calibration.split_sample)


@dataclass(frozen=True)
class SelfCheck:
    """Agreement of an INT8 model with its FP32 source on `images` inputs: the cosine of each output part."""

    images: int
    cosines: dict[str, float]
    held_out: bool = True  # False: judged on calibration images, the folder being too small to hold any out

    @property
    def passed(self) -> bool:
        """True when every part agrees, or when there were no images to compare on (it loaded and ran)."""
        return self.images == 0 or all(c >= MIN_COSINE for c in self.cosines.values())

    def summary(self) -> str:
        if self.images == 0:
            return "loads and runs; outputs not compared with FP32 (no calibration images: give --calib)"
        parts = ", ".join(f"{name.replace('_', ' ')} cosine {c:.4f}" for name, c in self.cosines.items())
        images = "held-out image(s)" if self.held_out else "calibration image(s): too few images to hold any out"
        return f"{parts} (floor {MIN_COSINE}) on {self.images} {images}"

    def as_dict(self) -> dict:
        compared = self.images > 0
        return {"images": self.images, "held_out": self.held_out if compared else None,
                "cosines": self.cosines if compared else None, "passed": self.passed}


def _grey_feed(session) -> dict:
    """A mid-grey (114, as the letterbox pads) input at the model's fixed size, or the default one."""
    image = session.get_inputs()[0]
    h, w = (d if isinstance(d, int) and d > 0 else default for d, default in zip(image.shape[2:4], DEFAULT_INPUT_HW))
    return {image.name: np.full((1, 3, h, w), 114 / 255, np.float32)}


def _outputs(path: Path, feeds: Sequence[dict], what: str) -> list[list[np.ndarray]]:
    """Every output for each feed (a grey image when there are none), on onnxruntime's CPU provider: the file is
    judged before it is written, by the implementation every other provider is compared against."""
    try:
        session = inference_session(str(path))
        return [session.run(None, feed) for feed in (feeds or [_grey_feed(session)])]
    except Exception as exc:  # onnxruntime's own error types share no base class but Exception
        raise QuantizationError(f"onnxruntime cannot run the {what}: {first_line(exc)}") from exc


def self_check(fp32_path: Path, int8_path: Path, feeds: Sequence[dict], description: ModelDescription,
               held_out: bool = True) -> SelfCheck:
    """Run both models on `feeds` ({input: (1, 3, H, W) float32}) and compare their outputs part by part.

    Without feeds it only checks that the quantized model loads and runs on a grey image.
    Raises QuantizationError when onnxruntime cannot load or run the quantized model.
    """
    if not feeds:
        _outputs(int8_path, [], "quantized model")
        return SelfCheck(0, {})
    parity = OutputParity(description)
    references = _outputs(fp32_path, feeds, "FP32 model")
    for outputs, reference in zip(_outputs(int8_path, feeds, "quantized model"), references):
        parity.update(outputs, reference)
    result = parity.compute()
    return SelfCheck(len(feeds), {name: part["cosine"] for name, part in result.items() if isinstance(part, dict)},
                     held_out)
