"""Compare two quantlab benchmark runs variant by variant, with tolerances set by measured noise.

The noise model, and why:

* The speed gate compares `speedup` = FP32 median / variant median, measured INTERLEAVED in one
  process (the plugin interleaves the sessions in repeated blocks). Whatever slows the whole machine
  (a busy neighbour, frequency scaling, another CI runner) slows FP32 and INT8 alike and cancels in
  the ratio; what is left varies from block to block, and the plugin turns that spread into a 95%
  interval [speedup_low, speedup_high]. Two back-to-back runs of one commit give intervals that
  overlap; a real slowdown moves the candidate's interval below the baseline's.
* So a speedup is a regression only when the intervals are SEPARATED by more than a minimum
  practical loss: candidate high < baseline low x (1 - floor), floor 5% by default. Requiring
  separation (not just a point estimate below the baseline's interval) is deliberately
  conservative: an interval measured inside one process does not contain the process-to-process
  effects (memory placement, a different runner) that vary between the two runs, and several
  variants and metrics are checked at once, so each check must rarely fire by chance. A gate that
  fires on noise gets switched off. With intervals of +-5% each the point estimate must drop by
  about 15% to fire; a genuinely 25% slower INT8 (speedup / 1.25, a 20% loss) still does. Wider
  intervals make the gate blinder, and the table says how blind (the Tolerance column gives the
  loss of the point estimate at which it would fire).
* That in-run interval is still narrower than the spread between runs: two runs of one commit on a
  loaded 2-core machine gave 2.050 [2.039, 2.061] and 1.728 [1.720, 1.782], intervals 30 times
  narrower than the gap. So where the baseline comes from a storage folder that holds earlier runs
  of the same setup (the same `setup` dict, host included) and the same FP32 model (its
  `model_sha256`), the last runs teach the run-to-run spread of each variant's speedup: its
  half-range (max - min) / 2 over the last `history_runs` (10) speedups, relative to their median,
  once there are at least `min_history_runs` (3). Each run's interval is then widened to at least
  its speedup +- that spread, and the separation rule above applies to the widened intervals: a
  candidate whose speedup lies within the history's range is not flagged. The half-range, not a
  standard deviation: with 3 to 10 runs no spread estimate is steady, and the half-range errs on
  the blind side (one outlier run widens it until it ages out); the Tolerance column shows it
  ("history of 5 runs: +-8.1%"). The candidate is never part of its own history. Without enough
  history (two files, or fewer runs of that setup) the in-run interval is used alone and a note
  says so; a flag from it may be run-to-run noise.
* A run written by an older plugin has no interval, and its speedup was a ratio of SEQUENTIAL
  pytest-benchmark medians, which moved by 18.5% between two runs of one commit on one idle
  machine. Such a run is given an assumed interval of +-10% (`assumed_speedup_noise`), the table
  says so, and a loss under about 25% cannot be told from noise there.
* The ratio is compared only like for like: the same CPU model, thread count and execution
  providers (a VNNI CPU picks another recipe; CUDA against CPU is another product). It may come
  from different machines of that kind: that is what makes it usable across CI runners. A gated
  speedup that is not like for like is INCONCLUSIVE, never "ok": GitHub's ubuntu-latest mixes CPU
  models from run to run, and a gate that cannot judge must not read as a pass (the verdict says
  "Inconclusive", exit 0 with a warning, or 1 with --fail-on-inconclusive).
* Every number depends on the FP32 model. When the runs name different models (extra_info's
  `model_sha256`: the .onnx file and its external data), every judged row is INCONCLUSIVE and a note
  says the FP32 model changed: a yolov8 candidate against a yolo11 baseline is another model, not a
  regression or an improvement. Runs from older plugins carry no hash, so there a changed model
  cannot be told from a regression.
* Absolute median latency says something only about one machine in one state. It is gated only
  when both runs carry the same `setup` (hashed host, CPU, threads, providers, onnxruntime,
  Python), never across CI runners, and never for variants the suite does not gate (FP32 and
  contrast variants such as dynamic, `gated: false`). Even then a busy neighbour moves it, so its
  rule is the same separation test on pytest-benchmark's own spread: the candidate's first
  quartile above the baseline's third quartile by more than 20%.
* Size, mAP, agreement and score parity are deterministic for a given model, data and
  onnxruntime: small fixed tolerances suffice.
* Session memory (peak RSS a session adds, median of 3 fresh processes) moves little on one
  onnxruntime build, but it does move (allocator and arena growth): it may grow by 10% plus the
  spread both runs measured among their own samples, and only between runs of the same
  onnxruntime version and execution providers (another build allocates differently; across
  builds the row is inconclusive).
* Absolute latency, by contrast, is no gate across setups (the speedup is the speed gate): there
  its rows are "not gated", not inconclusive. A gated accuracy metric that one run lacks (labelled
  data in one run only) is inconclusive.
"""

