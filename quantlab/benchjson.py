"""Read pytest-benchmark JSON runs into checked records of quantlab's metrics.

A run is refused (InputError, naming the file and what is missing) when it carries no quantlab
metrics or no timing statistics, or when a field quantlab reads has the wrong shape: a comparison
read from a half-understood file would pass or fail for the wrong reason.

Benchmarks without quantlab's `variant` key (a project's own benchmarks in the same run) are
counted and left out; a benchmark with it must carry every key quantlab gates on.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from quantlab.errors import InputError
from quantlab.jsonio import read_json
from quantlab.measures import BY_NAME, METRICS
from quantlab.textsafe import shorten

# extra_info keys every quantlab benchmark carries (the plugin writes them since the first release)
REQUIRED_KEYS = ("variant", "speedup", "size_bytes")
# the other metrics of quantlab.measures' table may be null (mAP without labels, parity for a variant that has
# none) or absent (a run from an older plugin); each must lie in its metric's range, beyond which a file lies
OPTIONAL_NUMBERS = tuple(m.name for m in METRICS if m.name not in REQUIRED_KEYS)
SETUP_KEYS = ("host", "cpu", "threads", "providers", "onnxruntime", "python")
MAX_NAME_CHARS = 100  # a variant name: recipe[@runtime]; a longer one is not the plugin's
SHA256 = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class Timing:
    """pytest-benchmark's statistics of one benchmark, in milliseconds."""

    median_ms: float
    q1_ms: float | None
    q3_ms: float | None
    stddev_ms: float | None
    rounds: int | None


@dataclass(frozen=True)
class VariantResult:
    """One quantlab benchmark: a variant's gate metrics and its timing."""

    variant: str
    benchmark: str  # pytest-benchmark's name, e.g. test_latency[auto]
    speedup: float  # FP32 median / this variant's median
    speedup_low: float | None  # 95% interval on the speedup (None: written by an older plugin)
    speedup_high: float | None
    gated: bool | None  # None: written by an older plugin, which did not say
    size_bytes: int
    metrics: dict  # the optional numbers (OPTIONAL_NUMBERS), None where absent
    threads: int | None
    setup: dict | None  # the plugin's `setup` dict (None: older plugin)
    timing: Timing
    model_sha256: str | None = None  # the FP32 model's quantlab.onnxmodel.model_sha256 (None: older plugin)

    def value(self, metric: str) -> float | None:
        """The value of a metric of quantlab.measures' table (None where this run has none)."""
        return {"speedup": self.speedup, "size_bytes": self.size_bytes}.get(metric, self.metrics.get(metric))

    @property
    def has_interval(self) -> bool:
        return self.speedup_low is not None and self.speedup_high is not None


@dataclass(frozen=True)
class Run:
    """One pytest-benchmark JSON file, reduced to what quantlab compares."""

    path: Path
    when: datetime
    commit: str | None
    cpu: str | None  # machine_info's CPU brand, for runs without a `setup`
    variants: dict[str, VariantResult]
    foreign: int = 0  # benchmarks without quantlab metrics, left out

    @property
    def model_sha256(self) -> str | None:
        """The FP32 model's hash (load_run checked that every benchmark naming one names the same)."""
        return next((v.model_sha256 for v in self.variants.values() if v.model_sha256), None)

    @property
    def setup(self) -> dict | None:
        """The plugin's `setup` of the run's first benchmark that records one (None: older plugin)."""
        return next((v.setup for v in self.variants.values() if v.setup is not None), None)

    @property
    def target(self) -> Target:
        """The runner this run's speedups are comparable on (its first benchmark's)."""
        return target_of(self, next(iter(self.variants.values())))


@dataclass(frozen=True)
class Target:
    """What a speedup is like for like on: the CPU model, thread count and execution providers. Runs of one
    target may come from different machines of that kind (CI runners); None where a run does not say."""

    cpu: str | None
    threads: int | None
    providers: tuple[str, ...] | None

    @property
    def label(self) -> str:
        """'AMD EPYC, 1 thread, CPUExecutionProvider' (plain text from the files: escape it where shown)."""
        threads = ("threads unknown" if self.threads is None
                   else f"{self.threads} thread{'s' if self.threads != 1 else ''}")
        providers = ", ".join(self.providers) if self.providers else "providers unknown"
        return f"{self.cpu or 'CPU unknown'}, {threads}, {providers}"

    def as_dict(self) -> dict:
        return {"cpu": self.cpu, "threads": self.threads,
                "providers": None if self.providers is None else list(self.providers)}


def run_facts(run: Run) -> dict:
    """Where a run is and what it ran on, for a JSON document: path, time, commit, setup, target, model hash."""
    return {"path": str(run.path), "when": run.when.isoformat(), "commit": run.commit, "setup": run.setup,
            "target": run.target.as_dict(), "model_sha256": run.model_sha256}


