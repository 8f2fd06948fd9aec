"""Compare pytest-benchmark JSON runs variant by variant, and show the trend of saved runs."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from quantlab.errors import InputError



@dataclass(frozen=True)
class Tolerances:
    """How much worse a candidate may be than its baseline before it is a regression."""

    speedup_loss: float = 0.10  # relative loss of speedup over FP32 (same-run ratio)
    size_growth: float = 0.01  # relative growth of the file
    map_loss: float = 0.005  # absolute loss of mAP50-95
    agreement_loss: float = 0.01  # absolute loss of detection agreement
    score_cosine_loss: float = 0.01  # absolute loss of score-channel cosine
    latency_growth: float = 0.25  # relative growth of median latency, same machine only


@dataclass(frozen=True)
class Row:
    variant: str
    metric: str
    baseline: float | None
    candidate: float | None
    regression: str | None  # why it fails, or None


def load_run(path: str | Path) -> dict:
    """One pytest-benchmark JSON file; an unreadable one is an error, never skipped."""
    path = Path(path)
    try:
        run = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"{path}: benchmark JSON not found") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"{path}: not a readable pytest-benchmark JSON ({exc})") from exc
    if not isinstance(run, dict) or not isinstance(run.get("benchmarks"), list):
        raise InputError(f"{path}: not a pytest-benchmark JSON (no 'benchmarks' list)")
    return run


def saved_runs(folder: str | Path) -> list[Path]:
    """pytest-benchmark's storage files under `folder` (any machine sub-folder), oldest first."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"{folder}: not a folder of saved benchmark runs")
    runs = sorted(folder.rglob("*.json"), key=lambda p: (load_run(p).get("datetime", ""), p.name))
    if not runs:
        raise InputError(f"{folder}: no benchmark JSON files (save runs with --benchmark-autosave)")
    return runs


def resolve_pair(baseline: str | Path, candidate: str | Path | None) -> tuple[Path, Path]:
    """Files to compare: two files; a folder's two newest runs; or a file against a folder's newest."""
    baseline, candidate = Path(baseline), Path(candidate) if candidate else None
    if candidate is None:
        runs = saved_runs(baseline)
        if len(runs) < 2:
            raise InputError(f"{baseline}: need two saved runs to compare, found {len(runs)}")
        return runs[-2], runs[-1]
    base = saved_runs(baseline)[-1] if baseline.is_dir() else baseline
    cand = saved_runs(candidate)[-1] if candidate.is_dir() else candidate
    return base, cand


def variants(run: dict) -> dict[str, dict]:
    """{variant: {metric: value}} from each benchmark's extra_info plus its median latency."""
    out = {}
    for bench in run["benchmarks"]:
        info = bench.get("extra_info", {})
        name = info.get("variant") or bench.get("name")
        out[name] = {**info, "median_ms": bench.get("stats", {}).get("median", 0) * 1000.0}
    return out


def _machine_key(run: dict) -> tuple:
    """The machine facts that must match before absolute latencies are compared."""
    machine = run.get("machine_info", {})
    cpu = machine.get("cpu")
    brand = cpu.get("brand_raw") if isinstance(cpu, dict) else cpu
    return (brand, machine.get("processor"), machine.get("machine"), machine.get("python_implementation"),
            machine.get("python_version"))


def same_machine(a: dict, b: dict) -> bool:
    return _machine_key(a) == _machine_key(b)


def _loss_if_lower(base: float, cand: float) -> float:
    return base - cand  # larger is better


def _loss_if_higher(base: float, cand: float) -> float:
    return cand - base  # smaller is better


def _check(name: str, metric: str, base, cand, worse_by, limit: float, relative: bool) -> Row:
    if base is None or cand is None:
        return Row(name, metric, base, cand, None)
    loss = worse_by(base, cand)
    amount = loss / abs(base) if relative and base else loss
    why = None
    if amount > limit:
        why = (f"{metric} worse by {amount:.1%} (allowed {limit:.0%})" if relative
               else f"{metric} worse by {amount:.4f} (allowed {limit:g})")
    return Row(name, metric, base, cand, why)


