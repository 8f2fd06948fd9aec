"""The pytest plugin as a user meets it: an empty repository, the entry point, one pytest.ini.

Only test_a_fresh_repository_gets_the_gates_and_readable_failures quantizes (forcing every gate
to fail); the others check configuration, which quantizes nothing.
"""

import importlib.util
import json
import re
import shlex
import shutil

import onnx
import pytest
from onnx import TensorProto, helper

from quantlab.demo import DEMO_MODEL
from quantlab.demo.shapes import write_dataset
from quantlab.gates import HEAD_QUANTIZED
from quantlab.onnxmodel import model_sha256

pytest_plugins = ["pytester"]
pytestmark = pytest.mark.usefixtures("outside_xdist")  # each test starts a pytest of its own

# quantlab's gates use only these lines: one sentence each
FAILURE_SENTENCE = r"{variant}: {metric} [-0-9.e]+ is {relation} {limit} \({option}\)"


@pytest.fixture(scope="module")
def small_data(tmp_path_factory):
    """A 24-image labelled val split and 16 calibration images of the demo dataset."""
    return write_dataset(tmp_path_factory.mktemp("small"), splits=("val", "calib"), sizes={"val": 24, "calib": 16})


def _user_repo(pytester, small_data, ini_lines=()):
    """An empty repository holding a model, data and a pytest.ini with `ini_lines`."""
    shutil.copyfile(DEMO_MODEL, pytester.path / "model.onnx")
    shutil.copytree(small_data.parent, pytester.path / "data")
    (pytester.path / "data" / "data.yaml").write_text(small_data.read_text().replace(str(small_data.parent), "."))
    pytester.makefile(".ini", pytest="\n".join(["[pytest]", *ini_lines]))


def _not_a_detector(path):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 8, 8])
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"], name="relu")], "tiny", [x], [y])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))


