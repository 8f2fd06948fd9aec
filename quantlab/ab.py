"""A/B on one runner: a baseline and a candidate FP32 model, each quantized with its recipe, evaluated on the
same images and timed interleaved in this one process, and judged against each other.

Comparing stored runs cannot judge speed across runners whose CPU models differ (quantlab compare says
inconclusive there); timing both models side by side on the same machine in the same process can, as asv's
`continuous` does for code: whatever slows the machine slows both alike. The verdict on speed is the
candidate's speedup over the baseline: baseline INT8 median / candidate INT8 median in each interleaved block,
the median over blocks, with its 95% block-bootstrap interval (quantlab.bench.paired_block_ratio); size, mAP
and agreement are compared with quantlab compare's tolerances.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from quantlab.atomicio import temp_folder
from quantlab.bench import Latency, Speedup, bench_setup, check_runs, interleaved_blocks, paired_block_ratio
from quantlab.compare import COMPARED, Row, Status, Tolerances, absolute_row, relative_row, render_table
from quantlab.datasets import check_class_names
from quantlab.errors import ConfigError, InputError, first_line
from quantlab.evaluate import EvalData, EvalResult, evaluate_models
from quantlab.measures import Measures, measure
from quantlab.onnxmodel import ModelInfo, external_data_files, inspect_model, resolve_input_hw
from quantlab.pipeline import build_variant, probe_input
from quantlab.sessions import SessionSettings
from quantlab.textsafe import for_markdown
from quantlab.variant import FP32, ONNXRUNTIME, check_recipes_fit

BASELINE, CANDIDATE = "baseline", "candidate"
# Interleaved blocks the timed runs are split into: the bootstrap resamples whole blocks. 20, not 10: the
# bootstrap of a median of 10 block ratios is coarse (on the same 400 runs its interval was 0.039 to 0.065 wide
# with 10 blocks, 0.028 to 0.045 with 20), and a 9% slower candidate escaped the 5% gate in 2 of 3 tries.
BLOCKS = 20
MIN_RUNS = 2 * BLOCKS
GIT_LFS_POINTER = b"version https://git-lfs"


@dataclass(frozen=True)
class Side:
    """One model of the pair: where it was named (a path, or REV:path), its FP32 file, its recipe."""

    label: str  # BASELINE or CANDIDATE
    source: str
    model: Path
    recipe: str


@dataclass(frozen=True)
class SideResult:
    """What one side measured: its INT8 model against its own FP32, and both latencies."""

    side: Side
    fp32: Measures
    int8: Measures
    fp32_latency: Latency
    int8_latency: Latency
    speedup: Speedup  # its own FP32 median / its INT8 median, interleaved


@dataclass(frozen=True)
class ABResult:
    """The pair judged: candidate_speedup is baseline INT8 median / candidate INT8 median (above 1: faster)."""

    baseline: SideResult
    candidate: SideResult
    candidate_speedup: Speedup
    setup: dict
    tolerances: Tolerances
    rows: tuple[Row, ...]

    @property
    def regressions(self) -> list[Row]:
        return [r for r in self.rows if r.status is Status.REGRESSION]

    def as_dict(self) -> dict:
        s = self.candidate_speedup
        return {"setup": self.setup,
                "candidate_speedup": {"ratio": s.ratio, "low": s.low, "high": s.high, "blocks": s.blocks,
                                      "rounds": s.rounds},
                "min_speedup_loss": self.tolerances.min_speedup_loss,
                **{r.side.label: {"model": r.side.source, "recipe": r.side.recipe,
                                  "fp32": {**r.fp32.as_dict(), "latency_ms": r.fp32_latency.as_dict()},
                                  "int8": {**r.int8.as_dict(), "latency_ms": r.int8_latency.as_dict()},
                                  "speedup": {"ratio": r.speedup.ratio, "low": r.speedup.low,
                                              "high": r.speedup.high}}
                   for r in (self.baseline, self.candidate)},
                "rows": [{"variant": r.variant, "metric": r.metric, "baseline": r.baseline,
                          "candidate": r.candidate, "change": r.change, "tolerance": r.tolerance,
                          "result": r.status.value, "reason": r.reason} for r in self.rows],
                "regressions": len(self.regressions)}


def is_revision(spec: str) -> bool:
    """Whether --baseline names a git revision of a path (REV:path) rather than a file."""
    rev, sep, path = spec.partition(":")
    return bool(sep and rev and path) and not Path(spec).exists() and len(rev) > 1  # C:\\ is a drive


def read_revision(spec: str, folder: Path) -> Path:
    """The model `git cat-file blob REV:path` gives, written into `folder`, with its external-data files from
    the same revision; an InputError naming the revision when git cannot show one of them."""
    rev, _, path = spec.partition(":")
    model = folder / PurePosixPath(path).name
    model.write_bytes(_git_blob(spec, spec))
    try:
        data_files = external_data_files(model)
    except Exception:  # not an ONNX file: inspect_model refuses it in its own words
        return model
    for data_file in data_files:
        relative = data_file.relative_to(folder) if data_file.is_relative_to(folder) else None
        if relative is None or ".." in relative.parts:
            raise InputError(f"--baseline {spec}: its external data {data_file.name} lies outside its folder")
        data_spec = f"{rev}:{PurePosixPath(path).parent / relative.as_posix()}"
        data_file.parent.mkdir(parents=True, exist_ok=True)
        data_file.write_bytes(_git_blob(data_spec, f"{spec} (its external data {relative.as_posix()})"))
    return model


def _git_blob(spec: str, what: str) -> bytes:
    if spec.startswith("-"):
        raise InputError(f"--baseline {what}: not a revision (REV:path)")
    try:
        done = subprocess.run(["git", "cat-file", "blob", spec], capture_output=True)
    except FileNotFoundError as exc:
        raise InputError(f"--baseline {what}: git is not installed, so a revision cannot be read") from exc
    if done.returncode != 0:
        raise InputError(f"--baseline {what}: git cannot show it: "
                         f"{first_line(done.stderr.decode(errors='replace').strip()) or 'no such blob'}")
    if done.stdout.startswith(GIT_LFS_POINTER):
        raise InputError(f"--baseline {what}: a Git LFS pointer, not the model: fetch it (git lfs fetch) first")
    return done.stdout


def _same_input(baseline: ModelInfo, candidate: ModelInfo, hw: tuple[int, int], candidate_hw: tuple[int, int]):
    """An InputError unless both models take one input alike: A/B times them on the same tensor."""
    def shown(info: ModelInfo, size: tuple[int, int]) -> str:
        return f"'{info.input_name}' {size[0]}x{size[1]}"

    if baseline.input_name != candidate.input_name or hw != candidate_hw:
        raise InputError(f"{candidate.path}: input {shown(candidate, candidate_hw)} differs from the baseline's "
                         f"{shown(baseline, hw)}: A/B needs two models of the same input")


def run_ab(baseline: Side, candidate: Side, data: EvalData, calib_images: Sequence[Path],
           sessions: SessionSettings = SessionSettings(), runs: int = 100, num_calib: int | None = None,
           input_hw: tuple[int, int] | None = None, tolerances: Tolerances = Tolerances(),
           progress: Callable[[str, int], Callable[[int], None] | None] = lambda label, total: None) -> ABResult:
    """Quantize both sides, evaluate each INT8 against its own FP32 on the same images, time all four
    models interleaved in this process (`runs` timed runs each, in BLOCKS blocks of runs // BLOCKS), and judge
    the pair."""
    check_recipes_fit([baseline.recipe, candidate.recipe], (ONNXRUNTIME,))  # A/B runs on onnxruntime
    if runs < MIN_RUNS:
        raise ConfigError(f"--runs {runs}: A/B needs at least {MIN_RUNS} timed runs ({BLOCKS} blocks of 2), else its "
                          "interval is no interval and one noisy run would decide")
    infos = {s.label: inspect_model(s.model) for s in (baseline, candidate)}
    hws = {label: resolve_input_hw(info, input_hw) for label, info in infos.items()}
    _same_input(infos[BASELINE], infos[CANDIDATE], hws[BASELINE], hws[CANDIDATE])
    hw = hws[BASELINE]
    with ExitStack() as stack:
        built = {}
        for side in (baseline, candidate):
            info = infos[side.label]
            if data.dataset is not None:
                check_class_names(data.dataset, info.description, side.model)
            folder = stack.enter_context(temp_folder(f"quantlab-ab-{side.label}-"))
            built[side.label] = build_variant(side.recipe, side.model, folder, calib_images, num_calib, input_hw,
                                              providers=sessions.providers)
        opened = {}
        evaluations: dict[str, dict[str, EvalResult]] = {}
        for side in (baseline, candidate):
            info = infos[side.label]
            pair = {FP32: sessions.open(side.model), side.recipe: sessions.open(built[side.label][0])}
            evaluations[side.label] = evaluate_models(
                pair, data.samples(info.description), hw, data.class_names(info.class_names), info.description,
                reference=FP32, progress=progress(f"evaluate {side.label}", len(data.paths)), source=data.source)
            opened.update({f"{side.label} {FP32}": pair[FP32], f"{side.label} int8": pair[side.recipe]})
        feed = probe_input(infos[BASELINE], data.paths[0], hw)
        check_runs(opened, feed)
        rounds = runs // BLOCKS  # runs rounded down to a multiple of the blocks
        runs_ms = interleaved_blocks(opened, feed, BLOCKS, rounds, progress=progress("benchmark", BLOCKS * rounds))
    results = {}
    for side in (baseline, candidate):
        info, (_, quantized), evals = infos[side.label], built[side.label], evaluations[side.label]
        fp32_ms, int8_ms = runs_ms[f"{side.label} {FP32}"], runs_ms[f"{side.label} int8"]
        speedup = paired_block_ratio(fp32_ms, int8_ms)
        task = info.description.task
        results[side.label] = SideResult(
            side,
            measure(FP32, ONNXRUNTIME, False, task, None, info.size_bytes, info.size_bytes, evals[FP32], evals[FP32]),
            measure(side.recipe, ONNXRUNTIME, True, task, quantized.recipe.settings(), quantized.size_bytes,
                    info.size_bytes, evals[side.recipe], evals[FP32], speedup=speedup.ratio),
            Latency.from_samples(fp32_ms.ravel()), Latency.from_samples(int8_ms.ravel()), speedup)
    candidate_speedup = paired_block_ratio(runs_ms[f"{BASELINE} int8"], runs_ms[f"{CANDIDATE} int8"])
    return ABResult(results[BASELINE], results[CANDIDATE], candidate_speedup,
                    bench_setup(sessions.threads, sessions.providers), tolerances,
                    judge(results[BASELINE], results[CANDIDATE], candidate_speedup, tolerances))


def judge(base: SideResult, cand: SideResult, candidate_speedup: Speedup, tol: Tolerances) -> tuple[Row, ...]:
    """The table's rows: INT8 speed A/B (gated), then each metric with a tolerance between runs (quantlab
    compare's), INT8 gated and FP32 shown; each side's own speedup over its FP32 shown, not gated."""
    rows = [_speed_row(base.int8_latency, cand.int8_latency, candidate_speedup, tol.min_speedup_loss)]
    for variant, gated in (("int8", True), (FP32, False)):
        b, c = getattr(base, variant), getattr(cand, variant)
        for metric in COMPARED:
            row = (absolute_row if metric.higher_is_better else relative_row)(
                variant, metric.name, getattr(b, metric.name), getattr(c, metric.name),
                getattr(tol, metric.tolerance), gated)
            if row is not None:
                rows.append(row)
    rows.append(Row("int8", "speedup over its FP32", _speedup_cell(base.speedup), _speedup_cell(cand.speedup),
                    f"{cand.speedup.ratio / base.speedup.ratio - 1:+.1%}", "-", Status.NOT_GATED,
                    "the A/B latency row judges speed"))
    return tuple(rows)


def _speed_row(base: Latency, cand: Latency, s: Speedup, loss: float) -> Row:
    """INT8 median latency, baseline against candidate: a regression when the candidate's speedup over the
    baseline `s`, with its whole 95% interval, lies below 1 - `loss`."""
    base_ms, cand_ms = base.median_ms, cand.median_ms
    # shown as the candidate's time over the baseline's: 1 / speedup, its interval flipped
    change = f"{1 / s.ratio - 1:+.1%} [{1 / s.high - 1:+.1%}, {1 / s.low - 1:+.1%}]"
    cells = (f"{base_ms:.3f}", f"{cand_ms:.3f}", change, f"+{1 / (1 - loss) - 1:.1%} (interval)")
    if s.high < 1 - loss:
        return Row("int8", "median_ms A/B", *cells, Status.REGRESSION,
                   f"candidate's speedup over the baseline {s.ratio:.3f} [{s.low:.3f}, {s.high:.3f}] lies below "
                   f"{1 - loss:.3f} (a {loss:.0%} loss), interleaved on this runner")
    return Row("int8", "median_ms A/B", *cells, Status.OK)


def _speedup_cell(s: Speedup) -> str:
    return f"{s.ratio:.3f} [{s.low:.3f}, {s.high:.3f}]"


def verdict(result: ABResult) -> str:
    """The verdict line: the candidate's speedup over the baseline with its interval, on this runner."""
    s = result.candidate_speedup
    speed = (f"candidate INT8 runs at {s.ratio:.3f}x the baseline's speed, 95% interval {s.low:.3f} to "
             f"{s.high:.3f}, on {for_markdown(result.setup['cpu'])}, {result.setup['threads']} thread(s), this run")
    failed = len(result.regressions)
    return f"**{failed} regression(s)**: {speed}." if failed else f"**No regression:** {speed}."


def render_ab(result: ABResult) -> str:
    """A Markdown table in quantlab compare's style, then the verdict line."""
    b, c = result.baseline.side, result.candidate.side
    title = (f"quantlab ab: {for_markdown(b.source)} ({for_markdown(b.recipe)}) -> "
             f"{for_markdown(c.source)} ({for_markdown(c.recipe)})")
    s = result.candidate_speedup
    note = (f"All four models timed interleaved in one process: {s.blocks} blocks of {s.rounds} runs each; "
            "each ratio is the median over blocks of the blocks' ratios of medians, with its 95% bootstrap "
            "interval over blocks.")
    return render_table(title, result.rows, [note], verdict(result))