# metric, how its loss is measured, its tolerance, whether the tolerance is relative
_GATED = (
    ("speedup", _loss_if_lower, lambda t: t.speedup_loss, True),
    ("size_bytes", _loss_if_higher, lambda t: t.size_growth, True),
    ("map50_95", _loss_if_lower, lambda t: t.map_loss, False),
    ("agreement", _loss_if_lower, lambda t: t.agreement_loss, False),
    ("score_cosine", _loss_if_lower, lambda t: t.score_cosine_loss, False),
)


def compare_runs(baseline: dict, candidate: dict, tol: Tolerances = Tolerances()) -> tuple[list[Row], bool]:
    """Rows for every variant and metric; the flag says whether absolute latency was gated."""
    base_v, cand_v = variants(baseline), variants(candidate)
    gate_latency = same_machine(baseline, candidate)
    rows: list[Row] = []
    for name, base in base_v.items():
        cand = cand_v.get(name)
        if cand is None:
            rows.append(Row(name, "present", 1, 0, "variant missing from the candidate run"))
            continue
        for metric, worse_by, limit, relative in _GATED:
            rows.append(_check(name, metric, base.get(metric), cand.get(metric), worse_by, limit(tol), relative))
        latency = _check(name, "median_ms", base["median_ms"], cand["median_ms"], _loss_if_higher,
                         tol.latency_growth, True)
        rows.append(latency if gate_latency else Row(name, "median_ms", base["median_ms"], cand["median_ms"], None))
    return rows, gate_latency


def render_comparison(rows: list[Row], gate_latency: bool, base_name: str, cand_name: str) -> str:
    """A Markdown table fit for $GITHUB_STEP_SUMMARY."""
    lines = [f"### quantlab compare: `{base_name}` -> `{cand_name}`", "",
             "| Variant | Metric | Baseline | Candidate | Change | Result |", "|---|---|---|---|---|---|"]
    for r in rows:
        if r.baseline is None and r.candidate is None:
            continue
        change = "-"
        if isinstance(r.baseline, (int, float)) and isinstance(r.candidate, (int, float)) and r.baseline:
            change = f"{(r.candidate - r.baseline) / abs(r.baseline):+.1%}"
        result = f"REGRESSION: {r.regression}" if r.regression else (
            "shown, not gated (other machine)" if r.metric == "median_ms" and not gate_latency else "ok")
        lines.append(f"| {r.variant} | {r.metric} | {_num(r.baseline)} | {_num(r.candidate)} | {change} | {result} |")
    failed = sum(1 for r in rows if r.regression)
    lines += ["", f"**{failed} regression(s)**" if failed else "**No regression.**"]
    return "\n".join(lines)


def _num(value) -> str:
    if value is None:
        return "-"
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def render_history(folder: str | Path) -> str:
    """One row per saved run: date, commit, and per variant speedup / size / mAP50-95."""
    runs = [(p, load_run(p)) for p in saved_runs(folder)]
    names = sorted({n for _, run in runs for n in variants(run)})
    header = "| Date | Commit | " + " | ".join(f"{n} speedup / MB / mAP" for n in names) + " |"
    lines = [header, "|" + "---|" * (2 + len(names))]
    for _, run in runs:
        v = variants(run)
        commit = (run.get("commit_info") or {}).get("id", "")[:8] or "-"
        cells = []
        for n in names:
            m = v.get(n)
            cells.append("-" if m is None else
                         f"{_num(m.get('speedup'))} / {_num((m.get('size_bytes') or 0) / 1e6)} / {_num(m.get('map50_95'))}")
        lines.append(f"| {run.get('datetime', '-')[:19]} | {commit} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