from __future__ import annotations

import enum
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from quantlab import __version__
from quantlab.benchjson import Run, VariantResult, run_facts, target_of
from quantlab.errors import ExitCode
from quantlab.measures import METRICS
from quantlab.textsafe import for_markdown, shorten
from quantlab.variant import FP32

SCHEMA_PATH = Path(__file__).resolve().parent / "schemas" / "compare.schema.json"
COMPARED = tuple(m for m in METRICS if m.tolerance)
# a normal quantile's half-width of the middle 50%: stddev -> quartiles when pytest-benchmark has no q1/q3
_QUARTILE_Z = 0.6745


@dataclass(frozen=True)
class Tolerances:
    """How much worse a candidate may be than its baseline before it is a regression."""

    min_speedup_loss: float = 0.05  # relative gap between the speedup intervals that counts
    assumed_speedup_noise: float = 0.10  # relative half-width given to a speedup without an interval
    min_latency_growth: float = 0.20  # relative gap between the latency quartiles, same setup only
    size_growth: float = 0.01  # relative growth of the file
    map_loss: float = 0.005  # absolute loss of mAP50-95
    agreement_loss: float = 0.01  # absolute loss of detection agreement
    score_cosine_loss: float = 0.01  # absolute loss of score-channel cosine
    memory_growth: float = 0.10  # relative growth of session memory, beyond the measured spread
    history_runs: int = 10  # the last runs of one setup and model whose speedups give the run-to-run spread
    min_history_runs: int = 3  # fewer: the in-run interval alone


class Status(enum.Enum):
    OK = "ok"
    REGRESSION = "REGRESSION"
    INCONCLUSIVE = "inconclusive"  # a gated metric in both runs that could not be judged (not like for like)
    NOT_GATED = "not gated"


MODEL_CHANGED = "the FP32 model changed"


@dataclass(frozen=True)
class Row:
    variant: str
    metric: str
    baseline: str  # the value as shown, with its interval where there is one
    candidate: str
    change: str  # relative change of the point estimates
    tolerance: str  # how far it may move before it fails, in the metric's terms
    status: Status
    reason: str = ""  # why it failed, or why it is not gated


@dataclass
class Comparison:
    baseline: Run
    candidate: Run
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def regressions(self) -> list[Row]:
        return [r for r in self.rows if r.status is Status.REGRESSION]

    @property
    def inconclusive(self) -> list[Row]:
        return [r for r in self.rows if r.status is Status.INCONCLUSIVE]

    @property
    def judged(self) -> bool:
        """Whether any gated metric was compared: without one, 'no regression' would be said blind."""
        return any(r.status is not Status.NOT_GATED for r in self.rows)


