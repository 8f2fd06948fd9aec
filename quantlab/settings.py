"""Every setting the two faces share, declared once: the pytest suite's options and the CLI's shared options.

A setting is used by faces: "pytest" (--quantlab-<name>, ini quantlab_<name>) and the `quantlab`
subcommands ("run", "eval", ...: --<name>). `settings_for(face)` lists a face's settings in the
order its help shows them; each carries what a reference page needs: flags, ini key, type, default, help.
Light on purpose (no pytest, no onnxruntime): pytest imports it in every run where quantlab is installed.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from quantlab.errors import QuantlabError
from quantlab.gates import check_budget
from quantlab.measures import BUDGETED, Metric

PYTEST = "pytest"
COMMANDS = ("run", "ab", "quantize", "eval", "tune", "bench", "compare", "history", "export", "demo-data")


def count(minimum: int) -> Callable[[str], int]:
    """A CLI type: an integer >= minimum."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{value} is below the minimum {minimum}")
        return value
    return parse


def budget(name: str) -> Callable[[str], float]:
    """A CLI type: a finite number within the budget's range (a NaN would pass every gate)."""
    def parse(text: str) -> float:
        try:
            return check_budget(name, float(text))
        except ValueError as exc:  # ConfigError is a ValueError too, and says more
            raise argparse.ArgumentTypeError(str(exc) if isinstance(exc, QuantlabError) else
                                             f"{text!r} is not a number") from None
    return parse


MAX_BATCH = 1024


def batch_sizes(text: str) -> tuple[int, ...]:
    """A CLI type: '1,8,32' -> (1, 8, 32), each a whole number from 1 to MAX_BATCH."""
    parse = count(1)
    values = tuple(dict.fromkeys(parse(part.strip()) for part in text.split(",") if part.strip()))
    if any(v > MAX_BATCH for v in values):
        raise argparse.ArgumentTypeError(f"{text!r}: a batch above {MAX_BATCH} would hold gigabytes of images")
    if not values:
        raise argparse.ArgumentTypeError(f"{text!r} names no batch size: give e.g. 1,8,32")
    return values


def fraction(text: str) -> float:
    """A CLI type: a finite number >= 0 (a relative or absolute tolerance)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number >= 0")
    return value


def providers(text: str) -> tuple[str, ...]:
    """A CLI type: onnxruntime execution providers, comma-separated, each available here."""
    from quantlab.sessions import parse_providers  # here, not at import: onnxruntime costs 0.1 s

    try:
        return parse_providers(text)
    except QuantlabError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def input_hw_problem(values: list[int]) -> str | None:
    """Why an H W pair cannot be allocated, or None."""
    from quantlab.description import input_size_problem

    return input_size_problem(values)


def recipe_choices() -> list[str]:
    """Every recipe name (imported when asked: help and parsing only)."""
    from quantlab.recipes import recipe_choices as choices

    return choices()


@dataclass(frozen=True)
class Setting:
    """One setting: its value's type and default, its help, and the faces that offer it.

    kind: Path, str, int, float or bool (a flag). parse: the CLI's conversion of the typed text (None: the
    text as typed); the suite converts by kind (suite/options.py). nargs/check: a CLI setting of several
    values, checked together (check returns the problem or None). choices: the one value's choices (CLI).
    help_in: a face's own wording, where the setting means something narrower there; default_in: a face's own
    default, where it differs from `default`.
    """

    name: str
    kind: type
    help: str
    default: object = None
    faces: frozenset[str] = frozenset()
    parse: Callable[[str], object] | None = None
    metavar: str | tuple[str, ...] | None = None
    nargs: int | None = None
    check: Callable[[list], str | None] | None = None
    choices: Callable[[], list[str]] | None = None
    help_in: Mapping[str, str] = field(default_factory=dict, hash=False)
    default_in: Mapping[str, object] = field(default_factory=dict, hash=False)

    @property
    def flag(self) -> str:
        """The pytest option."""
        return "--quantlab-" + self.name.replace("_", "-")

    @property
    def key(self) -> str:
        """The pytest ini key."""
        return "quantlab_" + self.name

    @property
    def cli_flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    def default_for(self, face: str):
        """The default `face` gives the setting."""
        return self.default_in.get(face, self.default)

    def help_for(self, face: str) -> str:
        """The help `face` shows, without its default; {recipes} stands for the recipe names."""
        text = self.help_in.get(face, self.help)
        return text.format(recipes=", ".join(recipe_choices())) if "{recipes}" in text else text


def _faces(*names: str) -> frozenset[str]:
    unknown = set(names) - {PYTEST, *COMMANDS}
    if unknown:
        raise ValueError(f"unknown face(s) {sorted(unknown)}")
    return frozenset(names)


_ALL_COMMANDS = _faces(*COMMANDS)


def _budget_setting(metric: Metric) -> Setting:
    """The option of a budget of quantlab.measures' table: --max-size-ratio, --quantlab-min-box-cosine, ..."""
    default = metric.budget.default
    text = (f"{'smallest' if metric.higher_is_better else 'largest'} {metric.name} allowed: {metric.help}"
            + ("" if default is not None else " (default: not gated)"))
    return Setting(metric.budget_name, float, text, default, faces=_faces(PYTEST, "run"),
                   parse=budget(metric.budget_name))


