"""quantlab's exceptions: each message names the file or value, the cause, and the fix."""


class QuantlabError(Exception):
    """Base class: a problem quantlab can explain in one line."""


class InputError(QuantlabError):
    """A user-supplied file or folder is missing, unreadable or not what it claims to be."""


class ModelError(InputError):
    """An ONNX model cannot be used: not ONNX, truncated, FP16, not an image model."""


class ImageError(InputError):
    """An image or image folder cannot be used."""


class DatasetError(InputError):
    """A data.yaml or label file cannot be used."""


class ConfigError(QuantlabError, ValueError):
    """A setting has an invalid value."""


class CompatibilityError(QuantlabError):
    """The installed onnxruntime cannot honour a requested option."""


class QuantizationError(QuantlabError):
    """onnxruntime failed to quantize a model that passed validation."""


class OutputError(QuantlabError):
    """An output path cannot be written."""


class SkippedImageWarning(UserWarning):
    """An image file was unreadable and was skipped."""
