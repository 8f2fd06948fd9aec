"""The `quantlab` command: a thin face over pipeline, quantize, evaluate, bench, compare and the demo.

Exit codes (quantlab.errors.ExitCode): 0 success; 1 a gate, comparison or self-check failed (for compare
also an inconclusive comparison under --fail-on-inconclusive; without it, exit 0 and a warning); 2 bad usage or
input, and a compare in which no gated metric is in both runs; 3 a bug in quantlab (traceback printed);
130/143/129 interrupted by SIGINT/SIGTERM/SIGHUP.
"""

from __future__ import annotations

import argparse
import errno
import os
import signal
import sys
import traceback
import warnings
from collections.abc import Callable
from contextlib import contextmanager, suppress
from pathlib import Path

from quantlab import __version__
from quantlab.atomicio import (atomic_write_bytes, check_output_file, refuse_overwriting_inputs, refuse_same_outputs,
                               staged_folder)
from quantlab.errors import ConfigError, ExitCode, InputError, Interrupted, QuantlabError, SelfCheckError, first_line
from quantlab.jsonio import json_bytes
from quantlab.settings import batch_sizes, budget, count, fraction, recipe_choices, settings_for
from quantlab.textsafe import for_terminal, workflow_command

EXIT_OK, EXIT_GATE, EXIT_USAGE = ExitCode.OK, ExitCode.FAILED, ExitCode.USAGE


def _show(message: object = "", file=None) -> None:
    """Print a message as one line made safe for a terminal and a CI log (quantlab.textsafe.for_terminal):
    messages carry names and paths read from files, and undecodable file-name bytes."""
    print(for_terminal(message), file=file or sys.stdout, flush=True)


def _show_document(text: str) -> None:
    """Print a document (a Markdown report or table), each of its lines made safe as `_show` makes a message."""
    print("\n".join(for_terminal(line) for line in text.split("\n")), flush=True)


class Console:
    """Where messages and progress bars go: bars only on a terminal and without --quiet."""

    def __init__(self, quiet: bool):
        self.quiet = quiet

    def say(self, text: str = "") -> None:
        if not self.quiet:
            _show(text)

    def step(self, text: str) -> None:
        """A line as a long step without a bar starts, on stderr (stdout carries the report)."""
        if not self.quiet:
            _show(text, file=sys.stderr)

    def progress(self, label: str, total: int) -> Callable[[int], None] | None:
        if self.quiet or not sys.stderr.isatty():
            return None
        try:
            from tqdm import tqdm
        except ImportError:
            return None
        bar = tqdm(total=total, desc=label, leave=False, file=sys.stderr)
        return bar.update


def _hw(values: list[int] | None) -> tuple[int, int] | None:
    return tuple(values) if values else None


def _input_paths(models, args) -> list[Path]:
    """Every path a command reads, which no output may be or lie in (quantlab.job.input_paths)."""
    from quantlab.job import input_paths

    dataset = _dataset(args) if getattr(args, "data", None) else None
    return input_paths(models, dataset, (getattr(args, "images", None), getattr(args, "calib", None)))


def _dataset(args):
    """The --data dataset, read once per command (its skipped files warned once)."""
    from quantlab.datasets import load_dataset

    if getattr(args, "loaded_dataset", None) is None:
        args.loaded_dataset = load_dataset(args.data)
    return args.loaded_dataset


def _eval_data(args):
    """What to evaluate on, from --data or --images (exactly one of them): a quantlab.evaluate.EvalData."""
    from quantlab.job import eval_data

    return eval_data(_dataset(args) if args.data else None, args.images, args.recursive)


def cmd_demo_data(args, console: Console) -> int:
    from quantlab.demo.shapes import write_dataset

    splits = tuple(s.strip() for s in args.splits.split(","))
    out_dir = Path(os.path.abspath(args.out_dir))
    with staged_folder(out_dir, "demo-data") as stage:
        data_yaml = write_dataset(stage, seed=args.seed, splits=splits, task=args.task)
    console.say(f"wrote the {', '.join(splits)} split(s) of the demo dataset (seed {args.seed}, {args.task} labels)")
    _show(out_dir / data_yaml.name)
    return EXIT_OK