def unjudged_summary(comparison: Comparison) -> str:
    """'2 gated metrics could not be judged: the FP32 model changed (auto speedup, auto size_bytes)', one
    line in plain text (names and reasons come from the files: escape them where they are shown)."""
    rows = comparison.inconclusive
    by_reason: dict[str, list[str]] = {}
    for r in rows:
        by_reason.setdefault(r.reason, []).append(f"{r.variant} {r.metric}")
    causes = "; ".join(f"{reason} ({', '.join(names)})" for reason, names in by_reason.items())
    return f"{len(rows)} gated metric{'s' if len(rows) != 1 else ''} could not be judged: {causes}"


def is_gated(v: VariantResult) -> bool:
    """Whether the suite gates this variant; runs from older plugins did not say, so all but FP32."""
    return v.gated if v.gated is not None else v.variant != FP32


def compare_runs(baseline: Run, candidate: Run, tol: Tolerances = Tolerances(),
                 history: Sequence[Run] | None = None) -> Comparison:
    """Rows for every variant and metric of the baseline, and notes on what was not comparable.

    history: the runs saved up to the baseline (itself included), oldest first, from which each variant's
    run-to-run speedup spread is learnt; None when the runs are two files with no history beside them."""
    out = Comparison(baseline, candidate)
    spreads = {name: history_spread(name, baseline, history, tol) for name in baseline.variants} if history else {}
    for run in (baseline, candidate):
        if run.foreign:
            out.notes.append(f"{run.path.name}: {run.foreign} benchmark(s) without quantlab metrics left out.")
    for name, base in baseline.variants.items():
        cand = candidate.variants.get(name)
        if cand is None:
            gated = is_gated(base)
            out.rows.append(Row(name, "present", "yes", "no", "-", "-",
                                Status.REGRESSION if gated else Status.NOT_GATED,
                                "variant missing from the candidate run" if gated
                                else "contrast variant missing from the candidate run"))
            continue
        gated = is_gated(base) and is_gated(cand)
        if name != FP32:
            out.rows.append(_speedup_row(name, baseline, base, candidate, cand, tol, gated, spreads.get(name)))
        for metric in COMPARED:  # the metrics of quantlab.measures' table with a tolerance between runs
            row = (absolute_row if metric.higher_is_better else relative_row)(
                name, metric.name, base.value(metric.name), cand.value(metric.name),
                getattr(tol, metric.tolerance), gated)
            if row is not None:
                out.rows.append(row)
        memory = _memory_row(name, base, cand, tol, gated)
        if memory is not None:
            out.rows.append(memory)
        out.rows.append(_latency_row(name, base, cand, tol))
    for name in candidate.variants.keys() - baseline.variants.keys():
        out.rows.append(Row(name, "present", "no", "yes", "-", "-", Status.NOT_GATED, "new variant"))
    _mark_a_changed_model(out)
    short = [f"{n} ({s.runs})" for n, s in spreads.items() if s.half_width is None and _judged_speedup(out, n)]
    if short:
        out.notes.append(
            f"Speedup history: {', '.join(short)} earlier run(s) of the same setup and FP32 model, fewer than the "
            f"{tol.min_history_runs} needed to learn the run-to-run spread; the speedup tolerance is the in-run "
            "interval alone, which leaves out what varies between runs.")
    without = sorted({run.path.name for run in (baseline, candidate) for n, v in run.variants.items()
                      if n != FP32 and not v.has_interval})
    if without:
        out.notes.append(
            f"{' and '.join(without)}: no measured speedup interval (a run from an older quantlab plugin, "
            f"whose speedup was a ratio of sequential medians); assumed +-{tol.assumed_speedup_noise:.0%} per run, "
            "so only a large speedup loss can be told from noise.")
    return out


@dataclass(frozen=True)
class Spread:
    """The run-to-run spread of one variant's speedup in the saved history of the baseline's setup and model."""

    runs: int  # earlier runs of the same setup and FP32 model (the baseline included), at most history_runs
    half_width: float | None  # (max - min) / 2 / median of their speedups; None: fewer than min_history_runs


