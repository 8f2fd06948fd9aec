"""The embedded demo: a pruned YOLOv8n trained on generated shapes, and the generator of its data."""

from __future__ import annotations

import enum
import json
from pathlib import Path

from quantlab.errors import ConfigError

DEMO_DIR = Path(__file__).resolve().parent
DEMO_MODEL = DEMO_DIR / "yolov8n_shapes_pruned.onnx"
MODEL_CARD = DEMO_DIR / "model_card.json"


class DemoTask(enum.Enum):
    """The label format of the demo dataset (Ultralytics' task names); the images are the same for each."""

    DETECT = "detect"  # class cx cy w h
    SEGMENT = "segment"  # class x1 y1 ... xn yn: the visible region's polygon
    POSE = "pose"  # class cx cy w h, then x y v for the outline's top, right, bottom, left points
    OBB = "obb"  # class x1 y1 ... x4 y4: the visible region's min-area rectangle

    @classmethod
    def from_value(cls, value: DemoTask | str) -> DemoTask:
        if isinstance(value, cls):
            return value
        for member in cls:
            if str(value).lower() == member.value:
                return member
        raise ConfigError(f"demo task {value!r} is not valid: choose one of {', '.join(m.value for m in cls)}")


def load_card() -> dict:
    """The model card: training and pruning settings, Ultralytics' val mAP, size, sha256."""
    return json.loads(MODEL_CARD.read_text())