def cmd_quantize(args, console: Console) -> int:
    from quantlab.images import list_images
    from quantlab.quantize import METADATA_PREFIX, quantize_model
    from quantlab.recipes import Mode, resolve_recipe

    refuse_overwriting_inputs(_input_paths([args.model], args), files=[args.output])
    recipe = resolve_recipe("dynamic" if args.mode == "dynamic" and args.recipe == "auto" else args.recipe)
    recipe = recipe.replace(mode=args.mode or recipe.mode, num_calib=args.num_calib, seed=args.seed,
                            exclude_nodes=tuple(args.exclude), include_nodes=tuple(args.include))
    if recipe.mode is Mode.DYNAMIC and recipe.activation_type.value != "u8":
        recipe = recipe.replace(activation_type="u8")
    if recipe.mode is Mode.STATIC and not args.calib:
        raise InputError("static quantization needs --calib DIR (or use --mode dynamic)")
    calib = list_images(args.calib, recursive=args.recursive) if args.calib else ()
    result = quantize_model(args.model, args.output, recipe, calib, _hw(args.input_hw), force=args.force)
    settings = {k: v for k, v in recipe.settings().items() if k != "description"}
    console.say(f"recipe {recipe.name}: {recipe.description}")
    console.say("settings: " + ", ".join(f"{k}={v}" for k, v in settings.items()))
    console.say(f"kept in float ({len(result.float_nodes)} nodes): {', '.join(result.float_nodes) or 'none'}")
    if result.num_calib:
        console.say(f"calibrated on {result.num_calib} of {len(calib)} images")
    console.say(f"size: {result.source_size_bytes / 1e6:.2f} MB -> {result.size_bytes / 1e6:.2f} MB "
                f"({result.size_ratio:.2f}x), {result.seconds:.1f} s")
    if opset_change := result.metadata.get(f"{METADATA_PREFIX}opset_converted"):
        console.say(f"opset raised {opset_change} (per-channel quantization needs opset 13)")
    check = result.self_check
    console.say(f"self-check against FP32: {check.summary()}: {'passed' if check.passed else 'FAILED'}")
    console.say(f"wrote {result.output_path}")
    if not check.passed:
        _show(f"quantlab: error: {result.output_path}: written with --force although its self-check failed",
              file=sys.stderr)
        return EXIT_GATE
    return EXIT_OK


def cmd_eval(args, console: Console) -> int:
    from quantlab.datasets import check_class_names
    from quantlab.evaluate import evaluate_models
    from quantlab.onnxmodel import inspect_model, resolve_input_hw
    from quantlab.sessions import make_session

    info = inspect_model(args.model)
    if args.json:
        check_output_file(args.json, inputs=_input_paths([args.model, args.reference], args))
    if args.images and not args.reference:
        raise InputError("--images without labels needs --reference FP32.onnx to compare against")
    data = _eval_data(args)
    if data.dataset:
        check_class_names(data.dataset, info.description, Path(args.model))
    sessions = {args.model: make_session(args.model, args.threads, args.providers)}
    if args.reference:
        inspect_model(args.reference)
        sessions[args.reference] = make_session(args.reference, args.threads, args.providers)
    results = evaluate_models(sessions, data.samples(info.description), resolve_input_hw(info, _hw(args.input_hw)),
                              data.class_names(info.class_names), info.description, reference=args.reference,
                              progress=console.progress("evaluate", len(data.paths)),
                              source=args.data or args.images)
    result = results[args.model].as_dict()
    _show(f"task: {info.description.summary()}")
    for key in ("map50", "map50_95", "box_map50_95", "agreement"):
        if result[key] is not None:
            _show(f"{key}: {result[key]:.4f}")  # results print even with --quiet
    for output, parity in (result["parity"] or {}).items():
        parts = ", ".join(f"{part.replace('_', ' ')} cosine {value['cosine']:.4f}"
                          for part, value in parity.items() if isinstance(value, dict))
        _show(f"{output}: {parts}, score max |err| {parity['scores']['max_abs']:.4f}")
    if args.json:
        _write_json(args.json, result)
        console.say(f"wrote {args.json}")
    return EXIT_OK


def cmd_bench(args, console: Console) -> int:
    import numpy as np

    from quantlab.bench import check_runs, interleaved_latency
    from quantlab.onnxmodel import inspect_model, resolve_input_hw
    from quantlab.sessions import make_session

    infos = [inspect_model(m) for m in args.models]
    if args.json:
        check_output_file(args.json, inputs=_input_paths(args.models, args))
    if len({i.input_name for i in infos}) > 1:
        raise InputError("the models have different input names; bench compares models of one input")
    sessions = {str(info.path): make_session(info.path, args.threads, args.providers) for info in infos}
    hw = resolve_input_hw(infos[0], _hw(args.input_hw))
    feed = {infos[0].input_name: np.random.default_rng(0).random((1, 3, *hw), dtype=np.float32)}
    check_runs(sessions, feed)
    latencies = interleaved_latency(sessions, feed, runs=args.runs, warmup=args.warmup,
                                    progress=console.progress("benchmark", args.runs))
    first = next(iter(latencies.values()))
    _show(f"{'model':50s} {'median ms':>10s} {'p90 ms':>8s} {'p99 ms':>8s} {'FPS':>8s} {'speedup':>8s}")
    for name, lat in latencies.items():
        shown = for_terminal(name)  # escaped before padding, so the columns line up
        shown = shown if len(shown) <= 50 else "..." + shown[-47:]
        _show(f"{shown:50s} {lat.median_ms:10.2f} {lat.p90_ms:8.2f} {lat.p99_ms:8.2f} {lat.fps:8.1f} "
              f"{first.median_ms / lat.median_ms:7.2f}x")
    devices = _device_timing(args, infos, hw) if args.device else None
    if args.json:
        _write_json(args.json, {"threads": args.threads, "runs": args.runs, "input_hw": list(hw),
                                "providers": list(args.providers),
                                "models": {n: {**lat.as_dict(), "fps": lat.fps} for n, lat in latencies.items()},
                                **({"device": devices} if devices is not None else {})})
    return EXIT_OK