def history_spread(name: str, baseline: Run, history: Sequence[Run], tol: Tolerances) -> Spread:
    """The spread of variant `name`'s speedup over the last runs like the baseline: the same `setup` dict and
    FP32 model hash (a run that records neither is never like it)."""
    base = baseline.variants[name]
    if base.setup is None or baseline.model_sha256 is None:
        return Spread(0, None)
    speedups = [run.variants[name].speedup for run in history
                if run.model_sha256 == baseline.model_sha256 and name in run.variants
                and run.variants[name].setup == base.setup][-tol.history_runs:]
    if len(speedups) < tol.min_history_runs:
        return Spread(len(speedups), None)
    return Spread(len(speedups), (max(speedups) - min(speedups)) / 2 / statistics.median(speedups))


def speedup_interval(v: VariantResult, tol: Tolerances, spread: float | None = None) -> tuple[float, float]:
    """The variant's 95% interval on its speedup (an assumed one for runs from older plugins), widened to at
    least its speedup +- `spread`, the relative run-to-run spread learnt from history."""
    if v.has_interval:
        low, high = v.speedup_low, v.speedup_high
    else:
        low, high = v.speedup * (1 - tol.assumed_speedup_noise), v.speedup * (1 + tol.assumed_speedup_noise)
    if spread is None:
        return low, high
    return min(low, v.speedup * (1 - spread)), max(high, v.speedup * (1 + spread))


def _speedup_row(name: str, base_run: Run, base: VariantResult, cand_run: Run, cand: VariantResult,
                 tol: Tolerances, gated: bool, spread: Spread | None) -> Row:
    width = spread.half_width if spread else None
    (b_low, b_high), (c_low, c_high) = speedup_interval(base, tol, width), speedup_interval(cand, tol, width)
    # fails when the candidate's whole interval lies below the baseline's, `floor` apart
    threshold = b_low * (1 - tol.min_speedup_loss)
    # the same rule as a loss of the point estimate, for the reader: where would it fire?
    fires_at = 1 - threshold * (cand.speedup / c_high) / base.speedup
    if width is not None:
        basis = f"history of {spread.runs} runs: +-{width:.1%}"
    else:
        basis = "measured" if base.has_interval and cand.has_interval else "assumed noise"
    cells = (_interval_cell(base, tol), _interval_cell(cand, tol), _change(base.speedup, cand.speedup),
             f"-{fires_at:.1%} ({basis})")
    if not gated:
        return Row(name, "speedup", *cells[:3], "-", Status.NOT_GATED, "contrast variant (gated false)")
    differs = _ratio_setup_difference(base_run, base, cand_run, cand)
    if differs:
        return Row(name, "speedup", *cells, Status.INCONCLUSIVE, f"not like for like: {differs}")
    if c_high < threshold:
        return Row(name, "speedup", *cells, Status.REGRESSION,
                   f"speedup interval [{c_low:.3f}, {c_high:.3f}] lies below the baseline's "
                   f"[{b_low:.3f}, {b_high:.3f}] by more than {tol.min_speedup_loss:.0%}"
                   + (" (both widened to the history's spread)" if width is not None else ""))
    return Row(name, "speedup", *cells, Status.OK)


def _interval_cell(v: VariantResult, tol: Tolerances) -> str:
    low, high = speedup_interval(v, tol)
    return f"{v.speedup:.3f} [{low:.3f}, {high:.3f}]"


def _judged_speedup(comparison: Comparison, name: str) -> bool:
    return any(r.variant == name and r.metric == "speedup" and r.status in (Status.OK, Status.REGRESSION)
               for r in comparison.rows)


