"""The trend of saved benchmark runs, kept apart per target, and its export for github-action-benchmark.

A speedup is like for like only on one target (CPU model, thread count, execution providers:
quantlab.benchjson.Target), so the runs of a folder that several runners fill (a CI matrix: x86 with
and without VNNI, ARM64, macOS) are grouped by target, and each target is its own series:
`render_history` prints one Markdown table per target and, for several, the latest run of each side by
side; `history_document` is the same as JSON (schemas/history.schema.json); quantlab.trend draws it.

`github_benchmark` turns one run into github-action-benchmark's custom JSON: a list of {name, unit,
value, range?, extra?} for its `customBiggerIsBetter` tool (speedup, mAP) and one for
`customSmallerIsBetter` (size ratio); each tool reads one file, hence two lists.

Names and commit ids come from the files: the Markdown escapes them (quantlab.textsafe.for_markdown), and
the export's names and tooltips carry them as one printable line (for_terminal): the action shows
them on its chart page and in its alert comments.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from quantlab import __version__
from quantlab.benchjson import Run, Target, VariantResult, run_facts
from quantlab.compare import FP32
from quantlab.textsafe import for_markdown, for_terminal, shorten


SCHEMA_PATH = Path(__file__).resolve().parent / "schemas" / "history.schema.json"


def by_target(runs: Sequence[Run]) -> dict[Target, list[Run]]:
    """The runs of each target, oldest first, the targets in the order of their first run."""
    groups: dict[Target, list[Run]] = {}
    for run in runs:
        groups.setdefault(run.target, []).append(run)
    return groups


def variant_names(runs: Sequence[Run]) -> list[str]:
    """Every variant of the runs, FP32 first, then by name."""
    return sorted({n for run in runs for n in run.variants}, key=lambda n: (n != FP32, n))


def size_ratio(run: Run, v: VariantResult) -> float | None:
    """The variant's size over FP32's: as recorded, else from the run's FP32 size (None without either)."""
    recorded = v.metrics.get("size_ratio")
    if recorded is not None:
        return recorded
    fp32 = run.variants.get(FP32)
    return v.size_bytes / fp32.size_bytes if fp32 else None


def point(run: Run, name: str) -> dict | None:
    """One variant's numbers in one run (None where the run lacks the variant)."""
    v = run.variants.get(name)
    if v is None:
        return None
    return {"speedup": v.speedup, "speedup_low": v.speedup_low, "speedup_high": v.speedup_high,
            "map50_95": v.metrics.get("map50_95"), "size_bytes": v.size_bytes, "size_ratio": size_ratio(run, v),
            "memory_bytes": v.metrics.get("memory_bytes")}


def history_document(runs: Sequence[Run], folder: str | Path) -> dict:
    """The history as JSON (schemas/history.schema.json): per target its runs in order and each variant's
    series of points (null where a run lacks it), then the latest run of each target side by side."""
    groups = by_target(runs)
    return {
        "schema_version": 1,
        "quantlab_version": __version__,
        "folder": str(folder),
        "targets": [{"target": target.as_dict(), "label": target.label,
                     "runs": [run_facts(run) for run in group],
                     "variants": [{"name": name, "points": [point(run, name) for run in group]}
                                  for name in variant_names(group)]}
                    for target, group in groups.items()],
        "side_by_side": [{"variant": name, "latest": [point(group[-1], name) for group in groups.values()]}
                         for name in variant_names([group[-1] for group in groups.values()])],
    }


def render_history(runs: Sequence[Run]) -> str:
    """One table per target, a row per saved run: date, commit, and per variant speedup [interval] / MB /
    mAP50-95. Several targets: each under its heading, then their latest runs side by side."""
    groups = by_target(runs)
    if len(groups) == 1:
        return _target_table(runs)
    sections = [f"### {for_markdown(target.label)}\n\n{_target_table(group)}" for target, group in groups.items()]
    return "\n\n".join([*sections, _side_by_side(groups)])


