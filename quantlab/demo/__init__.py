"""The embedded demo: a pruned YOLOv8n trained on generated shapes, and the generator of its data."""

from __future__ import annotations

import json
from pathlib import Path

DEMO_DIR = Path(__file__).resolve().parent
DEMO_MODEL = DEMO_DIR / "yolov8n_shapes_pruned.onnx"
MODEL_CARD = DEMO_DIR / "model_card.json"


def load_card() -> dict:
    """The model card: training and pruning settings, Ultralytics' val mAP, size, sha256."""
    return json.loads(MODEL_CARD.read_text())