def _mark_a_changed_model(comparison: Comparison) -> None:
    """Runs of two FP32 models: every judged row inconclusive, and a note that says why."""
    base, cand = comparison.baseline, comparison.candidate
    if base.model_sha256 is None or cand.model_sha256 is None or base.model_sha256 == cand.model_sha256:
        return
    comparison.notes.append(
        f"{MODEL_CHANGED[0].upper()}{MODEL_CHANGED[1:]} (sha256 {base.model_sha256[:12]} in {base.path.name}, "
        f"{cand.model_sha256[:12]} in {cand.path.name}): its speed and accuracy are another model's, shown but "
        "not judged as a regression or an improvement.")
    comparison.rows = [replace(r, status=Status.INCONCLUSIVE, reason=MODEL_CHANGED)
                       if r.status in (Status.OK, Status.REGRESSION) and r.metric != "present" else r
                       for r in comparison.rows]


def _ratio_setup_difference(base_run: Run, base: VariantResult, cand_run: Run, cand: VariantResult) -> str:
    """What makes two speedups incomparable (CPU model, threads, providers); '' when nothing known does."""
    b, c = vars(target_of(base_run, base)), vars(target_of(cand_run, cand))
    return "; ".join(f"{k} {shorten(repr(b[k]))} vs {shorten(repr(c[k]))}" for k in b
                     if b[k] is not None and c[k] is not None and b[k] != c[k])


def _latency_row(name: str, base: VariantResult, cand: VariantResult, tol: Tolerances) -> Row:
    bt, ct = base.timing, cand.timing
    cells = (f"{bt.median_ms:.3f}", f"{ct.median_ms:.3f}", _change(bt.median_ms, ct.median_ms))
    if not (is_gated(base) and is_gated(cand)):
        return Row(name, "median_ms", *cells, "-", Status.NOT_GATED,
                   "FP32 reference (gated false)" if name == FP32 else "contrast variant (gated false)")
    if base.setup is None or cand.setup is None:
        which = " and ".join(w for w, v in (("baseline", base), ("candidate", cand)) if v.setup is None)
        return Row(name, "median_ms", *cells, "-", Status.NOT_GATED,
                   f"no 'setup' in the {which} (older plugin): same machine not provable")
    if base.setup != cand.setup:
        keys = sorted(k for k in base.setup.keys() | cand.setup.keys() if base.setup.get(k) != cand.setup.get(k))
        return Row(name, "median_ms", *cells, "-", Status.NOT_GATED,
                   f"other machine or setup ({shorten(', '.join(keys))} differ{'s' if len(keys) == 1 else ''})")
    b_q3, c_q1 = _quartiles(bt)[1], _quartiles(ct)[0]
    threshold = b_q3 * (1 + tol.min_latency_growth)
    # where it would fire as a growth of the median, the candidate's spread kept (not shown if degenerate)
    fires_at = threshold * (ct.median_ms / c_q1) / bt.median_ms - 1 if c_q1 > 0 else None
    tolerance = "-" if fires_at is None else f"+{fires_at:.1%} (same setup)"
    if c_q1 > threshold:
        return Row(name, "median_ms", *cells, tolerance, Status.REGRESSION,
                   f"first quartile {c_q1:.3f} ms above the baseline's third quartile {b_q3:.3f} ms "
                   f"by more than {tol.min_latency_growth:.0%}")
    return Row(name, "median_ms", *cells, tolerance, Status.OK)


def _quartiles(t) -> tuple[float, float]:
    """(q1, q3) in ms; from the stddev of a normal where pytest-benchmark has no quartiles."""
    if t.q1_ms is not None and t.q3_ms is not None:
        return t.q1_ms, t.q3_ms
    spread = _QUARTILE_Z * (t.stddev_ms or 0.0)
    return t.median_ms - spread, t.median_ms + spread


def relative_row(name: str, metric: str, base: float | None, cand: float | None, limit: float,
                 gated: bool) -> Row | None:
    """A smaller-is-better metric, allowed to grow by `limit` of the baseline; None when either run lacks it."""
    if base is None or cand is None or base <= 0:
        return None
    cells = (_num(base), _num(cand), _change(base, cand), f"+{limit:.0%}" if gated else "-")
    if not gated:
        return Row(name, metric, *cells, Status.NOT_GATED, _not_gated_reason(name))
    growth = (cand - base) / base
    if growth > limit:
        return Row(name, metric, *cells, Status.REGRESSION, f"{metric} grew by {growth:.1%} (allowed {limit:.0%})")
    return Row(name, metric, *cells, Status.OK)


