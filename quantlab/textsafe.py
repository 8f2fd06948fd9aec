"""Text read from files (names, paths, machine facts), made safe for where quantlab shows or writes it.

A stranger's benchmark JSON, model metadata or file name may hold terminal escape sequences, bidi
overrides, newlines, Markdown or HTML, or a CI runner's log commands. Nothing read from a file is
shown raw:

* `decodable`: undecodable file-name bytes (Python keeps them as lone surrogates, PEP 383) shown as
  `\\xNN`, so the text can be printed and written as UTF-8; everything else unchanged. For JSON.
* `for_terminal`: one line with nothing a terminal or a CI log acts on. Every character Python does
  not call printable (controls such as ESC and newline, C1 controls, bidi and zero-width format
  characters, line separators, undecodable bytes) is shown as `\\xNN` / `\\uNNNN`; and the text
  cannot form a runner's log command (GitHub's `::name::` at a line's start and `##[name]`,
  Azure Pipelines' `##vso[`): those reach the log whenever a CI job prints quantlab's output.
* `shorten`, `quoted`: a short token of such text for a one-line message (a path, one field of a file).
* `for_markdown`: `for_terminal`, then Markdown and HTML punctuation backslash-escaped, so a value
  stays inside its table cell and renders as the text it is (job summaries, report.md).

A backslash in the text is kept as it is (Windows paths), so `\\x1b` may also be those four characters.
"""

from __future__ import annotations

import re

# GitHub Actions reads `::command::` at the start of a log line (after spaces) and `##[command]`
# anywhere in it; Azure Pipelines reads `##vso[command]` anywhere
_LINE_START_COMMAND = re.compile(r"^(\s*):(?=:)")
_ANYWHERE_COMMAND = re.compile(r"#(?=#(?:\[|vso\[))")
# characters with a meaning in GitHub-flavoured Markdown or HTML inline text: code, emphasis, links
# and images, raw HTML and entities, table cells, strikethrough, math, headings; an underscore between
# two letters or digits cannot open or close emphasis, so size_bytes stays readable
_MARKDOWN_SPECIAL = re.compile(r"([\\`*\[\]<>|~&$#!]|(?<![^\W_])_|_(?![^\W_]))")
_SURROGATE_ESCAPES = range(0xDC80, 0xDD00)  # PEP 383: byte 0xNN of a file name kept as U+DCNN


def _escape(char: str) -> str:
    code = ord(char)
    if code in _SURROGATE_ESCAPES:
        return f"\\x{code - 0xDC00:02x}"
    if code < 0x100:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def decodable(text: str) -> str:
    """`text` with undecodable file-name bytes (lone surrogates) shown as `\\xNN`; valid UTF-8 when encoded."""
    if not any(0xD800 <= ord(c) <= 0xDFFF for c in text):
        return text
    return "".join(_escape(c) if 0xD800 <= ord(c) <= 0xDFFF else c for c in text)


def for_terminal(text: object) -> str:
    """`text` (str() of it) as one line that is shown as written and that no terminal or CI log acts on."""
    text = str(text)
    if not text.isprintable():
        text = "".join(c if c.isprintable() else _escape(c) for c in text)
    # `\x3a` / `\x23`: the same notation, so a reader sees a character was neutralised
    text = _LINE_START_COMMAND.sub(r"\1\\x3a", text)
    return _ANYWHERE_COMMAND.sub(r"\\x23", text)


def workflow_command(kind: str, title: str, message: object) -> str:
    """A GitHub Actions `::warning::`/`::error::` line whose message is text read from files: made safe for a
    terminal (one line, no escapes) and with `%` encoded, which the runner would otherwise decode (`%0A`)."""
    return f"::{kind} title={title}::{for_terminal(message).replace('%', '%25')}"


def for_markdown(text: object) -> str:
    """`text` as inline Markdown that renders as the text itself: fit for a table cell or a list item."""
    return _MARKDOWN_SPECIAL.sub(r"\\\1", for_terminal(text))


def shorten(text: object, max_chars: int = 60) -> str:
    """`for_terminal(text)` cut to about `max_chars`, saying how much was left out: a token for a message."""
    shown = for_terminal(text)
    if len(shown) <= max_chars:
        return shown
    return f"{shown[:max_chars]}...({len(shown) - max_chars} more characters)"


def quoted(value: object, max_chars: int = 20) -> str:
    """A piece of a user's file for a message, never more: a string quoted and escaped as repr does, cut
    to `max_chars` characters ('...' where it was cut); any other value as its repr, cut alike."""
    if isinstance(value, str):
        return repr(value[:max_chars]) + ("..." if len(value) > max_chars else "")
    text = repr(value)
    return text[:max_chars] + ("..." if len(text) > max_chars else "")
