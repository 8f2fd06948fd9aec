"""The settings table makes both faces: every setting a face uses is an option there, under its flag, with the
table's default; the suite and the CLI read the same defaults (but where the table gives a face its own), and the
budgets' defaults are Budgets()'."""

import argparse

import pytest

from quantlab.cli import build_parser
from quantlab.gates import Budgets
from quantlab.gates import BUDGET_NAMES
from quantlab.settings import BY_NAME, COMMANDS, PYTEST, SETTINGS, settings_for
from quantlab.suite.options import Reader

pytest_plugins = ["pytester"]


def _subcommands() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    return next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices


def _cli_default(command: argparse.ArgumentParser, name: str):
    """The value a command gets when the option is not given (argparse converts a text default by its type)."""
    action = next(a for a in command._actions if a.dest == name)
    return action.type(action.default) if isinstance(action.default, str) and action.type else action.default


def _converted(name: str, value):
    parse = BY_NAME[name].parse
    return parse(value) if isinstance(value, str) and parse else value


def test_every_subcommand_offers_each_setting_it_uses_under_its_flag():
    commands = _subcommands()
    assert set(commands) == set(COMMANDS)
    for name, command in commands.items():
        flags = {flag: a.dest for a in command._actions for flag in a.option_strings}
        missing = [s.cli_flag for s in settings_for(name) if flags.get(s.cli_flag) != s.name]
        assert not missing, f"quantlab {name} lacks {missing}"


def test_the_suite_offers_each_of_its_settings_as_an_option_and_an_ini_key(pytester):
    for s in settings_for(PYTEST):
        config = pytester.parseconfig(*([s.flag] if s.kind is bool else [s.flag, "1"]))
        assert Reader(config).given(s.name) == s.flag
        config.getini(s.key)  # a ValueError if the key is not declared


@pytest.mark.parametrize("command", [c for c in COMMANDS if settings_for(c)])
def test_a_subcommand_defaults_to_the_tables_values_and_agrees_with_the_suite(pytester, command):
    reader = Reader(pytester.parseconfig())
    parser = _subcommands()[command]
    for s in settings_for(command):
        cli = _cli_default(parser, s.name)
        assert cli == _converted(s.name, s.default_for(command)) or (s.kind is bool and cli is False), s.name
        if PYTEST in s.faces:
            suite = _converted(s.name, reader.value(s.name))
            assert suite == _converted(s.name, s.default_for(PYTEST)) or (s.kind is bool and suite is False), s.name
            assert (cli == suite) == (s.default_for(command) == s.default_for(PYTEST)), s.name


def test_every_budget_is_a_setting_of_the_suite_with_the_gates_default():
    budgets = Budgets()
    for name in BUDGET_NAMES:
        assert BY_NAME[name].default == getattr(budgets, name) and PYTEST in BY_NAME[name].faces, name


def test_every_setting_is_offered_somewhere_and_documented():
    for s in SETTINGS:
        assert s.faces and s.help, s.name


@pytest.mark.parametrize(("contrast", "no_contrast", "expected"), [
    ([], False, ["fp32", "auto", "ort-default", "dynamic"]),  # run's default: onnxruntime's defaults and dynamic
    (["--contrast", "none"], False, ["fp32", "auto"]),  # none: no contrast at all
    ([], True, ["fp32", "auto", "dynamic"]),  # --no-contrast, the older spelling of --contrast dynamic
    (["--contrast", "ort-default"], False, ["fp32", "auto", "ort-default"]),  # dynamic only when named
], ids=["default", "none", "no-contrast", "named"])
def test_run_plans_its_contrasts_by_the_suites_rule(contrast, no_contrast, expected):
    from quantlab.cli import run_contrast
    from quantlab.variant import plan_variants

    args = build_parser().parse_args(["run", *contrast, *(["--no-contrast"] if no_contrast else [])])
    planned = plan_variants(["auto"], run_contrast(args), include_dynamic=False)
    assert [v.name for v in planned] == expected
    assert [v.name for v in planned if v.gated] == ["auto"]


# The CLI types, called directly: the parsers in the table are built once at import, so only a call here
# exercises their code as written now (and mutmut's mutants of it)
def test_count_takes_whole_numbers_from_its_minimum():
    from quantlab.settings import count

    assert count(1)("1") == 1 and count(32)("32") == 32
    for text, message in (("0", "0 is below the minimum 1"), ("1.5", "'1.5' is not a whole number"),
                          ("x", "'x' is not a whole number")):
        with pytest.raises(argparse.ArgumentTypeError, match=f"^{message}$"):
            count(1)(text)


def test_budget_takes_a_finite_number_in_the_budget_s_range():
    from quantlab.settings import budget

    assert budget("max_map_drop")("0.01") == 0.01
    with pytest.raises(argparse.ArgumentTypeError, match="^'x' is not a number$"):
        budget("max_map_drop")("x")
    with pytest.raises(argparse.ArgumentTypeError, match=r"^budget max-map-drop = nan is not a number in \[0, 1\]$"):
        budget("max_map_drop")("nan")  # the budget's own reason, naming it and its range


def test_batch_sizes_are_distinct_whole_numbers_up_to_the_maximum():
    from quantlab.settings import MAX_BATCH, batch_sizes

    assert batch_sizes(" 1, 8,8 ,32,") == (1, 8, 32) and batch_sizes(str(MAX_BATCH)) == (MAX_BATCH,)
    for text, message in ((str(MAX_BATCH + 1), f"'{MAX_BATCH + 1}': a batch above {MAX_BATCH} would hold gigabytes"),
                          (",", "',' names no batch size: give e.g. 1,8,32"), ("0", "0 is below the minimum 1"),
                          ("8,x", "'x' is not a whole number")):
        with pytest.raises(argparse.ArgumentTypeError, match=f"^{message}"):
            batch_sizes(text)


def test_fraction_and_providers_refuse_in_their_own_words():
    from quantlab.settings import fraction, providers

    assert fraction("0") == 0.0 and fraction("0.25") == 0.25
    for text in ("-0.1", "inf", "x"):
        with pytest.raises(argparse.ArgumentTypeError, match=f"'{text}' is not"):
            fraction(text)
    assert providers("CPUExecutionProvider") == ("CPUExecutionProvider",)
    with pytest.raises(argparse.ArgumentTypeError, match="NoSuchExecutionProvider"):
        providers("NoSuchExecutionProvider")


def test_a_setting_s_help_and_default_are_its_face_s_where_it_has_one():
    contrast, calib = BY_NAME["contrast"], BY_NAME["calib"]
    assert contrast.default_for("run") == "ort-default,dynamic" and contrast.default_for(PYTEST) == "dynamic"
    assert calib.help_for(PYTEST) != calib.help_for("run") and calib.help_for("run") == calib.help
    recipes = BY_NAME["recipes"].help_for(PYTEST)
    assert "{recipes}" not in recipes and "auto, u8s8" in recipes  # the recipe names filled in