def _target_table(runs: Sequence[Run]) -> str:
    names = variant_names(runs)
    header = "| Date | Commit | " + " | ".join(f"{for_markdown(n)} speedup / MB / mAP50-95" for n in names) + " |"
    lines = [header, "|" + "---|" * (2 + len(names))]
    for run in runs:
        cells = [_cell(run.variants.get(n)) for n in names]
        commit = for_markdown((run.commit or "")[:8]) or "-"
        lines.append(f"| {run.when.isoformat()[:19]} | {commit} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _side_by_side(groups: dict[Target, list[Run]]) -> str:
    """The latest run of each target: per variant speedup [interval] / size ratio / mAP50-95."""
    latest = [group[-1] for group in groups.values()]
    lines = ["### Targets side by side (latest run of each: speedup / size ratio / mAP50-95)", "",
             "| Variant | " + " | ".join(f"{for_markdown(t.label)} ({run.when.isoformat()[:10]})"
                                        for t, run in zip(groups, latest)) + " |",
             "|" + "---|" * (1 + len(latest))]
    for name in variant_names(latest):
        cells = [_ratio_cell(run, run.variants.get(name)) for run in latest]
        lines.append(f"| {for_markdown(name)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _speed(v: VariantResult) -> str:
    return f"{v.speedup:.3g}" + (f" [{v.speedup_low:.3g}, {v.speedup_high:.3g}]" if v.has_interval else "")


def _map(v: VariantResult) -> str:
    map50_95 = v.metrics.get("map50_95")
    return "-" if map50_95 is None else f"{map50_95:.3g}"


def _cell(v: VariantResult | None) -> str:
    if v is None:
        return "-"
    return f"{_speed(v)} / {v.size_bytes / 1e6:.3g} / {_map(v)}"


def _ratio_cell(run: Run, v: VariantResult | None) -> str:
    if v is None:
        return "-"
    ratio = size_ratio(run, v)
    return f"{_speed(v)} / {'-' if ratio is None else f'{ratio:.3g}'} / {_map(v)}"


def github_benchmark(run: Run) -> tuple[list[dict], list[dict]]:
    """(bigger_is_better, smaller_is_better) entries for github-action-benchmark's custom tools.

    Speedup and mAP are bigger-is-better, the size ratio smaller-is-better. FP32's speedup and size
    ratio are 1 by definition and left out. The speedup's `range` is its measured 95% interval.
    """
    bigger, smaller = [], []
    for v in run.variants.values():
        name, extra = for_terminal(v.variant), for_terminal(_extra(run, v))
        if v.variant != FP32:
            entry = {"name": f"{name} speedup over FP32", "unit": "x", "value": round(v.speedup, 4), "extra": extra}
            if v.has_interval:
                entry["range"] = f"{v.speedup_low:.4f} to {v.speedup_high:.4f} (95%)"
            bigger.append(entry)
            ratio = v.metrics.get("size_ratio")
            if ratio is not None:
                smaller.append({"name": f"{name} size ratio to FP32", "unit": "ratio", "value": round(ratio, 4),
                                "extra": extra})
        for metric, label in (("map50_95", "mAP50-95"), ("map50", "mAP50")):
            value = v.metrics.get(metric)
            if value is not None:
                bigger.append({"name": f"{name} {label}", "unit": "mAP", "value": round(value, 4), "extra": extra})
    return bigger, smaller


def _extra(run: Run, v: VariantResult) -> str:
    """The tooltip github-action-benchmark shows: what the value was measured on."""
    setup = v.setup or {}
    parts = [f"variant {v.variant} ({'gated' if v.gated else 'not gated' if v.gated is False else 'gating unknown'})"]
    cpu = setup.get("cpu") or run.cpu
    if cpu:
        parts.append(f"cpu {shorten(cpu, 80)}")
    threads = setup.get("threads", v.threads)
    if threads is not None:
        parts.append(f"threads {threads}")
    for key in ("providers", "onnxruntime"):
        if setup.get(key):
            value = setup[key]
            parts.append(f"{key} {shorten(','.join(value) if isinstance(value, list) else value, 80)}")
    return "; ".join(parts)
