"""MkDocs hook: the reference and API pages are generated from quantlab's own tables, so they cannot drift.

A page holds a marker (<!-- quantlab:cli -->, ...) that on_page_markdown replaces with its table.
"""

from __future__ import annotations

import argparse

import quantlab
from quantlab.cli import build_parser
from quantlab.compare import Tolerances
from quantlab.errors import ExitCode
from quantlab.measures import METRICS, WHEN_WORDS
from quantlab.suite.options import SETTINGS


def _cell(value: object) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")


def _table(header: tuple[str, ...], rows: list[tuple]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]) + "\n"


def _default(value: object) -> str:
    if value in (None, False, argparse.SUPPRESS) or value == []:
        return ""
    return f"`{' '.join(map(str, value)) if isinstance(value, (list, tuple)) else value}`"


def cli_reference() -> str:
    """Every `quantlab` command and its arguments, from the parser itself."""
    commands = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    summaries = {a.dest: a.help for a in commands._choices_actions}
    parts = []
    for name, parser in commands.choices.items():
        rows = [(f"`{', '.join(a.option_strings) or a.dest}`", _default(a.default), a.help or "")
                for a in parser._actions if not isinstance(a, argparse._HelpAction)]
        parts.append(f"### quantlab {name}\n\n{summaries[name]}\n\n" + _table(("argument", "default", "help"), rows))
    return "\n".join(parts)


def pytest_reference() -> str:
    """Every option of the pytest plugin: its flag, its ini key, its default."""
    rows = [(f"`{s.flag}`", f"`{s.key}`", s.kind.__name__, _default(s.default), s.help_for("pytest")) for s in SETTINGS]
    return _table(("option", "ini key", "type", "default", "help"), rows)


def metrics_reference() -> str:
    """Every metric measured per variant: unit, direction, budget and compare tolerance."""
    tolerances = Tolerances()
    rows = [(f"`{m.name}`", m.unit, "higher" if m.higher_is_better else "lower",
             f"`--{m.budget_name.replace('_', '-')}` ({'not gated' if m.budget.default is None else m.budget.default}"
             f"{', ' + WHEN_WORDS[m.budget.when] if WHEN_WORDS[m.budget.when] else ''})" if m.budget else "",
             f"`{m.tolerance}` ({getattr(tolerances, m.tolerance)})" if m.tolerance else "", m.help)
            for m in METRICS]
    return _table(("metric", "unit", "better", "budget (default)", "compare tolerance (default)", "what"), rows)


def exit_codes_reference() -> str:
    return _table(("code", "name", "meaning"), [(f"`{c.value}`", c.name, c.meaning) for c in ExitCode])


def api_reference() -> str:
    """One mkdocstrings entry per public name, in `quantlab.__all__`'s order."""
    entries = [f"::: {module}.{name}\n    options:\n      show_root_full_path: false\n"
               for name, module in quantlab._EXPORTS.items()]
    return "\n".join(entries)


MARKERS = {"<!-- quantlab:cli -->": cli_reference, "<!-- quantlab:pytest -->": pytest_reference,
           "<!-- quantlab:metrics -->": metrics_reference, "<!-- quantlab:exit-codes -->": exit_codes_reference,
           "<!-- quantlab:api -->": api_reference}


def on_page_markdown(markdown: str, page, config, files) -> str:
    for marker, render in MARKERS.items():
        if marker in markdown:
            markdown = markdown.replace(marker, render())
    return markdown