@pytest.mark.slow
def test_a_fresh_repository_gets_the_gates_and_readable_failures(pytester, small_data):
    """The README's minimal setup, every gate forced to fail: one sentence each, extra_info complete.

    ort-default (onnxruntime's defaults, head quantized) is blind and slow: its accuracy fails any budget.
    """
    _user_repo(pytester, small_data, ["quantlab_model = model.onnx", "quantlab_data = data/data.yaml"])
    result = pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", "-ra", "--quantlab-calib", "data/images/calib", "--quantlab-num-calib", "8",
        "--quantlab-recipes", "ort-default", "--quantlab-max-size-ratio", "0.1", "--quantlab-min-speedup", "100",
        "--benchmark-json", "bench.json", timeout=900)
    out = result.stdout.str()
    sentences = {
        "size_ratio": FAILURE_SENTENCE.format(variant="ort-default", metric="size_ratio", relation="above the maximum",
                                              limit=r"0\.1", option="--quantlab-max-size-ratio"),
        "map_drop": FAILURE_SENTENCE.format(variant="ort-default", metric="map_drop", relation="above the maximum",
                                            limit=r"0\.01", option="--quantlab-max-map-drop"),
        "speedup": FAILURE_SENTENCE.format(variant="ort-default", metric="speedup", relation="below the minimum",
                                           limit="100", option="--quantlab-min-speedup"),
    }
    failures = out.split("= FAILURES =")[1].split("short test summary")[0]
    sections = dict(re.findall(r"^_{3,} (\S+) _{3,}\n(.*?)(?=^_{3,} |^-{3,}|^={3,}|\Z)", failures, re.MULTILINE | re.DOTALL))
    for test, metric in [("test_size_ratio_within_budget", "size_ratio"), ("test_accuracy_within_budget", "map_drop"),
                         ("test_static_int8_is_faster_than_fp32", "speedup"), ("test_latency", "speedup")]:
        cause = f"\nort-default: likely cause: {re.escape(HEAD_QUANTIZED)}" if metric == "map_drop" else ""
        assert re.fullmatch(sentences[metric] + cause, sections[f"{test}[ort-default]"].strip()), (test, failures)
    assert all(len(body.splitlines()) < 15 for body in sections.values()), failures
    assert result.ret == pytest.ExitCode.TESTS_FAILED and "passed" in result.parseoutcomes()

    # the failed tests' ids, re-run as printed, select those tests and nothing else
    failed = {line.split()[1] for line in result.stdout.lines if line.startswith("FAILED quantlab/suite/")}
    rerun = next(line for line in result.stdout.lines if line.startswith("quantlab: re-run the failed tests: "))
    command = shlex.split(rerun.split(": ", 2)[2])
    assert command[:2] == ["pytest", "--quantlab-calib"] and set(command) >= failed
    collected = pytester.runpytest(*command[1:], "-p", "no:cacheprovider", "--collect-only", "-q")
    assert {line for line in collected.stdout.lines if "::" in line} == failed

    benchmarks = {b["extra_info"]["variant"]: b["extra_info"] for b in
                  json.loads((pytester.path / "bench.json").read_text())["benchmarks"]}
    assert set(benchmarks) == {"fp32", "ort-default", "dynamic"}
    keys = {"variant", "task", "size_bytes", "size_ratio", "map50", "map50_95", "map_drop", "agreement", "box_cosine",
            "score_cosine", "task_cosine", "top1_agreement", "recipe", "onnxruntime", "threads", "speedup", "speedup_low",
            "speedup_high", "gated", "setup", "model_sha256"}
    assert all(keys <= set(info) for info in benchmarks.values())
    assert {info["model_sha256"] for info in benchmarks.values()} == {model_sha256(pytester.path / "model.onnx")}
    fp32, gated, contrast = benchmarks["fp32"], benchmarks["ort-default"], benchmarks["dynamic"]
    assert (fp32["speedup"], fp32["speedup_low"], fp32["speedup_high"], fp32["gated"]) == (1.0, 1.0, 1.0, False)
    assert gated["gated"] and not contrast["gated"]
    assert gated["speedup_low"] <= gated["speedup"] <= gated["speedup_high"]
    assert set(gated["setup"]) == {"host", "cpu", "threads", "providers", "onnxruntime", "python"}
    assert gated["setup"]["threads"] == 1 and gated["setup"]["providers"] == ["CPUExecutionProvider"]


def test_the_plugin_is_inert_until_a_model_is_named(pytester):
    """A user's own --model option, `variant` parametrisation and benchmarks are left alone."""
    pytester.makeconftest("""
        def pytest_addoption(parser):
            parser.addoption("--model", default="theirs.onnx")
    """)
    pytester.makepyfile(test_user="""
        import pytest

        @pytest.mark.parametrize("variant", ["a", "b"])
        def test_their_variants(variant, request):
            assert request.config.getoption("model") == "theirs.onnx"

        def test_their_benchmark(benchmark):
            assert not benchmark.disabled  # pytest-benchmark times it under plain pytest, as without quantlab
            benchmark.pedantic(sum, args=(range(10),), rounds=3)

        def test_wants_the_suite(quantlab_variant):
            pass
    """)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-rs")
    result.assert_outcomes(passed=3, skipped=1)
    result.stdout.fnmatch_lines(["*quantlab's suite is off: name a model with --quantlab-model*"])
    assert "collected 4 items" in result.stdout.str() and "test_their_benchmark" in result.stdout.str()  # timed


