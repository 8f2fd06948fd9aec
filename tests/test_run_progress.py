"""`quantlab run` says which quantization it is in before its first progress bar (quantizing is the long silent
start), on stderr, and says nothing with --quiet. The run is stopped where its first bar would start."""

from __future__ import annotations

import sys

import pytest

from quantlab.cli import Console, main
from quantlab.demo.shapes import write_dataset
from quantlab.errors import ExitCode, Interrupted


@pytest.fixture(scope="module")
def few_images(tmp_path_factory):
    data = write_dataset(tmp_path_factory.mktemp("progress"), splits=("calib",), sizes={"calib": 4})
    return data.parent / "images" / "calib"


@pytest.mark.parametrize(("quiet", "expected"), [
    (False, ["building auto (1/2)...", "building dynamic (2/2)...", "[first bar: evaluate]"]),
    # --quiet: no step lines (and no bars: the stand-in marks where one would start)
    pytest.param(True, ["[first bar: evaluate]"], marks=pytest.mark.slow),
], ids=["shown", "quiet"])
def test_run_says_each_quantization_as_it_starts_before_the_first_bar(tmp_path, capsys, monkeypatch, demo_model,
                                                                     few_images, quiet, expected):
    def first_bar(self, label, total):
        print(f"[first bar: {label}]", file=sys.stderr)
        raise Interrupted("SIGINT")  # enough: what comes after the bars is not this test's

    monkeypatch.setattr(Console, "progress", first_bar)
    argv = ["run", "--model", str(demo_model), "--images", str(few_images), "--recipes", "auto",
            "--contrast", "dynamic", "--num-calib", "4", "--runs", "5", "--out", str(tmp_path / "out")]
    assert main(argv + (["--quiet"] if quiet else [])) == ExitCode.INTERRUPTED
    err = capsys.readouterr().err.splitlines()
    assert [line for line in err if line.startswith(("building", "[first bar"))] == expected
