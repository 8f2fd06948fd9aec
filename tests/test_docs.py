"""The docs site builds without a warning, its reference lists every command, option, metric and exit code,
and the Python examples in the README and the docs run.

A ```python block is run unless an HTML comment `<!-- not run: REASON -->` stands on the line before it; the
blocks of one page run in order in one namespace, in an empty folder.
"""

import argparse
import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest

from quantlab.cli import build_parser
from quantlab.errors import ExitCode
from quantlab.measures import METRICS
from quantlab.suite.options import SETTINGS

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
PYTHON_BLOCK = re.compile(r"(<!-- not run: [^>]+ -->\n)?```python\n(.*?)\n```", re.S)


def _hooks():
    spec = importlib.util.spec_from_file_location("docs_hooks", ROOT / "docs" / "hooks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _examples(page: Path) -> list[str]:
    return [code for skip, code in PYTHON_BLOCK.findall(page.read_text()) if not skip]


def test_the_site_builds_without_a_warning(tmp_path):
    pytest.importorskip("mkdocstrings", reason="the docs extra: pip install -e '.[docs]'")
    result = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-d", str(tmp_path / "site")],
                            cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0 and "WARNING" not in result.stderr, result.stderr
    assert "quantize_model" in (tmp_path / "site" / "api" / "index.html").read_text()


def test_the_reference_lists_every_command_option_metric_and_exit_code():
    hooks = _hooks()
    cli = hooks.cli_reference()
    commands = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    for name, parser in commands.choices.items():
        assert f"### quantlab {name}\n" in cli
        for action in (a for a in parser._actions if not isinstance(a, argparse._HelpAction)):
            assert f"`{', '.join(action.option_strings) or action.dest}`" in cli
    pytest_options = hooks.pytest_reference()
    assert all(f"| `{s.flag}` | `{s.key}` |" in pytest_options for s in SETTINGS)
    metrics = hooks.metrics_reference()
    assert all(f"| `{m.name}` |" in metrics for m in METRICS)
    assert "| `size_ratio` | ratio | lower | `--max-size-ratio` (0.3, INT8 builds) |" in metrics
    assert all(f"| `{c.value}` | {c.name} |" in hooks.exit_codes_reference() for c in ExitCode)


def test_every_page_marker_is_filled():
    hooks = _hooks()
    for page in (ROOT / "docs").glob("*.md"):
        text = hooks.on_page_markdown(page.read_text(), None, None, None)
        assert "<!-- quantlab:" not in text, page.name


def test_every_python_example_compiles():
    examples = [(page, code) for page in PAGES for code in _examples(page)]
    assert len(examples) >= 2
    for page, code in examples:
        compile(code, str(page), "exec")


@pytest.mark.slow
@pytest.mark.parametrize("page", [p for p in PAGES if _examples(p)], ids=lambda p: p.name)
def test_the_python_examples_run(page, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    namespace = {"__name__": "__main__"}
    for code in _examples(page):
        exec(compile(code, str(page), "exec"), namespace)  # noqa: S102 - the docs' own examples