def target_of(run: Run, v: VariantResult) -> Target:
    """A benchmark's target from its `setup`, else from what older plugins wrote (machine_info's CPU, threads)."""
    setup = v.setup or {}
    providers = setup.get("providers")
    return Target(cpu=setup.get("cpu") or run.cpu, threads=setup.get("threads", v.threads),
                  providers=tuple(providers) if isinstance(providers, list) else None)


def load_run(path: str | Path) -> Run:
    """One pytest-benchmark JSON file, checked; an unreadable or foreign one is an error, never skipped."""
    path = Path(path)
    data = read_json(path, "a pytest-benchmark JSON")
    if not isinstance(data, dict) or not isinstance(data.get("benchmarks"), list):
        raise InputError(f"{path}: not a pytest-benchmark JSON (no 'benchmarks' list)")
    machine = data.get("machine_info", {})
    if not isinstance(machine, dict):
        raise InputError(f"{path}: 'machine_info' is {_kind(machine)}, expected an object")
    commit = data.get("commit_info", {})
    if not isinstance(commit, dict):
        raise InputError(f"{path}: 'commit_info' is {_kind(commit)}, expected an object")
    variants: dict[str, VariantResult] = {}
    foreign = 0
    for index, bench in enumerate(data["benchmarks"]):
        if not isinstance(bench, dict):
            raise InputError(f"{path}: benchmarks[{index}] is {_kind(bench)}, expected an object")
        name = bench.get("name")
        where = f"{path}: benchmark " + (f"'{shorten(name)}'" if isinstance(name, str) and name else f"#{index}")
        info = bench.get("extra_info", {})
        if not isinstance(info, dict):
            raise InputError(f"{where}: 'extra_info' is {_kind(info)}, expected an object")
        if "variant" not in info:
            foreign += 1
            continue
        result = _variant(info, bench, where)
        if result.variant in variants:
            raise InputError(f"{where}: a second benchmark of variant '{shorten(result.variant)}' "
                             f"(first: '{shorten(variants[result.variant].benchmark)}'); compare runs of one model")
        known = next((v for v in variants.values() if v.model_sha256), None)
        if result.model_sha256 and known and result.model_sha256 != known.model_sha256:
            raise InputError(f"{where}: its FP32 model (sha256 {result.model_sha256[:12]}) is not that of "
                             f"'{shorten(known.benchmark)}' ({known.model_sha256[:12]}); compare runs of one model")
        variants[result.variant] = result
    if not variants:
        raise InputError(f"{path}: no quantlab metrics in any of its {len(data['benchmarks'])} benchmark(s) "
                         f"(extra_info needs {', '.join(REQUIRED_KEYS)}); save runs of the quantlab suite "
                         "with pytest --benchmark-only --benchmark-json/--benchmark-autosave")
    brand = machine.get("cpu", {}).get("brand_raw") if isinstance(machine.get("cpu"), dict) else machine.get("cpu")
    commit_id = commit.get("id")
    return Run(path=path, when=_datetime(data.get("datetime"), path), cpu=brand if isinstance(brand, str) else None,
               commit=commit_id if isinstance(commit_id, str) else None, variants=variants, foreign=foreign)


def _variant(info: dict, bench: dict, where: str) -> VariantResult:
    missing = [k for k in REQUIRED_KEYS if info.get(k) is None]
    if missing:
        raise InputError(f"{where}: extra_info lacks quantlab's {', '.join(missing)}")
    variant = info["variant"]
    if not isinstance(variant, str) or not variant:
        raise InputError(f"{where}: extra_info 'variant' is {_kind(variant)}, expected a name")
    if len(variant) > MAX_NAME_CHARS:
        raise InputError(f"{where}: extra_info 'variant' is {len(variant)} characters long; quantlab's variants "
                         f"are recipe names of at most {MAX_NAME_CHARS} (auto, u8s8-rr@openvino)")
    speedup = _number(info, "speedup", where, positive=True)
    low, high = (_number(info, k, where, positive=True, optional=True) for k in ("speedup_low", "speedup_high"))
    if (low is None) != (high is None):
        raise InputError(f"{where}: extra_info has only one of speedup_low and speedup_high")
    if low is not None and not low <= high:
        raise InputError(f"{where}: speedup interval [{low}, {high}] is empty (low above high)")
    size = _number(info, "size_bytes", where, positive=True)
    gated = info.get("gated")
    if gated is not None and not isinstance(gated, bool):
        raise InputError(f"{where}: extra_info 'gated' is {_kind(gated)}, expected true or false")
    setup = _setup(info.get("setup"), where)
    threads = info.get("threads")
    return VariantResult(
        variant=variant, benchmark=str(bench.get("name") or variant), speedup=speedup, speedup_low=low,
        speedup_high=high, gated=gated, size_bytes=int(size),
        metrics={k: _in_range(k, _number(info, k, where, optional=True), where) for k in OPTIONAL_NUMBERS},
        threads=threads if isinstance(threads, int) and not isinstance(threads, bool) else None,
        setup=setup, timing=_timing(bench, where), model_sha256=_sha256(info.get("model_sha256"), where))


