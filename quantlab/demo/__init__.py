"""The embedded demo: a pruned YOLOv8n trained on generated shapes, and the generator of its data."""

from __future__ import annotations

from pathlib import Path

from quantlab.choice import Choice
from quantlab.jsonio import read_json

DEMO_DIR = Path(__file__).resolve().parent
DEMO_MODEL = DEMO_DIR / "yolov8n_shapes_pruned.onnx"
MODEL_CARD = DEMO_DIR / "model_card.json"


class DemoTask(Choice):
    """The label format of the demo dataset (Ultralytics' task names); the images are the same for each."""

    DETECT = "detect"  # class cx cy w h
    SEGMENT = "segment"  # class x1 y1 ... xn yn: the visible region's polygon
    POSE = "pose"  # class cx cy w h, then x y v for the outline's top, right, bottom, left points
    OBB = "obb"  # class x1 y1 ... x4 y4: the visible region's min-area rectangle


def load_card() -> dict:
    """The model card: training and pruning settings, Ultralytics' val mAP, size, sha256."""
    return read_json(MODEL_CARD, "the demo model card")