def absolute_row(name: str, metric: str, base: float | None, cand: float | None, limit: float,
                 gated: bool) -> Row | None:
    """A bigger-is-better score in [0, 1], allowed to lose `limit`; None when neither run has it."""
    if base is None and cand is None:
        return None
    cells = (_num(base), _num(cand), _change(base, cand), f"-{limit:g}" if gated else "-")
    if not gated:
        return Row(name, metric, *cells, Status.NOT_GATED, _not_gated_reason(name))
    if base is None or cand is None:
        return Row(name, metric, *cells, Status.INCONCLUSIVE, f"only the "
                   f"{'candidate' if base is None else 'baseline'} has it (labelled data in one run only?)")
    if base - cand > limit:
        return Row(name, metric, *cells, Status.REGRESSION, f"{metric} lost {base - cand:.4f} (allowed {limit:g})")
    return Row(name, metric, *cells, Status.OK)


def _memory_row(name: str, base: VariantResult, cand: VariantResult, tol: Tolerances, gated: bool) -> Row | None:
    """Session memory, allowed to grow by the tolerance plus both runs' sample spread; None if unmeasured."""
    b, c = base.metrics.get("memory_bytes"), cand.metrics.get("memory_bytes")
    if b is None or c is None:
        return None
    limit = tol.memory_growth + (base.metrics.get("memory_spread") or 0.0) + (cand.metrics.get("memory_spread") or 0.0)
    cells = (_num(b), _num(c), _change(b, c), f"+{limit:.0%}" if gated else "-")
    if not gated:
        return Row(name, "memory_bytes", *cells, Status.NOT_GATED, _not_gated_reason(name))
    facts = [{k: (v.setup or {}).get(k) for k in ("onnxruntime", "providers")} for v in (base, cand)]
    if facts[0] != facts[1] or None in facts[0].values():
        return Row(name, "memory_bytes", *cells, Status.INCONCLUSIVE,
                   "not like for like: another onnxruntime or providers (or a run that does not say)")
    growth = (c - b) / b if b else 0.0
    if growth > limit:
        return Row(name, "memory_bytes", *cells, Status.REGRESSION,
                   f"session memory grew by {growth:.1%} (allowed {limit:.0%} with the measured spread)")
    return Row(name, "memory_bytes", *cells, Status.OK)


def _not_gated_reason(name: str) -> str:
    return "FP32 reference (gated false)" if name == FP32 else "contrast variant (gated false)"


def _change(base: float | None, cand: float | None) -> str:
    if base is None or cand is None or not base:
        return "-"
    return f"{(cand - base) / abs(base):+.1%}"


def _num(value) -> str:
    if value is None:
        return "-"
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def render_comparison(comparison: Comparison) -> str:
    """A Markdown table fit for $GITHUB_STEP_SUMMARY, then the notes and the verdict (render_table)."""
    return render_table(f"quantlab compare: {for_markdown(comparison.baseline.path.name)} -> "
                        f"{for_markdown(comparison.candidate.path.name)}",
                        comparison.rows, comparison.notes, verdict(comparison))