def _device_timing(args, infos, hw: tuple[int, int]) -> dict[str, dict]:
    """bench --device: each model timed through IO binding on its provider's device (quantlab.devicetiming),
    model-only and end-to-end, and images/s per batch where the batch axis is dynamic."""
    from quantlab.devicetiming import device_report

    reports = {}
    _show()
    _show(f"{'model':50s} {'device':>6s} {'model-only ms':>14s} {'end-to-end ms':>14s}  CUDA graph")
    for info in infos:
        report = device_report(info.path, args.providers, args.threads, args.runs, args.warmup, args.batches,
                               args.cuda_graph, hw)
        reports[str(info.path)] = report
        shown = for_terminal(str(info.path))
        shown = shown if len(shown) <= 50 else "..." + shown[-47:]
        graph = {True: "yes", False: "no", None: "n/a"}[report["cuda_graph"]]
        _show(f"{shown:50s} {report['device']:>6s} {report['model_only_ms']['median']:14.2f} "
              f"{report['end_to_end_ms']['median']:14.2f}  {graph}: {report['cuda_graph_reason']}")
        throughput = ", ".join(f"batch {t['batch']}: {t['images_per_s']:.0f} img/s" for t in report["throughput"])
        _show(f"    {throughput or report['throughput_reason']}")
    return reports


def _write_json(path: str | Path, payload: dict | list) -> None:
    atomic_write_bytes(Path(path), json_bytes(payload))


def run_contrast(args) -> list[str]:
    """The contrast recipes of `quantlab run` (quantlab.variant.parse_contrast, the suite's rule): --contrast,
    or --no-contrast, the older spelling of --contrast dynamic."""
    from quantlab.variant import DYNAMIC, parse_contrast

    return parse_contrast(DYNAMIC if args.no_contrast else args.contrast)


def cmd_run(args, console: Console) -> int:
    from quantlab.gates import BUDGET_NAMES, Budgets
    from quantlab.job import run_to_folder
    from quantlab.memory import require_measurable
    from quantlab.recipes import parse_recipe_list
    from quantlab.report import render_markdown
    from quantlab.sessions import SessionSettings, parse_runtimes
    from quantlab.variant import plan_variants

    recipes, contrast = parse_recipe_list(args.recipes), run_contrast(args)
    try:
        plan = plan_variants(recipes, contrast, parse_runtimes(args.runtimes), include_dynamic=False,
                             providers=args.providers)
    except ConfigError as exc:
        raise ConfigError(f"--runtimes: {exc}") from exc
    budgets = Budgets(**{name: getattr(args, name) for name in BUDGET_NAMES})
    if args.max_memory_ratio is not None:
        require_measurable("--max-memory-ratio")
    report, paths = run_to_folder(args.out, plan, budgets, args.model, _dataset(args) if args.data else None,
                                  args.images, args.calib, recursive=args.recursive,
                                  sessions=SessionSettings(args.threads, args.providers), runs=args.runs,
                                  num_calib=args.num_calib,
                                  input_hw=_hw(args.input_hw), progress=console.progress, say=console.say,
                                  step=console.step)
    _show_document(render_markdown(report))
    for path in paths.values():
        console.say(f"wrote {path}")
    if "chart" not in paths:
        console.say("no chart: pip install 'quantlab-yolo[chart]' (matplotlib) to draw report.png")
    return EXIT_GATE if any(v["failures"] for v in report["variants"]) else EXIT_OK


