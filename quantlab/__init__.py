"""quantlab: quantize YOLO ONNX models (detect, segment, pose, OBB) to INT8 and prove they are smaller, faster and as accurate."""

__version__ = "0.2.0"
