"""The memory a deployment pays for a model: peak resident memory of an onnxruntime session
(creation plus steady-state inference), measured in a fresh child process per model so models
cannot pollute each other, less the same process's peak right after `import onnxruntime`. The session is
opened with the options every timed session has (quantlab.sessions), so memory and latency describe one session.

Peak RSS comes from the kernel: VmHWM in /proc/self/status on Linux (getrusage's ru_maxrss there
carries the parent's peak across fork and exec, so a child of a big process would read that),
`resource.getrusage` on macOS; Windows has no such standard-library call, so there the memory
is not measured (None). onnxruntime's CPU memory
arena is on, as in a default deployment; the setting is recorded with every measurement.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from quantlab.errors import ConfigError, ModelError
from quantlab.jsonio import parse_json
from quantlab.sessions import DEFAULT_PROVIDERS

SAMPLES = 3  # child processes per model; the median is reported, the spread kept
RUNS = 5  # inferences per child after the session is created


@dataclass(frozen=True)
class MemoryUse:
    """session_bytes: median over samples of peak RSS growth from creating and running the session."""

    session_bytes: int
    baseline_bytes: int  # peak RSS of the child right after importing onnxruntime
    spread: float  # (max - min) / median of the samples
    samples: int
    arena: bool

    def as_dict(self) -> dict:
        return {"session_bytes": self.session_bytes, "baseline_bytes": self.baseline_bytes,
                "spread": self.spread, "samples": self.samples, "cpu_mem_arena": self.arena}


_PROC_STATUS = Path("/proc/self/status")


def can_measure() -> bool:
    if _PROC_STATUS.is_file():
        return True
    try:
        import resource  # noqa: F401  (Unix only)
    except ImportError:
        return False
    return True


def require_measurable(option: str) -> None:
    """ConfigError naming `option` (a memory budget) where session memory cannot be measured."""
    if not can_measure():
        raise ConfigError(f"{option}: session memory cannot be measured on this platform (no peak-RSS source); "
                          "leave the budget off here")


def _peak_rss_bytes() -> int:
    if _PROC_STATUS.is_file():
        for line in _PROC_STATUS.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024  # kB
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024  # macOS counts bytes, other Unixes KiB


def _child_spec(model_path: str | Path, input_hw: Sequence[int], threads: int, providers: Sequence[str],
                arena: bool) -> dict:
    """What a measuring child is told, as JSON: the model, its input size and the session's settings."""
    return {"model": str(model_path), "input_hw": list(input_hw), "threads": threads, "providers": list(providers),
            "arena": arena, "runs": RUNS}


def _child(spec: dict) -> dict:
    """Runs in the child: import, baseline, session (opened as every timed session is), inferences, peak."""
    import numpy as np

    from quantlab.sessions import inference_session

    baseline = _peak_rss_bytes()
    session = inference_session(spec["model"], spec["threads"], spec["providers"], spec["arena"])
    feed = {session.get_inputs()[0].name: np.zeros((1, 3, *spec["input_hw"]), np.float32)}
    for _ in range(spec["runs"]):
        session.run(None, feed)
    return {"baseline": baseline, "peak": _peak_rss_bytes()}


# Run in the child with `python -I` (no current folder, PYTHONPATH or user site on sys.path): the
# parent's sys.path less the current folder, and quantlab from the very folder the parent imported
# it from, so a numpy.py or json.py in the current folder or beside a dataset is never imported.
_CHILD_BOOT = """
import importlib.util, json, sys
sys.path[:] = json.loads(sys.argv[1])
package = importlib.util.spec_from_file_location("quantlab", sys.argv[2], submodule_search_locations=[sys.argv[3]])
sys.modules["quantlab"] = importlib.util.module_from_spec(package)
package.loader.exec_module(sys.modules["quantlab"])
from quantlab.memory import _child
print(json.dumps(_child(json.loads(sys.argv[4]))))
"""


def _isolated_child_command(spec: dict) -> list[str]:
    """The command line of one measuring child: isolated, importing only what the parent imported."""
    here = os.path.realpath(os.getcwd())
    paths = [p for p in sys.path if p and os.path.realpath(p) != here]
    package_dir = os.path.dirname(os.path.abspath(__file__))  # this module lies in the package's own folder
    return [sys.executable, "-I", "-c", _CHILD_BOOT, json.dumps(paths), os.path.join(package_dir, "__init__.py"),
            package_dir, json.dumps(spec)]


def measure_memory(model_path: str | Path, input_hw: Sequence[int], threads: int = 1,
                   providers: Sequence[str] = DEFAULT_PROVIDERS, arena: bool = True,
                   samples: int = SAMPLES) -> MemoryUse | None:
    """Session memory of one model, each sample in its own child process; None where unmeasurable."""
    if not can_measure():
        return None
    from quantlab.onnxmodel import openable_by_name  # here: the child process need not import onnx

    with openable_by_name(model_path) as openable:
        spec = _child_spec(openable, input_hw, threads, providers, arena)
        growth, baselines = [], []
        for _ in range(samples):
            done = subprocess.run(_isolated_child_command(spec), capture_output=True, text=True, timeout=600)
            if done.returncode != 0:
                last = (done.stderr.strip().splitlines() or ["no message"])[-1]
                raise ModelError(f"{model_path}: its memory could not be measured: {last}")
            result = parse_json(done.stdout, f"{model_path}: the memory measurement's output")
            growth.append(result["peak"] - result["baseline"])
            baselines.append(result["baseline"])
    median = int(statistics.median(growth))
    spread = (max(growth) - min(growth)) / median if median > 0 else 0.0
    return MemoryUse(median, int(statistics.median(baselines)), spread, samples, arena)

