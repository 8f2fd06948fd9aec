"""The trend of saved benchmark runs, and its export for github-action-benchmark.

`render_history` is one Markdown row per run saved by pytest-benchmark. `github_benchmark` turns
one run into github-action-benchmark's custom JSON: a list of {name, unit, value, range?, extra?}
for its `customBiggerIsBetter` tool (speedup, mAP) and one for `customSmallerIsBetter` (size
ratio); each tool reads one file, hence two lists.

Names and commit ids come from the files: the Markdown escapes them (quantlab.textsafe.for_markdown), and
the export's names and tooltips carry them as one printable line (for_terminal): the action shows
them on its chart page and in its alert comments.
"""

from __future__ import annotations

from pathlib import Path

from quantlab.benchjson import Run, VariantResult, saved_runs
from quantlab.compare import FP32
from quantlab.textsafe import for_markdown, for_terminal, shorten


def render_history(folder: str | Path) -> str:
    """One row per saved run: date, commit, and per variant speedup [interval] / MB / mAP50-95."""
    runs = saved_runs(folder)
    names = sorted({n for run in runs for n in run.variants}, key=lambda n: (n != FP32, n))
    header = "| Date | Commit | " + " | ".join(f"{for_markdown(n)} speedup / MB / mAP50-95" for n in names) + " |"
    lines = [header, "|" + "---|" * (2 + len(names))]
    for run in runs:
        cells = [_cell(run.variants.get(n)) for n in names]
        commit = for_markdown((run.commit or "")[:8]) or "-"
        lines.append(f"| {run.when.isoformat()[:19]} | {commit} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _cell(v: VariantResult | None) -> str:
    if v is None:
        return "-"
    speed = f"{v.speedup:.3g}" + (f" [{v.speedup_low:.3g}, {v.speedup_high:.3g}]" if v.has_interval else "")
    map50_95 = v.metrics.get("map50_95")
    return f"{speed} / {v.size_bytes / 1e6:.3g} / {'-' if map50_95 is None else f'{map50_95:.3g}'}"


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