SETTINGS = (
    Setting("model", Path, "FP32 ONNX detector to gate; giving it turns the suite on", faces=_faces(PYTEST, "run"),
            help_in={"run": "FP32 ONNX model (default: the embedded demo model)"}),
    Setting("demo", bool, "gate quantlab's embedded demo model (on generated shapes unless data/calib are given)",
            faces=_faces(PYTEST)),
    Setting("data", Path, "Ultralytics data.yaml: its val split, with labels (mAP)",
            faces=_faces(PYTEST, "run", "ab", "eval", "tune")),
    Setting("images", Path, "unlabelled image folder: agreement with FP32 only",
            faces=_faces("run", "ab", "eval", "tune")),
    Setting("recursive", bool, "look for images in sub-folders too",
            faces=_faces("run", "ab", "quantize", "eval", "tune")),
    Setting("calib", Path, "calibration image folder (default: the evaluation images)",
            faces=_faces(PYTEST, "run", "ab", "quantize", "tune"),
            help_in={PYTEST: "calibration image folder (default: the data.yaml's val images)",
                     "quantize": "calibration image folder (static mode)"}),
    Setting("num_calib", int, "calibration images sampled", 100,
            faces=_faces(PYTEST, "run", "ab", "quantize", "tune"),
            parse=count(1)),
    Setting("recipes", str, "gated recipes, comma-separated: {recipes}", "auto", faces=_faces(PYTEST, "run")),
    Setting("contrast", str, "recipes built, evaluated and timed beside the gated ones but never gated, "
                             "comma-separated, or none: no contrast at all ({recipes})", "dynamic",
            faces=_faces(PYTEST, "run"), default_in={"run": "ort-default,dynamic"}),
    Setting("recipe", str, "quantization recipe", "auto", faces=_faces("ab", "quantize", "tune"),
            choices=recipe_choices, help_in={"ab": "the candidate's quantization recipe"}),
    Setting("exclude", str, "node names every gated recipe keeps in float, comma-separated (as quantlab "
                            "quantize --exclude, or the list quantlab tune prints)", faces=_faces(PYTEST)),
    Setting("threads", int, "intra-op threads of every session", 1,
            faces=_faces(PYTEST, "run", "ab", "eval", "tune", "bench"), parse=count(1)),
    Setting("runs", int, "timed runs per model, interleaved", 100, faces=_faces("run", "ab", "bench"),
            parse=count(1), help_in={"ab": "timed runs per model, interleaved in 20 blocks"}),
    Setting("input_hw", int, "letterbox size for a model whose input H/W are dynamic (default 640 640)",
            faces=_faces("run", "ab", "quantize", "eval", "bench"), parse=count(32), metavar=("H", "W"), nargs=2,
            check=input_hw_problem),
    Setting("providers", str, "onnxruntime execution providers in priority order, comma-separated; a fallback to "
                              "another provider is an error", "CPUExecutionProvider",
            faces=_faces(PYTEST, "run", "ab", "eval", "bench"), parse=providers, metavar="EP[,EP...]"),
    Setting("runtimes", str, "runtimes that run every variant, comma-separated: onnxruntime (always; its FP32 is "
                             "the reference) and openvino (pip install 'quantlab-yolo[openvino]')", "onnxruntime",
            faces=_faces(PYTEST, "run"), metavar="RT[,RT...]"),
    Setting("tune", bool, "also gate a 'tuned' variant: the first recipe with its most sensitive layers "
                          "returned to float until the accuracy budget holds (quantlab tune)", faces=_faces(PYTEST)),
    Setting("cache_dir", Path, "folder that keeps the suite's built variants and metrics between runs "
                               "(default: pytest's cache folder, .pytest_cache/d/quantlab; --cache-clear empties it)",
            faces=_faces(PYTEST)),
    *(_budget_setting(m) for m in BUDGETED),
    Setting("quiet", bool, "print only results and errors, no progress bars", faces=_ALL_COMMANDS),
    Setting("debug", bool, "show the traceback of an error", faces=_ALL_COMMANDS),
)
BY_NAME = {s.name: s for s in SETTINGS}


def settings_for(face: str) -> tuple[Setting, ...]:
    """The settings `face` offers ("pytest" or a subcommand), in table order."""
    _faces(face)
    return tuple(s for s in SETTINGS if face in s.faces)
