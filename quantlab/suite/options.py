"""The suite's options: `--quantlab-*` on the command line, `quantlab_*` in the ini file.

Which options, their help and defaults: quantlab.settings (the table the CLI's shared options come from too).

A command-line value wins over the ini value, which wins over the default. Relative paths on the
command line (addopts and PYTEST_ADDOPTS are command line too) resolve against the current folder,
as pytest's own do; those of ini keys (and -o) against the ini file's folder.
Light on purpose: pytest imports it in every run of every repository where quantlab is installed.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from quantlab.settings import PYTEST, Setting, settings_for

SETTINGS = settings_for(PYTEST)
BY_NAME = {s.name: s for s in SETTINGS}
__all__ = ["BY_NAME", "SETTINGS", "Reader", "add_options", "timing_asked_for"]


def timing_asked_for(config: pytest.Config) -> bool:
    """Whether pytest-benchmark times this run (and may save it): False without pytest-benchmark."""
    option = config.option
    return any(getattr(option, name, None) for name in (
        "benchmark_only", "benchmark_enable", "benchmark_json", "benchmark_autosave", "benchmark_save"))


def add_options(parser: pytest.Parser) -> None:
    group = parser.getgroup("quantlab", "quantlab: the model and data the regression gates run on")
    for s in SETTINGS:
        text = s.help_for(PYTEST)
        default = s.default_for(PYTEST)
        where = f" (ini {s.key}" + (f"; default {default})" if default is not None else ")")
        if s.kind is bool:  # default None: not given, so the ini key decides
            group.addoption(s.flag, action="store_true", default=None, help=text + where)
            parser.addini(s.key, text, type="bool", default=False)
        else:
            group.addoption(s.flag, help=text + where)
            parser.addini(s.key, text, default="")


class Reader:
    """Values of one pytest config: the command line first, then the ini file, then the default."""

    def __init__(self, config: pytest.Config):
        self.config = config

    def given(self, name: str) -> str | None:
        """Where `name` was set: its flag, its ini key, or None."""
        s = BY_NAME[name]
        if self.config.getoption(s.key) is not None:
            return s.flag
        return s.key if self._ini(s) not in ("", False) else None

    def value(self, name: str):
        s = BY_NAME[name]
        cli = self.config.getoption(s.key)
        if s.kind is bool:
            return bool(cli) or self._ini(s)
        if cli is not None:
            return self._convert(s, cli, s.flag, self.config.invocation_params.dir)
        ini = self._ini(s)
        if ini != "":
            return self._convert(s, ini, f"{s.key} in {self.config.inipath}", self._ini_dir())
        return s.default_for(PYTEST)

    def model(self) -> Path | None:
        """The model to gate, None for the demo: the command line's choice wins over the ini file's.

        Each names one at most: --quantlab-model or --quantlab-demo, quantlab_model or quantlab_demo.
        """
        model, demo = BY_NAME["model"], BY_NAME["demo"]
        choices = (((self.config.getoption(model.key) is not None, bool(self.config.getoption(demo.key))),
                    f"{model.flag} and {demo.flag}"),
                   ((self._ini(model) != "", self._ini(demo)), f"{model.key} and {demo.key} (ini file or -o)"))
        for (names_model, names_demo), both in choices:
            if names_model and names_demo:
                raise pytest.UsageError(f"quantlab: {both} both name the model to gate: give one")
            if names_model or names_demo:
                return self.value("model") if names_model else None
        return None

    def _ini(self, s: Setting):
        """The ini value, of the type quantlab declared it with: a conftest or plugin may declare the key again."""
        value = self.config.getini(s.key)
        if not isinstance(value, bool if s.kind is bool else str):
            raise pytest.UsageError(f"quantlab: ini key {s.key} is declared again by a conftest or plugin (it now "
                                    f"reads as {type(value).__name__}, not {s.kind.__name__}): rename theirs")
        return value

    def _ini_dir(self) -> Path:
        return self.config.inipath.parent if self.config.inipath else self.config.rootpath

    @staticmethod
    def _convert(s: Setting, text: str, where: str, base: Path):
        if s.kind is Path:
            path = Path(text).expanduser()
            return path if path.is_absolute() else base / path
        try:
            value = s.kind(text)
        except ValueError:
            kind = "an integer" if s.kind is int else "a number"
            raise pytest.UsageError(f"quantlab: {where} = {text!r} is not {kind}") from None
        if s.kind is int and value < 1:
            raise pytest.UsageError(f"quantlab: {where} = {value} must be at least 1")
        if s.kind is float and not math.isfinite(value):
            raise pytest.UsageError(f"quantlab: {where} = {text!r} must be finite")
        return value

    def enabled(self) -> bool:
        """The suite is on once a model is named (option or ini key) or the demo is asked for."""
        return self.given("model") is not None or self.value("demo")

    def stray_flags(self) -> list[str]:
        """The --quantlab-* options given on the command line."""
        return [s.flag for s in SETTINGS if self.config.getoption(s.key) is not None]