def cmd_ab(args, console: Console) -> int:
    from quantlab.ab import BASELINE, CANDIDATE, Side, is_revision, read_revision, render_ab, run_ab
    from quantlab.atomicio import temp_folder
    from quantlab.compare import Tolerances
    from quantlab.images import list_images
    from quantlab.sessions import SessionSettings

    revision = is_revision(args.baseline)
    out_dir = Path(os.path.abspath(args.out)) if args.out else None
    if out_dir is not None:
        models = [args.candidate] + ([] if revision else [args.baseline])
        refuse_overwriting_inputs(_input_paths(models, args), folders=[out_dir])
    tol = Tolerances(min_speedup_loss=args.min_speedup_loss, size_growth=args.max_size_growth,
                     map_loss=args.max_map_loss)
    with temp_folder("quantlab-ab-revision-") as folder:
        baseline_model = read_revision(args.baseline, folder) if revision else Path(args.baseline)
        data = _eval_data(args)
        calib = list_images(args.calib, recursive=args.recursive) if args.calib else data.paths
        result = run_ab(Side(BASELINE, args.baseline, baseline_model, args.baseline_recipe or args.recipe),
                        Side(CANDIDATE, args.candidate, Path(args.candidate), args.recipe), data, calib,
                        SessionSettings(args.threads, args.providers), args.runs, args.num_calib,
                        _hw(args.input_hw), tol, console.progress)
    text = render_ab(result)
    _show_document(text)
    if out_dir is not None:
        with staged_folder(out_dir, "ab") as stage:
            _write_json(stage / "ab.json", result.as_dict())
            atomic_write_bytes(stage / "ab.md", (text + "\n").encode())
        console.say(f"wrote {out_dir / 'ab.json'}, {out_dir / 'ab.md'}")
    return EXIT_GATE if result.regressions else EXIT_OK


def cmd_tune(args, console: Console) -> int:
    from quantlab.images import list_images
    from quantlab.recipes import resolve_recipe
    from quantlab.tune import TuneWarning, render_tune_markdown, tune

    out_dir = Path(os.path.abspath(args.out))
    output = Path(os.path.abspath(args.output)) if args.output else out_dir / f"{Path(args.model).stem}.tuned.onnx"
    inputs = _input_paths([args.model], args)
    refuse_overwriting_inputs(inputs, files=[output], folders=[out_dir])
    refuse_same_outputs(output, out_dir / "tune.json", out_dir / "tune.md")
    in_out_dir = output.parent == out_dir
    if not in_out_dir:
        check_output_file(output, inputs=inputs)
    data = _eval_data(args)
    calib = list_images(args.calib, recursive=args.recursive) if args.calib else data.paths
    recipe = resolve_recipe(args.recipe).replace(num_calib=args.num_calib)
    with staged_folder(out_dir, "tune") as stage, warnings.catch_warnings():  # shown as they come, capped
        warnings.simplefilter("always", TuneWarning)
        result = tune(Path(args.model), stage / output.name if in_out_dir else output, recipe, calib, data,
                      max_loss=args.max_map_drop, time_budget_s=args.time_budget,
                      max_steps=args.max_steps, threads=args.threads, progress=console.progress,
                      on_step=lambda s: console.say(
                          f"step {s.index}: {len(s.float_nodes)} float nodes, loss {s.accuracy_loss:.4f}, "
                          f"{s.speedup:.2f}x FP32"))
        summary = {**result.as_dict(), "output_path": str(output)}
        _write_json(stage / "tune.json", summary)
        atomic_write_bytes(stage / "tune.md", render_tune_markdown(result).encode())
    _show_document(render_tune_markdown(result))
    console.say(f"wrote {output}, {out_dir / 'tune.json'}, {out_dir / 'tune.md'}")
    return EXIT_OK if result.met else EXIT_GATE


def cmd_compare(args, console: Console) -> int:
    from quantlab.benchjson import load_run, saved_runs
    from quantlab.compare import Tolerances, compare_runs

    # a storage folder's runs up to the baseline are its history, from which the speedup's spread is learnt
    if args.candidate is None:
        runs = saved_runs(args.baseline)
        if len(runs) < 2:
            raise InputError(f"{args.baseline}: need two saved runs to compare, found {len(runs)}")
        history, candidate = runs[:-1], runs[-1]
    else:
        history = saved_runs(args.baseline) if Path(args.baseline).is_dir() else [load_run(args.baseline)]
        candidate = saved_runs(args.candidate)[-1] if Path(args.candidate).is_dir() else load_run(args.candidate)
    # a folder holding several targets' runs (a matrix's): the baseline is the newest run on the candidate's
    # target; with none there, the newest of all, which compare then calls not like for like
    history = [r for r in history if r.target == candidate.target] or history
    tol = Tolerances(min_speedup_loss=args.min_speedup_loss, assumed_speedup_noise=args.assumed_speedup_noise,
                     min_latency_growth=args.min_latency_growth, size_growth=args.max_size_growth,
                     map_loss=args.max_map_loss, history_runs=args.history_runs)
    from_folder = Path(args.baseline).is_dir()
    return _verdict(compare_runs(history[-1], candidate, tol, history if from_folder else None),
                    args.fail_on_inconclusive, args.json)


