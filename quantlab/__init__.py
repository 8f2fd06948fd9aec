"""quantlab: quantize YOLO ONNX models (detect, segment, pose, OBB) to INT8 and prove they are smaller, faster and as accurate.

The public API, for notebooks and pipelines (everything else in the package is private: its modules may
change without notice):

    Functions
    quantize_model(model, output, recipe="auto", calib=None)    -> QuantizeResult   INT8 model, self-checked
    evaluate_model(model, data=None, images=None, reference=None) -> EvalResult     mAP, agreement, parity
    benchmark(models, runs=100, threads=1)                      -> {path: Latency}  interleaved latency
    run(model=None, data=None, images=None, out="quantlab-out") -> report dict      the whole job (quantlab run)
    compare_runs(baseline, candidate)                           -> Comparison       two saved suite runs
    demo_data(folder)                                           -> data.yaml path   the demo shapes dataset
    DEMO_MODEL                                                  the embedded demo model's path

    Settings and results
    Recipe, Budgets, Tolerances, QuantizeResult, EvalResult, Latency, Comparison

    Errors (all QuantlabError; quantlab's messages name the file, the cause and the fix)
    QuantlabError, InputError, ModelError, ImageError, DatasetError, ConfigError, CompatibilityError,
    QuantizationError, OutputError, SelfCheckError; ExitCode (what the `quantlab` command exits with)

Example:

    import quantlab
    result = quantlab.quantize_model("yolov8n.onnx", "yolov8n.int8.onnx", calib="images/")
    print(result.size_ratio, result.self_check.passed)

Names are imported on first use, so `import quantlab` stays light (the pytest plugin imports it in every run).
"""

from __future__ import annotations

import importlib

__version__ = "0.2.0"

# public name -> the module that defines it
_EXPORTS = {
    "quantize_model": "quantlab.api",
    "evaluate_model": "quantlab.api",
    "benchmark": "quantlab.api",
    "run": "quantlab.api",
    "compare_runs": "quantlab.api",
    "demo_data": "quantlab.api",
    "DEMO_MODEL": "quantlab.demo",
    "Recipe": "quantlab.recipes",
    "Budgets": "quantlab.gates",
    "Tolerances": "quantlab.compare",
    "QuantizeResult": "quantlab.quantize",
    "EvalResult": "quantlab.evaluate",
    "Latency": "quantlab.bench",
    "Comparison": "quantlab.compare",
    **dict.fromkeys(("QuantlabError", "InputError", "ModelError", "ImageError", "DatasetError", "ConfigError",
                     "CompatibilityError", "QuantizationError", "OutputError", "SelfCheckError", "ExitCode"),
                    "quantlab.errors"),
}
__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str):
    """Import a public name's module on first use (PEP 562)."""
    if name not in _EXPORTS:
        raise AttributeError(f"module 'quantlab' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