def render_table(title: str, rows: Sequence[Row], notes: Sequence[str], verdict_line: str) -> str:
    """A titled Markdown table of rows, then the notes and the verdict line. Names, reasons and notes are
    escaped (quantlab.textsafe): they hold text from the files compared; the number cells are formatted
    from floats. `title` and `verdict_line` are Markdown already."""
    lines = [f"### {title}", "",
             "| Variant | Metric | Baseline | Candidate | Change | Tolerance | Result |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        result = r.status.value + (f": {for_markdown(r.reason)}" if r.reason else "")
        lines.append(f"| {for_markdown(r.variant)} | {r.metric} | {r.baseline} | {r.candidate} | {r.change} "
                     f"| {r.tolerance} | {result} |")
    lines.append("")
    lines += [f"- {for_markdown(note)}" for note in notes]
    if notes:
        lines.append("")
    lines.append(verdict_line)
    return "\n".join(lines)


def verdict(comparison: Comparison) -> str:
    """The verdict line: never "No regression" while a gated metric could not be judged."""
    if not comparison.judged:
        return "**Nothing compared:** no gated metric is in both runs."
    failed, unjudged = len(comparison.regressions), for_markdown(unjudged_summary(comparison))
    if failed:
        return f"**{failed} regression(s)**" + (f"; {unjudged}." if comparison.inconclusive else "")
    return f"**Inconclusive:** {unjudged}." if comparison.inconclusive else "**No regression.**"


class Verdict(enum.Enum):
    NOTHING_COMPARED = "nothing compared"  # exit 2: no gated metric in both runs
    REGRESSION = "regression"
    INCONCLUSIVE = "inconclusive"
    NO_REGRESSION = "no regression"


def verdict_of(comparison: Comparison) -> Verdict:
    if not comparison.judged:
        return Verdict.NOTHING_COMPARED
    if comparison.regressions:
        return Verdict.REGRESSION
    return Verdict.INCONCLUSIVE if comparison.inconclusive else Verdict.NO_REGRESSION


def exit_code(comparison: Comparison, fail_on_inconclusive: bool) -> ExitCode:
    """1 on a regression (and on an inconclusive comparison when asked), 2 when nothing could be compared."""
    return {Verdict.NOTHING_COMPARED: ExitCode.USAGE, Verdict.REGRESSION: ExitCode.FAILED,
            Verdict.INCONCLUSIVE: ExitCode.FAILED if fail_on_inconclusive else ExitCode.OK,
            Verdict.NO_REGRESSION: ExitCode.OK}[verdict_of(comparison)]


def comparison_document(comparison: Comparison, fail_on_inconclusive: bool) -> dict:
    """The comparison as JSON (schemas/compare.schema.json): both runs, every row with its shown cells and
    its numbers, the notes, the verdict and the exit status it implies. Strings are the files' text, unescaped:
    the JSON encoder quotes them."""
    runs = {"baseline": comparison.baseline, "candidate": comparison.candidate}
    return {
        "schema_version": 1,
        "quantlab_version": __version__,
        **{role: run_facts(run) for role, run in runs.items()},
        "rows": [{"variant": r.variant, "metric": r.metric,
                  **{role: {"shown": cell, **_numbers(run.variants.get(r.variant), r.metric)}
                     for role, run, cell in (("baseline", comparison.baseline, r.baseline),
                                             ("candidate", comparison.candidate, r.candidate))},
                  "change": r.change, "tolerance": r.tolerance, "status": _STATUS_WORDS[r.status],
                  "reason": r.reason} for r in comparison.rows],
        "notes": list(comparison.notes),
        "verdict": verdict_of(comparison).value,
        "summary": unjudged_summary(comparison) if comparison.inconclusive else None,
        "exit_code": int(exit_code(comparison, fail_on_inconclusive)),
    }


_STATUS_WORDS = {Status.OK: "ok", Status.REGRESSION: "regression", Status.INCONCLUSIVE: "inconclusive",
                 Status.NOT_GATED: "not gated"}


def _numbers(v: VariantResult | None, metric: str) -> dict:
    """A row's value as a number (None where the run lacks it), with the speedup's interval."""
    if v is None or metric == "present":
        return {"value": None}
    if metric == "speedup":
        return {"value": v.speedup, "low": v.speedup_low, "high": v.speedup_high}
    return {"value": v.timing.median_ms if metric == "median_ms" else v.value(metric)}