def _verdict(comparison, fail_on_inconclusive: bool, as_json: bool) -> int:
    """Print a comparison and its verdict (a warning for GitHub Actions when inconclusive); the exit code."""
    from quantlab.compare import comparison_document, exit_code, render_comparison, unjudged_summary

    if as_json:
        _show_json(comparison_document(comparison, fail_on_inconclusive))
    else:
        _show_document(render_comparison(comparison))
    if not comparison.judged:  # exit 0 would read as "no regression"
        raise InputError(f"{comparison.candidate.path}: none of its gated metrics can be compared with "
                         f"{comparison.baseline.path} (no variant gated in both runs); compare two runs of the "
                         "quantlab suite")
    if comparison.inconclusive and os.environ.get("GITHUB_ACTIONS") == "true":
        # a workflow command's message: %, CR and LF encoded; for_terminal keeps a file's text from forming one
        print(workflow_command("warning", "quantlab compare inconclusive", unjudged_summary(comparison)),
              file=sys.stderr, flush=True)
    return exit_code(comparison, fail_on_inconclusive)


def _show_json(document: dict) -> None:
    """Print a JSON document: ASCII with every other character escaped, so no terminal or log acts on it."""
    sys.stdout.write(json_bytes(document).decode("ascii"))
    sys.stdout.flush()


def cmd_history(args, console: Console) -> int:
    from quantlab.benchjson import saved_runs
    from quantlab.history import history_document, render_history

    outputs = [p for p in (args.chart, args.html) if p]
    if outputs:
        from quantlab.trend import pyplot, write_trend_html, write_trend_png

        pyplot()  # a missing chart extra is said before any output
        refuse_same_outputs(*outputs)
        for target in outputs:
            check_output_file(target, inputs=[args.folder])
    runs = saved_runs(args.folder)
    if args.json:
        _show_json(history_document(runs, args.folder))
    else:
        _show_document(render_history(runs))
    if outputs:
        if args.chart:
            write_trend_png(runs, Path(args.chart))
        if args.html:
            write_trend_html(runs, Path(args.html), args.folder)
        if not console.quiet:  # stderr: stdout may be the JSON document
            for path in outputs:
                _show(f"wrote {path}", file=sys.stderr)
    return EXIT_OK


def cmd_export(args, console: Console) -> int:
    from quantlab.benchjson import newest
    from quantlab.history import github_benchmark

    if not (args.bigger_is_better or args.smaller_is_better):
        raise InputError("give --bigger-is-better FILE and/or --smaller-is-better FILE to write")
    refuse_same_outputs(args.bigger_is_better, args.smaller_is_better)
    for target in (p for p in (args.bigger_is_better, args.smaller_is_better) if p):
        check_output_file(target, inputs=[args.run])
    bigger, smaller = github_benchmark(newest(args.run))
    for path, entries in ((args.bigger_is_better, bigger), (args.smaller_is_better, smaller)):
        if path:
            _write_json(path, entries)
            console.say(f"wrote {path} ({len(entries)} values)")
    return EXIT_OK


class _Checked(argparse.Action):
    """A setting of several values, refused at parse time by its check (--input-hw: too large to allocate)."""

    def __init__(self, *args, check: Callable[[list], str | None], **kwargs):
        super().__init__(*args, **kwargs)
        self.check = check

    def __call__(self, parser, namespace, values, option_string=None):
        if problem := self.check(values):
            parser.error(f"argument {option_string}: {' '.join(map(str, values))} is {problem}")
        setattr(namespace, self.dest, values)


def _add_shared(p: argparse.ArgumentParser, command: str) -> None:
    """The options `command` shares with the suite or other commands, as quantlab.settings declares them."""
    for s in settings_for(command):
        text = s.help_for(command)
        if s.kind is bool:
            p.add_argument(s.cli_flag, action="store_true", help=text)
            continue
        default = s.default_for(command)
        options = dict(type=s.parse, default=default, metavar=s.metavar, nargs=s.nargs,
                       help=text + (f" (default {default})" if default is not None else ""))
        if s.choices:
            options.update(choices=s.choices())
        if s.check:
            options.update(action=_Checked, check=s.check)
        p.add_argument(s.cli_flag, **options)


class _Parser(argparse.ArgumentParser):
    """argparse that reports a usage error in the one line every other error uses (exit 2)."""

    def error(self, message: str):
        command = self.prog.removeprefix("quantlab").strip()
        self.exit(EXIT_USAGE, for_terminal(f"quantlab: error: {command + ': ' if command else ''}{message} "
                                           f"(see {self.prog} --help)") + "\n")


