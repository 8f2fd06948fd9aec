"""quantlab.textsafe: text read from files shown in a terminal, a CI log and Markdown as the text it is."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from quantlab.textsafe import decodable, for_markdown, for_terminal, shorten


@pytest.mark.parametrize(
    ("text", "terminal", "markdown"),
    [
        ("yolov8n.auto.onnx", "yolov8n.auto.onnx", "yolov8n.auto.onnx"),
        ("size_bytes", "size_bytes", "size_bytes"),  # an underscore inside a word opens no emphasis
        ("_x_", "_x_", "\\_x\\_"),
        ("\x1b[31mred", "\\x1b[31mred", "\\\\x1b\\[31mred"),  # CSI: colours, cursor moves, screen clears
        ("\x1b]0;title\x07", "\\x1b]0;title\\x07", "\\\\x1b\\]0;title\\\\x07"),  # OSC: window title, hyperlinks
        ("\x9b2J", "\\x9b2J", "\\\\x9b2J"),  # the 8-bit CSI
        ("a\nb\r", "a\\x0ab\\x0d", "a\\\\x0ab\\\\x0d"),
        ("a|b`c`", "a|b`c`", "a\\|b\\`c\\`"),
        ("<img src=x>", "<img src=x>", "\\<img src=x\\>"),
        ("[l](javascript:x)", "[l](javascript:x)", "\\[l\\](javascript:x)"),
        ("evil\u202egnp.exe", "evil\\u202egnp.exe", "evil\\\\u202egnp.exe"),  # right-to-left override
        ("au\u200bto", "au\\u200bto", "au\\\\u200bto"),  # zero-width space
        ("m\udcff.onnx", "m\\xff.onnx", "m\\\\xff.onnx"),  # byte 0xff of a file name (PEP 383)
        ("::add-mask::x", "\\x3a:add-mask::x", "\\\\x3a:add-mask::x"),
        ("  ::error::x", "  \\x3a:error::x", "  \\\\x3a:error::x"),
        ("a ##[set-output]b", "a \\x23#[set-output]b", "a \\\\x23\\#\\[set-output\\]b"),
        ("##vso[task]", "\\x23#vso[task]", "\\\\x23\\#vso\\[task\\]"),
        ("C:\\models\\a.onnx", "C:\\models\\a.onnx", "C:\\\\models\\\\a.onnx"),
        ("π 模型 😀", "π 模型 😀", "π 模型 😀"),
    ],
    ids=["plain", "snake-case", "emphasis", "csi", "osc", "c1-csi", "newline-cr", "pipe-backtick", "html", "link",
         "rtl-override", "zero-width", "undecodable-byte", "workflow-command", "indented-workflow-command",
         "legacy-workflow-command", "azure-command", "windows-path", "unicode"],
)
def test_text_is_shown_escaped(text, terminal, markdown):
    assert for_terminal(text) == terminal
    assert for_markdown(text) == markdown


def test_decodable_changes_only_undecodable_bytes():
    assert decodable("a\x1b|\udcfe") == "a\x1b|\\xfe"
    assert decodable("a\x1b|\udcfe").encode("utf-8")


def test_shorten_cuts_and_says_how_much():
    assert shorten("\x1b" * 100, 10) == "\\x1b\\x1b\\x...(390 more characters)"
    assert shorten("short") == "short"


@given(st.text(alphabet=st.characters(), max_size=60))
def test_any_text_becomes_one_safe_line(text):
    for shown in (for_terminal(text), for_markdown(text)):
        assert shown.isprintable()  # no newline, control, format or separator character
        assert not shown.lstrip().startswith("::") and "##[" not in shown and "##vso[" not in shown
        shown.encode("utf-8")
    assert not re.search(r"(?<!\\)(?:\\\\)*[|`<>\[\]]", for_markdown(text))  # every special escaped


def test_a_workflow_command_is_one_line_with_percent_encoded():
    from quantlab.textsafe import workflow_command

    line = workflow_command("warning", "quantlab", "a %0A::error::b\nc\x1b[31m")
    assert line.startswith("::warning title=quantlab::") and "\n" not in line and "\x1b" not in line
    assert "%250A" in line and "%0A" not in line.replace("%250A", "")  # the runner would decode %0A to a newline