def _sha256(value, where: str) -> str | None:
    """The FP32 model's hash: 64 lowercase hex digits, as hexdigest() writes it (None: older plugin)."""
    if value is None:
        return None
    if not isinstance(value, str) or not SHA256.fullmatch(value):
        raise InputError(f"{where}: extra_info 'model_sha256' is {_kind(value)}, expected the FP32 model's "
                         "sha256 (64 lowercase hex digits)")
    return value


def _setup(setup, where: str) -> dict | None:
    """The plugin's `setup`, each fact quantlab compares of the type the plugin writes (None: older plugin)."""
    if setup is None:
        return None
    if not isinstance(setup, dict):
        raise InputError(f"{where}: extra_info 'setup' is {_kind(setup)}, expected an object with "
                         f"{', '.join(SETUP_KEYS)}")
    for key in SETUP_KEYS:
        value = setup.get(key)
        if key == "threads":
            valid = value is None or (isinstance(value, int) and not isinstance(value, bool))
        elif key == "providers":
            valid = value is None or (isinstance(value, list) and all(isinstance(p, str) for p in value))
        else:
            valid = value is None or isinstance(value, str)
        if not valid:
            raise InputError(f"{where}: extra_info setup {key!r} is {_kind(value)}, expected "
                             + {"threads": "a whole number", "providers": "a list of names"}.get(key, "a string"))
    return setup


def _timing(bench: dict, where: str) -> Timing:
    stats = bench.get("stats")
    if stats is None:
        raise InputError(f"{where}: no 'stats' (timing statistics); run pytest with --benchmark-only, "
                         "not with the benchmarks disabled")
    if not isinstance(stats, dict):
        raise InputError(f"{where}: 'stats' is {_kind(stats)}, expected pytest-benchmark's statistics object")
    if stats.get("median") is None:
        raise InputError(f"{where}: 'stats' has no 'median' (timing statistics)")
    median = _number(stats, "median", where, positive=True, section="stats")
    q1, q3, stddev = (_number(stats, k, where, optional=True, section="stats") for k in ("q1", "q3", "stddev"))
    rounds = stats.get("rounds")
    return Timing(median_ms=median * 1e3, q1_ms=None if q1 is None else q1 * 1e3,
                  q3_ms=None if q3 is None else q3 * 1e3, stddev_ms=None if stddev is None else stddev * 1e3,
                  rounds=rounds if isinstance(rounds, int) and not isinstance(rounds, bool) else None)


def _number(mapping: dict, key: str, where: str, positive: bool = False, optional: bool = False,
            section: str = "extra_info") -> float | None:
    value = mapping.get(key)
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not _finite(value):
        raise InputError(f"{where}: {section} {key!r} is {_kind(value)}, expected a finite number")
    if positive and value <= 0:
        raise InputError(f"{where}: {section} {key!r} is {value}, expected a number above 0")
    return float(value)


def _in_range(key: str, value: float | None, where: str) -> float | None:
    low, high = BY_NAME[key].valid
    if value is not None and not low <= value <= high:
        raise InputError(f"{where}: extra_info {key!r} is {value:g}, outside [{low:g}, {high:g}], where it lies in "
                         "any run quantlab writes")
    return value


def _finite(number: int | float) -> bool:
    try:
        return math.isfinite(number)
    except OverflowError:  # an integer beyond a float's range
        return False


def _datetime(value, path: Path) -> datetime:
    if value is None:
        raise InputError(f"{path}: no 'datetime' (pytest-benchmark writes when the run was made)")
    if not isinstance(value, str):
        raise InputError(f"{path}: 'datetime' is {_kind(value)}, expected an ISO 8601 string")
    try:
        when = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise InputError(f"{path}: 'datetime' '{shorten(value)}' is not an ISO 8601 date and time") from None
    # pytest-benchmark writes UTC with an offset; a naive one is read as UTC so runs sort together
    return when if when.tzinfo else when.replace(tzinfo=timezone.utc)


def _kind(value) -> str:
    """What a JSON value is, for a message: null, a list, the string 'x', the number 3."""
    if value is None:
        return "null"
    if isinstance(value, str):
        return f"the string '{shorten(value, 40)}'"
    if isinstance(value, int) and not isinstance(value, bool) and not _finite(value):
        return f"an integer of {len(str(abs(value)))} digits"
    if isinstance(value, (bool, int, float)):
        return f"{json.dumps(value)}"
    return {list: "a list", dict: "an object"}.get(type(value), type(value).__name__)


def saved_runs(folder: str | Path) -> list[Run]:
    """Every pytest-benchmark JSON under `folder` (any machine sub-folder), oldest first; each checked."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"{folder}: not a folder of saved benchmark runs")
    runs = sorted((load_run(p) for p in folder.rglob("*.json")), key=lambda r: (r.when, r.path.name))
    if not runs:
        raise InputError(f"{folder}: no benchmark JSON files (save runs with --benchmark-autosave)")
    return runs


def newest(path: str | Path) -> Run:
    """A file's run, or a storage folder's newest run."""
    path = Path(path)
    return saved_runs(path)[-1] if path.is_dir() else load_run(path)