def build_parser() -> argparse.ArgumentParser:
    from quantlab.demo import DemoTask

    parser = _Parser(prog="quantlab", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"quantlab {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=_Parser)

    p = sub.add_parser("run", help="FP32 vs INT8 variants: build, evaluate, time, report (the main job)")
    p.add_argument("--out", default="quantlab-out",
                   help="output folder (default ./quantlab-out): new, empty, or one quantlab wrote (replaced whole "
                        "when the run completes)")
    p.add_argument("--no-contrast", action="store_true",
                   help="the older spelling of --contrast dynamic: no contrast recipe but dynamic quantization "
                        "(--contrast none drops dynamic too)")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("ab", help="A/B on this runner: a baseline and a candidate model quantized, evaluated and "
                                  "timed interleaved in one process; exit 1 on a regression")
    p.add_argument("--baseline", required=True,
                   help="baseline FP32 ONNX model: a path, or a git revision of one, REV:path (git cat-file blob "
                        "REV:path; its external data is read from the same revision)")
    p.add_argument("--candidate", required=True, help="candidate FP32 ONNX model")
    p.add_argument("--baseline-recipe", choices=recipe_choices(), help="the baseline's recipe (default: --recipe)")
    p.add_argument("--min-speedup-loss", type=fraction, default=0.05,
                   help="relative loss of the candidate's speed against the baseline's that is a regression when "
                        "its whole 95 percent interval lies beyond it too (default 0.05)")
    p.add_argument("--max-size-growth", type=fraction, default=0.01,
                   help="relative growth of the INT8 file (default 0.01)")
    p.add_argument("--max-map-loss", type=fraction, default=0.005, help="absolute INT8 mAP50-95 (default 0.005)")
    p.add_argument("--out", help="also write ab.json and ab.md into this folder (new, empty, or one quantlab ab "
                                 "wrote: replaced whole)")
    p.set_defaults(func=cmd_ab)

    p = sub.add_parser("quantize", help="quantize one model to INT8")
    p.add_argument("model", help="FP32 ONNX model")
    p.add_argument("-o", "--output", required=True,
                   help="output .onnx path (missing folders are created; written atomically, after its self-check)")
    p.add_argument("--mode", choices=["static", "dynamic"], help="default: the recipe's (auto: static)")
    p.add_argument("--seed", type=count(0), default=0, help="seed of the calibration sample")
    p.add_argument("--force", action="store_true",
                   help="write the model even if it fails its self-check against FP32 (exit 1 all the same)")
    p.add_argument("--exclude", nargs="+", default=[], metavar="NODE", help="node names to keep in float")
    p.add_argument("--include", nargs="+", default=[], metavar="NODE",
                   help="node names to quantize even if the head pass keeps them in float")
    p.set_defaults(func=cmd_quantize)

    p = sub.add_parser("eval", help="mAP against labels and/or parity and agreement against a reference")
    p.add_argument("model")
    p.add_argument("--reference", help="FP32 model to compare against")
    p.add_argument("--json", help="write the metrics here")
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("tune", help="return the most sensitive layers to float until an accuracy budget holds")
    p.add_argument("model")
    p.add_argument("--max-map-drop", type=budget("max_map_drop"), default=0.005,
                   help="budget: mAP50-95 drop with --data, 1 - agreement with --images (default 0.005)")
    p.add_argument("--time-budget", type=fraction, default=300.0, help="seconds before the search stops (default 300)")
    p.add_argument("--max-steps", type=count(1), default=12, help="layer groups returned to float at most (default 12)")
    p.add_argument("-o", "--output", help="tuned model path (default OUT/<model>.tuned.onnx)")
    p.add_argument("--out", default="quantlab-out", help="folder for tune.json and tune.md (default ./quantlab-out)")
    p.set_defaults(func=cmd_tune)

    p = sub.add_parser("bench", help="latency of one or more models, interleaved")
    p.add_argument("models", nargs="+")
    p.add_argument("--warmup", type=count(0), default=10)
    p.add_argument("--json", help="write the latencies here")
    p.add_argument("--device", action="store_true",
                   help="also time each model through IO binding on its provider's device: model-only and "
                        "end-to-end latency, and images/s per --batches where the batch axis is dynamic")
    p.add_argument("--batches", type=batch_sizes, default=(1, 8, 32), metavar="N[,N...]",
                   help="batch sizes for --device throughput (default 1,8,32)")
    p.add_argument("--cuda-graph", action="store_true",
                   help="with --device on CUDA: replay a CUDA graph (falls back, saying why, where refused)")
    p.set_defaults(func=cmd_bench)

    p = sub.add_parser("compare", help="compare two pytest-benchmark JSON runs (or a storage folder)")
    p.add_argument("baseline", help="baseline JSON, or a storage folder (its two newest runs)")
    p.add_argument("candidate", nargs="?", help="candidate JSON or folder (its newest run)")
    p.add_argument("--min-speedup-loss", type=fraction, default=0.05,
                   help="gap by which the candidate's speedup interval must lie below the baseline's, "
                        "relative (default 0.05)")
    p.add_argument("--assumed-speedup-noise", type=fraction, default=0.10,
                   help="relative half-width given to a speedup without a measured interval (default 0.10)")
    p.add_argument("--min-latency-growth", type=fraction, default=0.20,
                   help="gap between the latency quartiles, relative; gated on the same setup only (default 0.20)")
    p.add_argument("--max-size-growth", type=fraction, default=0.01, help="relative (default 0.01)")
    p.add_argument("--max-map-loss", type=fraction, default=0.005, help="absolute mAP50-95 (default 0.005)")
    p.add_argument("--history-runs", type=count(3), default=10,
                   help="a storage folder's last runs of the baseline's setup and model whose speedup spread "
                        "widens the speedup tolerance; 3 at least are needed (default 10)")
    p.add_argument("--fail-on-inconclusive", action="store_true",
                   help="exit 1 when a gated metric could not be judged (another CPU model, threads or "
                        "providers; another FP32 model); by default exit 0 with a warning")
    p.add_argument("--json", action="store_true",
                   help="print a JSON document (quantlab/schemas/compare.schema.json) instead of the Markdown table")
    p.set_defaults(func=cmd_compare)

    p = sub.add_parser("history", help="trend of the runs saved by pytest-benchmark, one section per target "
                                       "(CPU model, threads, providers)")
    p.add_argument("folder", help="pytest-benchmark storage folder (default .benchmarks)", nargs="?",
                   default=".benchmarks")
    p.add_argument("--json", action="store_true",
                   help="print a JSON document (quantlab/schemas/history.schema.json) instead of the Markdown")
    p.add_argument("--chart", metavar="OUT.png",
                   help="also draw the trend per variant and target as a PNG (needs the chart extra: matplotlib)")
    p.add_argument("--html", metavar="OUT.html",
                   help="also write the trend as one self-contained HTML page (the chart embedded, the tables; "
                        "needs the chart extra)")
    p.set_defaults(func=cmd_history)

    p = sub.add_parser("export", help="a run's speedup, size ratio and mAP as github-action-benchmark JSON")
    p.add_argument("run", help="pytest-benchmark JSON, or a storage folder (its newest run)")
    p.add_argument("--bigger-is-better", metavar="FILE",
                   help="write speedup and mAP here (the action's tool: customBiggerIsBetter)")
    p.add_argument("--smaller-is-better", metavar="FILE",
                   help="write the size ratio here (the action's tool: customSmallerIsBetter)")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("demo-data", help="write the demo shapes dataset (Ultralytics layout)")
    p.add_argument("out_dir", help="a new or empty folder (or one demo-data wrote before: it is replaced whole)")
    p.add_argument("--seed", type=count(0), default=0)
    p.add_argument("--splits", default="train,val,calib", help="comma-separated (default train,val,calib)")
    p.add_argument("--task", default=DemoTask.DETECT.value, choices=[t.value for t in DemoTask],
                   help="label format: detect boxes (default), segment polygons, pose keypoints (the outline's "
                        "top, right, bottom, left points) or obb rotated boxes; the images are the same for each")
    p.set_defaults(func=cmd_demo_data)

    for command, action in sub.choices.items():
        _add_shared(action, command)
    return parser


MAX_WARNINGS_SHOWN = 10  # of one kind; a data.yaml of another task's labels skips every line


@contextmanager
def _warnings_to_console(console: Console):
    """Skipped images and labels are reported as one line each, not as Python warnings: the first
    MAX_WARNINGS_SHOWN of each kind, then one line with how many more there were."""
    counts: dict[str, int] = {}

    def show(message, category, filename, lineno, file=None, line=None):
        counts[category.__name__] = counts.get(category.__name__, 0) + 1
        if counts[category.__name__] <= MAX_WARNINGS_SHOWN:
            _show(f"quantlab: warning: {message}", file=sys.stderr)

    original = warnings.showwarning
    warnings.showwarning = show
    try:
        yield
    finally:
        warnings.showwarning = original
        for kind, seen in counts.items():
            if seen > MAX_WARNINGS_SHOWN:
                _show(f"quantlab: warning: {seen - MAX_WARNINGS_SHOWN} more {kind} warnings not shown "
                      f"({seen} in all)", file=sys.stderr)


_signals_received: list[str] = []


# SIGHUP: the terminal closed or ssh dropped; like SIGTERM, it must clean up, not kill outright
_CLEANUP_SIGNALS = [getattr(signal, name) for name in ("SIGTERM", "SIGHUP") if hasattr(signal, name)]


def _raise_on_signal(signum, frame):
    name = signal.Signals(signum).name
    _signals_received.append(name)  # an extension being imported may turn the exception into its own
    raise Interrupted(name)


def _catch_cleanup_signals() -> dict:
    """Raise Interrupted on SIGTERM and SIGHUP; a signal ignored on purpose (`nohup`) stays ignored."""
    return {signum: signal.signal(signum, _raise_on_signal) for signum in _CLEANUP_SIGNALS
            if signal.getsignal(signum) is not signal.SIG_IGN}


def _interrupted(name: str) -> int:
    with suppress(OSError):  # after SIGHUP the terminal may be gone
        _show(f"quantlab: interrupted by {name}; every previous output was left as it was", file=sys.stderr)
    return 128 + getattr(signal, name)


def _user_error(exc: BaseException) -> str | None:
    """The one-line message for an expected failure, or None for a bug in quantlab."""
    if isinstance(exc, QuantlabError):
        return str(exc)
    if isinstance(exc, OSError):
        where = exc.filename if exc.filename is not None else "quantlab"
        return f"{where}: {exc.strerror or first_line(exc)}"
    if isinstance(exc, UnicodeError):
        return f"text that is not valid UTF-8: {first_line(exc)}"
    if type(exc).__module__.startswith("onnxruntime"):
        return f"onnxruntime: {first_line(exc)}"
    return None


# What each command was doing when memory ran out, and what asks for less of it
_MEMORY_CONTEXT = {
    "quantize": ("quantizing", "use fewer calibration images (--num-calib) or a smaller --input-hw"),
    "run": ("running", "use fewer calibration images (--num-calib), fewer recipes or a smaller --input-hw"),
    "ab": ("running an A/B", "use fewer calibration images (--num-calib) or a smaller --input-hw"),
    "tune": ("tuning", "use fewer calibration images (--num-calib)"),
    "eval": ("evaluating", "use a smaller --input-hw"),
    "bench": ("benchmarking", "use a smaller --input-hw, fewer --threads or, with --device, smaller --batches"),
}
# How native code says it ran out: onnxruntime's C++ std::bad_alloc and its arena, OpenCV's allocator, protobuf's
# arena when parsing or serializing a model (upb fails to serialize a parsed message only for want of memory),
# and the dynamic loader mapping an extension module
_NATIVE_MODULES = ("onnxruntime", "cv2", "google.protobuf")
_OUT_OF_MEMORY_TEXTS = ("bad_alloc", "bad allocation", "Failed to allocate memory", "Insufficient memory",
                        "Cannot allocate memory", "failed to map segment", "Arena alloc failed",
                        "Failed to serialize proto")
MAX_CAUSE_CHARS = 200


def _ran_out_of_memory(exc: BaseException) -> bool:
    """Whether `exc` is an allocation failure: Python's, an OS ENOMEM, or one a native library reported as text."""
    if isinstance(exc, MemoryError) or (isinstance(exc, OSError) and exc.errno == errno.ENOMEM):
        return True
    native = type(exc).__module__.startswith(_NATIVE_MODULES) or isinstance(exc, ImportError)
    return native and any(text in str(exc) for text in _OUT_OF_MEMORY_TEXTS)


def _out_of_memory_error(exc: BaseException, args) -> str | None:
    """The one-line message when `exc`, or an exception it was raised from, is running out of memory."""
    chain = [exc]
    while (inner := chain[-1].__cause__ or chain[-1].__context__) is not None and len(chain) < 10:
        chain.append(inner)
    cause = next((e for e in chain if _ran_out_of_memory(e)), None)
    if cause is None:
        return None
    doing, hint = _MEMORY_CONTEXT.get(args.command, (f"running quantlab {args.command}", "close other programs"))
    target = getattr(args, "model", None) or " ".join(getattr(args, "models", None) or []) or (
        "the demo model" if args.command == "run" else "")
    text = first_line(cause)
    text = text if len(text) <= MAX_CAUSE_CHARS else "..." + text[-MAX_CAUSE_CHARS:]  # the allocator's words end it
    cause_text = type(cause).__name__ + (f": {text}" if text != type(cause).__name__ else "")
    return f"out of memory while {doing}{' ' + target if target else ''} ({cause_text}): free memory, or {hint}"


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    console = Console(args.quiet)
    if not args.debug:
        from quantlab.ortcompat import quiet_logs

        quiet_logs()
    _signals_received.clear()
    previous_handlers = _catch_cleanup_signals()
    try:
        with _warnings_to_console(console):
            return args.func(args, console)
    except KeyboardInterrupt as exc:
        return _interrupted(exc.signal_name if isinstance(exc, Interrupted) else "SIGINT")
    except Exception as exc:
        if _signals_received:
            return _interrupted(_signals_received[-1])
        message = _out_of_memory_error(exc, args) or _user_error(exc)
        if args.debug or message is None:
            traceback.print_exc()
        if message is None:
            _show(f"quantlab: internal error ({type(exc).__name__}): a bug in quantlab {__version__}; "
                  "please report it with the traceback above", file=sys.stderr)
            return ExitCode.INTERNAL
        _show(f"quantlab: error: {message}", file=sys.stderr)
        return EXIT_GATE if isinstance(exc, SelfCheckError) else EXIT_USAGE
    finally:
        for signum, handler in previous_handlers.items():
            signal.signal(signum, handler)


if __name__ == "__main__":
    sys.exit(main())
