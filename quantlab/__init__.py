"""quantlab: quantize YOLOv8 ONNX detectors to INT8 and prove they are smaller, faster and as accurate."""

__version__ = "0.1.0"