@pytest.mark.slow
def test_openvino_variants_are_gated_and_benchmarked_like_the_others(pytester, small_data):
    """--quantlab-runtimes onnxruntime,openvino: the recipes also run on OpenVINO, under NAME@openvino."""
    # find_spec, not an import: pytester drops modules imported during a test, and OpenVINO's native
    # module cannot be imported twice in one process (later tests would skip)
    if importlib.util.find_spec("openvino") is None:
        pytest.skip("the openvino extra is not installed")
    _user_repo(pytester, small_data, ["quantlab_model = model.onnx", "quantlab_data = data/data.yaml"])
    result = pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", "--quantlab-calib", "data/images/calib", "--quantlab-num-calib", "8",
        "--quantlab-recipes", "ov-conv", "--quantlab-runtimes", "onnxruntime,openvino",
        "--benchmark-json", "bench.json", timeout=900)
    assert result.ret == pytest.ExitCode.OK, result.stdout.str()
    benchmarks = {b["extra_info"]["variant"]: b["extra_info"] for b in
                  json.loads((pytester.path / "bench.json").read_text())["benchmarks"]}
    # ov-conv is made for OpenVINO: it runs there only
    assert {n: b["runtime"] for n, b in benchmarks.items()} == {
        "fp32": "onnxruntime", "dynamic": "onnxruntime", "fp32@openvino": "openvino", "ov-conv@openvino": "openvino"}
    assert benchmarks["ov-conv@openvino"]["gated"] and not benchmarks["fp32@openvino"]["gated"]
    assert benchmarks["fp32@openvino"]["recipe"] is None and "openvino" in benchmarks["fp32@openvino"]["setup"]
    assert benchmarks["ov-conv@openvino"]["recipe"]["op_types"] == ["Conv"]


