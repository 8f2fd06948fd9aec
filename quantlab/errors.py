"""quantlab's exceptions and exit codes: each message names the file or value, the cause, and the fix."""

from __future__ import annotations

import enum


class ExitCode(enum.IntEnum):
    """What `quantlab` exits with (as pytest's ExitCode); `meaning` is what the docs' reference says of it."""

    OK = 0
    FAILED = 1
    USAGE = 2
    INTERNAL = 3
    INTERRUPTED = 130

    @property
    def meaning(self) -> str:
        return _EXIT_MEANINGS[self]


_EXIT_MEANINGS = {
    ExitCode.OK: "success",
    ExitCode.FAILED: "a gate, a comparison or a quantized model's self-check failed",
    ExitCode.USAGE: "bad usage or input: one line `quantlab: error: <file>: <cause>` (the traceback only with --debug)",
    ExitCode.INTERNAL: "a bug in quantlab: its traceback is printed; please report it",
    ExitCode.INTERRUPTED: "interrupted by SIGINT (143 for SIGTERM, 129 for SIGHUP): every previous output was left "
                          "as it was",
}


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
    """An output path cannot be written, or writing it would destroy or mix into a user's files."""


class SelfCheckError(QuantlabError):
    """A quantized model failed its check against the FP32 model; it was not written."""


class Interrupted(KeyboardInterrupt):
    """SIGINT, SIGTERM or SIGHUP arrived; raised so that staging folders and temp files are cleaned up."""

    def __init__(self, signal_name: str = "SIGINT"):
        super().__init__(signal_name)
        self.signal_name = signal_name


class OutputWarning(UserWarning):
    """quantlab cleared what an interrupted quantlab left beside or inside an output folder."""


class SkippedImageWarning(UserWarning):
    """An image file was unreadable and was skipped."""


def first_line(exc: BaseException) -> str:
    """An exception's message cut to its first line (onnxruntime's run to pages), or its type name."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
