"""The history drawn: a trend chart per target (PNG) and a page a person can open offline (HTML).

One column of plots per target (quantlab.history.by_target: runs of another CPU model, thread count or
providers are another series, never joined to this one), one row per measure: speedup over FP32 with
its 95% interval as error bars, mAP50-95, size ratio to FP32 and session memory, each variant a line
over the runs' dates in one colour across the columns.

The HTML page is one file: the PNG embedded as base64 and the history's tables; no script, no link to
anything, so it opens offline and from a CI artifact. Names and labels come from the files: escaped
with html.escape there, and with `$` escaped in the chart (matplotlib would read it as mathtext).
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Sequence
from pathlib import Path

from quantlab.atomicio import atomic_write_bytes
from quantlab.benchjson import Run
from quantlab.errors import ConfigError
from quantlab.history import by_target, point, variant_names
from quantlab.plotting import pyplot_or_none
from quantlab.textsafe import for_terminal, shorten
from quantlab.variant import FP32

MB = 1e6
# (point key, axis label, FP32 drawn): FP32's speedup and size ratio are 1 by definition
ROWS = (("speedup", "speedup over FP32 (95% interval)", False), ("map50_95", "mAP50-95", True),
        ("size_ratio", "size ratio to FP32", False), ("memory_bytes", "session memory (MB)", True))
INSTALL = "pip install 'quantlab-yolo[chart]'"


def pyplot():
    """matplotlib.pyplot on the Agg backend; ConfigError naming the extra when matplotlib is missing."""
    plt = pyplot_or_none()
    if plt is None:
        raise ConfigError(f"the trend chart needs matplotlib, the chart extra: {INSTALL}")
    return plt


def _html(text: object) -> str:
    """Text from a file as HTML text: one printable line (undecodable bytes as \\xNN), markup escaped."""
    return html.escape(for_terminal(text))


def _label(text: object, max_chars: int = 40) -> str:
    """A name from a file as chart text: one printable line, cut short, `$` shown as itself (no mathtext)."""
    return shorten(text, max_chars).replace("$", r"\$")


def trend_png(runs: Sequence[Run]) -> bytes:
    """The chart as PNG bytes: rows ROWS, one column per target."""
    plt = pyplot()
    groups = by_target(runs)
    names = variant_names(runs)
    colours = {name: plt.cm.tab10(i % 10) for i, name in enumerate(names)}
    fig, axes = plt.subplots(len(ROWS), len(groups), figsize=(5 * len(groups) + 1, 11), dpi=100,
                             squeeze=False, sharex="col", sharey="row")
    for column, (target, group) in enumerate(groups.items()):
        axes[0][column].set_title(_label(target.label, 60), fontsize=9)
        dates = [run.when for run in group]
        for row, (key, ylabel, with_fp32) in enumerate(ROWS):
            ax = axes[row][column]
            for name in variant_names(group):
                if name == FP32 and not with_fp32:
                    continue
                points = [point(run, name) for run in group]
                xs = [d for d, p in zip(dates, points) if p and p[key] is not None]
                ys = [p[key] / (MB if key == "memory_bytes" else 1) for p in points if p and p[key] is not None]
                if not xs:
                    continue
                style = dict(color=colours[name], marker="o", markersize=4, label=_label(name))
                if key == "speedup":
                    below = [p["speedup"] - (p["speedup_low"] or p["speedup"]) for p in points if p]
                    above = [(p["speedup_high"] or p["speedup"]) - p["speedup"] for p in points if p]
                    ax.errorbar(xs, ys, yerr=[below, above], capsize=3, **style)
                else:
                    ax.plot(xs, ys, **style)
            if column == 0:
                ax.set_ylabel(ylabel, fontsize=8)
            ax.tick_params(labelsize=7)
            ax.grid(alpha=0.3)
    fig.legend(handles=[plt.Line2D([], [], color=colours[n], marker="o", label=_label(n)) for n in names],
               loc="upper center", ncol=min(len(names), 6), fontsize=8)
    fig.autofmt_xdate()
    fig.tight_layout(rect=(0, 0, 1, 0.96))
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return buffer.getvalue()


def write_trend_png(runs: Sequence[Run], path: Path) -> None:
    atomic_write_bytes(path, trend_png(runs))


def trend_html(runs: Sequence[Run], folder: str | Path) -> str:
    """A self-contained page: the chart inline, the latest run of each target side by side, each target's runs."""
    groups = by_target(runs)
    chart = base64.b64encode(trend_png(runs)).decode("ascii")
    latest = [group[-1] for group in groups.values()]
    parts = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
             f"<title>quantlab history: {_html(folder)}</title>",
             "<style>body{font-family:sans-serif;margin:1.5em}table{border-collapse:collapse;margin:1em 0}"
             "td,th{border:1px solid #ccc;padding:.25em .5em;text-align:right}td:first-child{text-align:left}"
             "img{max-width:100%}</style></head><body>",
             f"<h1>quantlab history: {_html(folder)}</h1>",
             f"<p>{len(runs)} run(s) on {len(groups)} target(s) (CPU model, threads, providers): each target is "
             "its own series; speedups of different targets are not like for like.</p>",
             f'<img alt="trend per variant and target" src="data:image/png;base64,{chart}">',
             "<h2>Targets side by side (latest run of each)</h2>",
             "<p>Each cell: speedup over FP32 [95% interval] / size ratio to FP32 / mAP50-95 / session memory.</p>",
             _table(["variant", *(t.label for t in groups)],
                    [[name, *(_cell(point(run, name)) for run in latest)] for name in variant_names(latest)])]
    for target, group in groups.items():
        names = variant_names(group)
        parts += [f"<h2>{_html(target.label)}</h2>",
                  _table(["date", "commit", *names],
                         [[run.when.isoformat()[:19], (run.commit or "-")[:8],
                           *(_cell(point(run, n)) for n in names)] for run in group])]
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def _cell(p: dict | None) -> str:
    """speedup [interval] / size ratio / mAP50-95 / memory MB of one point ('-' where absent)."""
    if p is None:
        return "-"
    speed = f"{p['speedup']:.3g}" + (f" [{p['speedup_low']:.3g}, {p['speedup_high']:.3g}]"
                                     if p["speedup_low"] is not None else "")
    rest = [f"{p[k]:.3g}" if p[k] is not None else "-" for k in ("size_ratio", "map50_95")]
    memory = "-" if p["memory_bytes"] is None else f"{p['memory_bytes'] / MB:.1f} MB"
    return " / ".join([speed, *rest, memory])


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """An HTML table, every cell escaped."""
    head = "".join(f"<th>{_html(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{_html(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def write_trend_html(runs: Sequence[Run], path: Path, folder: str | Path) -> None:
    atomic_write_bytes(path, trend_html(runs, folder).encode("utf-8"))