@pytest.mark.parametrize(
    ("args", "ini_lines", "message"),
    [
        # the model file is named even when no data or calibration folder is given
        (["--quantlab-model", "absent.onnx"], [], r"absent\.onnx: model file not found"),
        (["--quantlab-model", "relu.onnx", "--quantlab-calib", "data/images/calib"], [], r"relu\.onnx: the first "
         r"output is not a YOLO detection output .*outputs seen: y \(1, 3, 8, 8\)"),
        (["--quantlab-model", "model.onnx", "--quantlab-calib", "empty"], [], r"empty: no images"),
        (["--quantlab-model", "model.onnx"], [], r"model\.onnx: give --quantlab-data"),
        ([], ["quantlab_model = model.onnx", "quantlab_data = nowhere/data.yaml"], r"data\.yaml not found"),
        (["--quantlab-demo", "--quantlab-recipes", "auto,fastest"], [], r"recipe 'fastest' is unknown"),
        (["--quantlab-demo", "--quantlab-max-map-drop", "nan"], [], r"--quantlab-max-map-drop = 'nan' must be finite"),
        (["--quantlab-demo"], ["quantlab_min_agreement = 1.5"], r"quantlab_min_agreement: budget min-agreement = 1\.5 "
         r"is not a number in \[0, 1\]"),
        (["--quantlab-demo", "--quantlab-threads", "two"], [], r"--quantlab-threads = 'two' is not an integer"),
        (["--quantlab-demo", "--quantlab-providers", "NoSuchExecutionProvider"], [],
         r"provider\(s\) NoSuchExecutionProvider not available"),
        (["--quantlab-data", "data/data.yaml"], [], r"--quantlab-data given, but the suite is off"),
        (["--quantlab-demo", "--quantlab-exclude", "/model.0/conv/Conv,no_such_node"], [],
         r"--quantlab-exclude: node\(s\) no_such_node not in"),
        (["--quantlab-demo", "--quantlab-runtimes", "onnxruntime,tflite"], [],
         r"--quantlab-runtimes.*runtime\(s\) tflite unknown: choose from onnxruntime, openvino, tensorrt"),
        (["--quantlab-demo", "--quantlab-contrast", "dynamic,fastest"], [], r"--quantlab-contrast: recipe 'fastest' "
         r"is unknown"),
        (["--quantlab-demo", "--quantlab-contrast", "ov-conv"], [], r"--quantlab-runtimes: recipe 'ov-conv' is made "
         r"for openvino"),
        (["--quantlab-demo", "quantlab/suite/gates.py::test_no_such_gate"], [],
         r"not found: quantlab/suite/gates\.py::test_no_such_gate"),
    ],
    ids=["missing-model", "not-a-detector", "empty-calib", "no-data", "missing-data-yaml", "bad-recipe",
         "nan-budget", "out-of-range-ini-budget", "bad-threads", "unknown-provider", "data-without-model",
         "unknown-exclude-node", "unknown-runtime", "unknown-contrast", "contrast-for-another-runtime",
         "unknown-node-id"],
)
def test_bad_settings_stop_pytest_before_collection_in_one_line(pytester, small_data, args, ini_lines, message):
    _user_repo(pytester, small_data, ini_lines)
    _not_a_detector(pytester.path / "relu.onnx")
    (pytester.path / "empty").mkdir()
    pytester.makepyfile(test_collected="open('collected', 'w').close()")
    result = pytester.runpytest("-p", "no:cacheprovider", *args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    errors = [line for line in result.stderr.lines if line.strip()]
    assert len(errors) == 1 and re.match(r"ERROR: quantlab: .*" + message, errors[0]), result.stderr.lines
    assert not (pytester.path / "collected").exists()


def test_tensorrt_variants_are_skipped_with_the_reason_where_tensorrt_cannot_run(pytester, small_data):
    """One configuration for a matrix of runners: on a runner without TensorRT its variants say why they do not
    run, and nothing is built for them (the other variants are deselected here: they would build)."""
    _user_repo(pytester, small_data, ["quantlab_model = model.onnx", "quantlab_calib = data/images/calib",
                                      "quantlab_runtimes = onnxruntime,tensorrt"])
    result = pytester.runpytest("-p", "no:cacheprovider", "-rs", "-k", "tensorrt", "--benchmark-disable")
    outcomes = result.parseoutcomes()
    assert outcomes.get("skipped", 0) >= 4 and not outcomes.get("passed") and not outcomes.get("failed"), outcomes
    skips = [line for line in result.stdout.lines if line.startswith("SKIPPED")]
    assert skips and all("runtime tensorrt: onnxruntime" in line and "has no TensorrtExecutionProvider" in line
                         for line in skips), skips
    assert any("auto@tensorrt" in line for line in skips) and any("fp32@tensorrt" in line for line in skips)


def test_a_command_line_budget_wins_over_the_ini_and_ini_paths_follow_the_ini(pytester, small_data, monkeypatch):
    _user_repo(pytester, small_data, ["quantlab_model = model.onnx", "quantlab_calib = data/images/calib",
                                      "quantlab_max_size_ratio = 0.5", "quantlab_min_speedup = 1.1"])
    pytester.makepyfile(test_budget="""
        def test_budgets(quantlab_suite):
            assert quantlab_suite.budgets.max_size_ratio == 0.2  # the command line's
            assert quantlab_suite.budgets.min_speedup == 1.1  # the ini's
            assert len(quantlab_suite.calib_images) == 16
    """)
    monkeypatch.chdir(pytester.mkdir("elsewhere"))  # ini paths resolve against the ini's folder, not here
    result = pytester.runpytest("-p", "no:cacheprovider", "--quantlab-max-size-ratio", "0.2",
                                str(pytester.path / "test_budget.py"))
    result.assert_outcomes(passed=1)


@pytest.mark.parametrize(
    ("args", "collected", "count"),
    [
        # testpaths and the whole suite: 6 gates (memory skipped without a budget) and 3 benchmarks; the gates
        # take the gated variant (auto) only: dynamic is shown for contrast (benchmarked, never gated)
        ([], {"test_mine.py::test_mine", "quantlab/suite/gates.py::test_size_ratio_within_budget[auto]",
              "quantlab/suite/benchmarks.py::test_latency[fp32]",
              "quantlab/suite/benchmarks.py::test_latency[dynamic]"}, 10),
        (["-m", "quantlab", "-k", "size_ratio"],
         {"quantlab/suite/gates.py::test_size_ratio_within_budget[auto]"}, 1),
        # --quantlab-tune adds a 'tuned' variant to every gate that takes INT8 variants, and a benchmark
        (["--quantlab-tune", "-k", "tuned"], {"quantlab/suite/gates.py::test_static_int8_is_faster_than_fp32[tuned]",
                                              "quantlab/suite/benchmarks.py::test_latency[tuned]"}, 6),
        (["-m", "not quantlab"], {"test_mine.py::test_mine"}, 1),
        (["tests/test_mine.py"], {"test_mine.py::test_mine"}, 1),  # a path narrows the run, as in any pytest run
        # the suite's node ids run as printed, though its modules live in the installed package
        (["quantlab/suite/gates.py::test_size_ratio_within_budget[auto]"],
         {"quantlab/suite/gates.py::test_size_ratio_within_budget[auto]"}, 1),
        (["quantlab/suite/gates.py::test_fp32_agrees_with_itself", "quantlab/suite/benchmarks.py", "tests/test_mine.py"],
         {"quantlab/suite/gates.py::test_fp32_agrees_with_itself", "quantlab/suite/benchmarks.py::test_latency[auto]",
          "test_mine.py::test_mine"}, 5),
        # contrasts are benchmarked, never gated; none switches them off, dynamic included
        (["--quantlab-contrast", "none"], {"quantlab/suite/benchmarks.py::test_latency[auto]"}, 9),
        (["-o", "quantlab_contrast=ort-default", "-k", "ort-default or dynamic"],
         {"quantlab/suite/benchmarks.py::test_latency[ort-default]"}, 1),
    ],
    ids=["default", "marker-and-keyword", "tune", "deselected", "explicit-path", "node-id", "node-ids-and-a-path",
         "no-contrast", "ini-contrast"],
)
def test_the_suite_joins_default_runs_and_follows_selection(pytester, small_data, args, collected, count):
    _user_repo(pytester, small_data, ["testpaths = tests", "quantlab_model = model.onnx",
                                      "quantlab_calib = data/images/calib"])
    pytester.mkdir("tests").joinpath("test_mine.py").write_text("def test_mine():\n    pass\n")
    result = pytester.runpytest("-p", "no:cacheprovider", "--collect-only", "-q", *args)
    ids = {line.replace("tests/", "", 1) for line in result.stdout.lines if "::" in line}
    assert collected <= ids and len(ids) == count, result.stdout.lines


@pytest.mark.parametrize(("args", "root"), [
    ([], ".pytest_cache/d/quantlab"),  # pytest's cache: kept across runs, emptied by --cache-clear
    (["--quantlab-cache-dir", "built"], "built"),
    (["-p", "no:cacheprovider"], "quantlab-artifacts"),  # no cache: this run's base temp folder, as before
], ids=["pytest-cache", "cache-dir", "no-cacheprovider"])
def test_the_artifact_store_is_kept_where_the_settings_say(pytester, small_data, args, root):
    _user_repo(pytester, small_data, ["quantlab_model = model.onnx", "quantlab_calib = data/images/calib"])
    pytester.makepyfile(test_uses_the_store="def test_store(quantlab_artifacts):\n    pass\n")
    result = pytester.runpytest(*args, "test_uses_the_store.py", "--basetemp", str(pytester.path / "basetemp"))
    result.assert_outcomes(passed=1)
    where = pytester.path / ("basetemp" if root == "quantlab-artifacts" else "") / root
    result.stdout.fnmatch_lines([f"quantlab: 0 artifact(s) built, 0 reused from {where} (--cache-clear rebuilds them)"])


def test_cache_clear_empties_a_cache_dir_of_the_stores_entries_only(pytester, small_data):
    from quantlab.suite.store import ArtifactStore

    _user_repo(pytester, small_data, ["quantlab_model = model.onnx", "quantlab_calib = data/images/calib",
                                      "quantlab_cache_dir = built"])
    store = ArtifactStore(pytester.path / "built")
    store.build_once("auto-0123456789abcdef", "model.onnx", lambda target: target.write_text("built"))
    (pytester.path / "built" / "notes.txt").write_text("the user's")
    pytester.runpytest("--collect-only", "-q")
    assert [p.name for p in store.entries()] == ["auto-0123456789abcdef"]
    pytester.runpytest("--collect-only", "-q", "--cache-clear")
    assert sorted(p.name for p in (pytester.path / "built").iterdir()) == ["notes.txt"]


@pytest.mark.slow
def test_a_second_run_builds_nothing_and_a_tampered_entry_is_rebuilt(pytester, small_data):
    """The store is kept in pytest's cache: an unchanged run reuses the variant and its metrics; a cached
    model changed since it was built is built again, never gated."""
    _user_repo(pytester, small_data, ["quantlab_model = model.onnx", "quantlab_calib = data/images/calib"])
    pytester.makepyfile(test_session="""
        def test_session(quantlab_artifacts):
            quantlab_artifacts.session("auto")  # the model itself, not only its metrics
    """)
    args = ("-k", "size_ratio or fp32_agrees or test_session", "--quantlab-num-calib", "8", "--quantlab-contrast", "none")
    store = pytester.path / ".pytest_cache" / "d" / "quantlab"

    def run(built, reused):
        result = pytester.runpytest_subprocess(*args, timeout=900)
        result.assert_outcomes(passed=3)
        result.stdout.fnmatch_lines([f"quantlab: {built} artifact(s) built, {reused} reused from {store} *"])
        return result.stdout.lines

    # each long step is announced as it starts, before any result; nothing is announced that is not done
    lines = run(built=2, reused=0)  # the auto model and the metrics of the run
    steps = [line for line in lines if line.startswith("quantlab: ") and line.endswith("...")]
    assert steps == ["quantlab: building auto from model.onnx...", "quantlab: evaluating fp32, auto on 16 images...",
                     ], lines
    assert not [line for line in run(built=0, reused=2) if line.endswith("...")]  # the same two, unchanged
    model = next(store.glob("auto-*/model.auto.onnx"))
    built = model.read_bytes()
    model.write_bytes(built[:-1] + bytes([built[-1] ^ 1]))
    run(built=1, reused=1)  # the model again; its metrics are keyed by its inputs, not its bytes
    assert model.read_bytes() == built


@pytest.mark.slow
def test_an_unchanged_run_reuses_the_speed_gate_timing_and_a_recorded_one_times_anew(pytester, small_data):
    """Was: every run timed FP32 against auto for ~9 s with nothing changed. The timing is kept in the store
    beside the variant; a run pytest-benchmark records (history needs each run's own spread) times again, and
    a failure judged on a kept timing says where it came from."""
    _user_repo(pytester, small_data, ["quantlab_model = model.onnx", "quantlab_calib = data/images/calib"])
    args = ("-k", "faster", "--quantlab-num-calib", "8", "--quantlab-contrast", "none")
    timing = "quantlab: timing auto against fp32, interleaved..."

    def run(*extra, passed=1, failed=0):
        result = pytester.runpytest_subprocess(*args, *extra, timeout=900)
        result.assert_outcomes(passed=passed, failed=failed)
        return result.stdout.lines

    assert timing in run()
    assert timing not in run()  # unchanged: the kept timing
    lines = run("--quantlab-min-speedup", "50", passed=0, failed=1)  # a budget is not part of the key
    assert timing not in lines
    assert any("timed by an earlier run on this machine" in line and "--cache-clear" in line for line in lines)
    assert timing in run("--benchmark-enable")  # pytest-benchmark times this run: so does the gate
    lines = run("--quantlab-min-speedup", "50", "--benchmark-enable", passed=0, failed=1)
    assert timing in lines and not any("timed by an earlier run" in line for line in lines)
