"""The self-check every quantized model passes before it is written: onnxruntime loads it, and
on a few calibration images its outputs agree with the FP32 model's, box and score channels apart.

The score floor separates a working INT8 model from a broken one with room on both sides: the
demo's good recipes sit above 0.998, a quantized YOLOv8 head (one scale across box pixels and
class probabilities) at 0.0.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort

from quantlab.bench import session_options
from quantlab.errors import QuantizationError, first_line
from quantlab.metrics import OutputParity
from quantlab.onnxmodel import DEFAULT_INPUT_HW

MIN_SCORE_COSINE = 0.98
MIN_BOX_COSINE = 0.98
CHECK_IMAGES = 4


@dataclass(frozen=True)
class SelfCheck:
    """Agreement of an INT8 model with its FP32 source on `images` inputs."""

    images: int
    box_cosine: float
    score_cosine: float

    @property
    def passed(self) -> bool:
        """True when it agrees, or when there were no images to compare on (it loaded and ran)."""
        return self.images == 0 or (self.score_cosine >= MIN_SCORE_COSINE and self.box_cosine >= MIN_BOX_COSINE)

    def summary(self) -> str:
        if self.images == 0:
            return "loads and runs; outputs not compared with FP32 (no calibration images: give --calib)"
        return (f"score cosine {self.score_cosine:.4f} (floor {MIN_SCORE_COSINE}), box cosine "
                f"{self.box_cosine:.4f} (floor {MIN_BOX_COSINE}) on {self.images} image(s)")

    def as_dict(self) -> dict:
        compared = self.images > 0
        return {"images": self.images, "box_cosine": self.box_cosine if compared else None,
                "score_cosine": self.score_cosine if compared else None, "passed": self.passed}


def _grey_feed(session: ort.InferenceSession) -> dict:
    """A mid-grey (114, as the letterbox pads) input at the model's fixed size, or the default one."""
    image = session.get_inputs()[0]
    h, w = (d if isinstance(d, int) and d > 0 else default for d, default in zip(image.shape[2:4], DEFAULT_INPUT_HW))
    return {image.name: np.full((1, 3, h, w), 114 / 255, np.float32)}


def _outputs(path: Path, feeds: Sequence[dict], what: str) -> list[np.ndarray]:
    """The first output for each feed (a grey image when there are none)."""
    try:
        session = ort.InferenceSession(str(path), session_options(1), providers=["CPUExecutionProvider"])
        return [session.run(None, feed)[0] for feed in (feeds or [_grey_feed(session)])]
    except Exception as exc:  # onnxruntime's own error types share no base class but Exception
        raise QuantizationError(f"onnxruntime cannot run the {what}: {first_line(exc)}") from exc


def self_check(fp32_path: Path, int8_path: Path, feeds: Sequence[dict]) -> SelfCheck:
    """Run both models on `feeds` ({input: (1, 3, H, W) float32}) and compare their outputs.

    Without feeds it only checks that the quantized model loads and runs on a grey image.
    Raises QuantizationError when onnxruntime cannot load or run the quantized model.
    """
    if not feeds:
        _outputs(int8_path, [], "quantized model")
        return SelfCheck(0, float("nan"), float("nan"))
    parity = OutputParity()
    references = _outputs(fp32_path, feeds, "FP32 model")
    for output, reference in zip(_outputs(int8_path, feeds, "quantized model"), references):
        parity.update(output, reference)
    result = parity.compute()
    return SelfCheck(len(feeds), result["boxes"]["cosine"], result["scores"]["cosine"])
