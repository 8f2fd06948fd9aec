"""Measure `quantlab compare` itself: how often it cries wolf, and whether it sees a slower INT8.

  python tools/noise_check.py --runs 6 [--hog]     # false regressions between runs of one commit
  python tools/noise_check.py --slower s8s8        # a genuinely slower INT8 must be flagged
  python tools/noise_check.py --slower-exclude N1,N2,...   # auto with those nodes in float: slower, same name

Noise mode: N back-to-back `pytest --benchmark-only --benchmark-autosave --quantlab-demo` runs of
the checked-out commit into a fresh storage folder; with --hog a busy loop (`python -c 'while
True: pass'`) runs during every second run, so each consecutive pair has one quiet and one loaded
run. Then `quantlab compare` on each consecutive pair: every REGRESSION is a false one (same
code), counted by metric. The speedup rows are the ones that must stay quiet; the absolute
median_ms rows are gated on one machine (same `setup`), and with --hog they measure the hog.

Slower mode: pairs of a baseline run (`--quantlab-recipes auto`) and a candidate run of another
recipe (`--quantlab-recipes SLOWER`) whose benchmark is relabelled `auto` in a copy of its JSON:
the numbers are real measurements of a slower INT8 model, asked under the name the gate knows.
Each pair must be flagged. On x86 with VNNI, `s8s8` (S8 activations, not fused into QLinearConv)
is far slower than `auto`. For a candidate only about 25% slower, --slower-exclude keeps the given
nodes in float in `auto` itself (`--quantlab-exclude`): the same variant name, honestly slower
(on the demo, the Conv/SiLU groups of /model.4/ to /model.8/ in float: about 24% slower).

Run it on an otherwise idle machine; it takes about a minute per run on 2 cores. It prints a
summary and exits 0 when noise mode found no false speedup regression / slower mode flagged
every pair, 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from collections import Counter
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=6, help="benchmark runs (noise) or pairs (slower); default 6")
    parser.add_argument("--hog", action="store_true", help="a busy loop during every second run")
    parser.add_argument("--slower", metavar="RECIPE", help="slower mode: the candidate's INT8 is this recipe")
    parser.add_argument("--slower-exclude", metavar="NODES",
                        help="slower mode: the candidate is auto with these nodes kept in float (comma-separated)")
    parser.add_argument("--storage", type=Path, help="folder for the runs (default: a new temporary one)")
    parser.add_argument("--python", default=sys.executable, help="the Python with quantlab installed")
    parser.add_argument("pytest_args", nargs="*", help="more pytest arguments, after --")
    args = parser.parse_args(argv)
    storage = args.storage or Path(tempfile.mkdtemp(prefix="quantlab-noise-"))
    storage.mkdir(parents=True, exist_ok=True)
    if any(storage.rglob("*.json")):
        parser.error(f"{storage} already holds benchmark JSON: give a fresh folder")
    print(f"runs go to {storage}", flush=True)
    if args.slower or args.slower_exclude:
        return slower_mode(args, storage)
    return noise_mode(args, storage)


def noise_mode(args, storage: Path) -> int:
    runs = []
    for index in range(args.runs):
        hog = args.hog and index % 2 == 1
        runs.append(benchmark(args, storage, recipes=None, hog=hog, label=f"run {index + 1}/{args.runs}"))
    counts: Counter[str] = Counter()
    flagged = 0
    for (base, base_hog), (cand, cand_hog) in zip(runs, runs[1:]):
        code, regressions = compare(args, base, cand)
        flagged += code == 1
        counts.update(metric for _, metric in regressions)
        print(f"{base.name} ({'hog' if base_hog else 'quiet'}) -> {cand.name} ({'hog' if cand_hog else 'quiet'}): "
              f"exit {code}, {', '.join(f'{v} {m}' for v, m in regressions) or 'no regression'}")
    print_speedups([path for path, _ in runs])
    pairs = len(runs) - 1
    print(f"\n{pairs} pairs of one commit, {flagged} flagged; false regressions by metric: "
          f"{dict(counts) or 'none'}")
    return 1 if counts["speedup"] else 0


def slower_mode(args, storage: Path) -> int:
    detected = 0
    what = args.slower or f"auto with {len(args.slower_exclude.split(','))} nodes in float"
    for index in range(args.runs):
        base, _ = benchmark(args, storage, recipes="auto", hog=False, label=f"pair {index + 1}: baseline auto")
        if args.slower:
            slow, _ = benchmark(args, storage, recipes=args.slower, hog=False,
                                label=f"pair {index + 1}: candidate {args.slower}")
            cand = relabel(slow, args.slower, "auto")
        else:
            cand, _ = benchmark(args, storage, recipes="auto", hog=False, label=f"pair {index + 1}: candidate {what}",
                                extra=["--quantlab-exclude", args.slower_exclude])
        code, regressions = compare(args, base, cand)
        detected += ("auto", "speedup") in regressions
        print(f"{base.name} -> {cand.name}: exit {code}, measured slowdown {slowdown(base, cand):.2f}x, "
              f"{', '.join(f'{v} {m}' for v, m in regressions) or 'no regression'}")
    print(f"\n{detected} of {args.runs} pairs flag the {what} INT8 as an auto speedup regression")
    return 0 if detected == args.runs else 1


def benchmark(args, storage: Path, recipes: str | None, hog: bool, label: str,
              extra: tuple[str, ...] | list[str] = ()) -> tuple[Path, bool]:
    """One suite run saved into `storage`; the path of the JSON it added."""
    before = set(storage.rglob("*.json"))
    command = [args.python, "-m", "pytest", "--benchmark-only", "--benchmark-autosave",
               f"--benchmark-storage=file://{storage}", "--quantlab-demo", "--quantlab-threads", "1",
               "-q", "-p", "no:cacheprovider", *(["--quantlab-recipes", recipes] if recipes else []),
               *extra, *args.pytest_args]
    print(f"{label}{' (with a CPU hog)' if hog else ''}: {' '.join(command[2:])[:200]}", flush=True)
    with cpu_hog(hog):
        # a failed speed gate still saves the run: that is a result here, not an error
        result = subprocess.run(command, cwd=ROOT, env={**os.environ, "OMP_NUM_THREADS": "1"},
                                capture_output=True, text=True)
    added = sorted(set(storage.rglob("*.json")) - before)
    if len(added) != 1:
        sys.exit(f"{label}: pytest exited {result.returncode} and saved {len(added)} runs\n{result.stdout[-3000:]}"
                 f"\n{result.stderr[-3000:]}")
    if result.returncode:
        print(f"  pytest exited {result.returncode} (a gate failed); the run was saved", flush=True)
    return added[0], hog


@contextmanager
def cpu_hog(on: bool):
    if not on:
        yield
        return
    hog = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        yield
    finally:
        hog.kill()
        hog.wait()


def compare(args, base: Path, cand: Path) -> tuple[int, list[tuple[str, str]]]:
    """`quantlab compare`'s exit code and its (variant, metric) regressions."""
    result = subprocess.run([args.python, "-m", "quantlab", "compare", str(base), str(cand)],
                            cwd=ROOT, capture_output=True, text=True)
    if result.returncode not in (0, 1):
        sys.exit(f"quantlab compare {base} {cand} exited {result.returncode}: {result.stderr.strip()}")
    regressions = []
    for line in result.stdout.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 7 and cells[-1].startswith("REGRESSION"):
            regressions.append((cells[0], cells[1]))
    return result.returncode, regressions


def relabel(path: Path, variant: str, as_name: str) -> Path:
    """A copy of a run in which `variant`'s benchmark is called `as_name` (and any `as_name` is dropped)."""
    run = json.loads(path.read_text(encoding="utf-8"))
    kept = []
    for bench in run["benchmarks"]:
        info = bench.get("extra_info", {})
        if info.get("variant") == as_name:
            continue
        if info.get("variant") == variant:
            info["variant"] = as_name
            bench["name"] = bench["name"].replace(f"[{variant}]", f"[{as_name}]")
        kept.append(bench)
    run["benchmarks"] = kept
    out = path.with_name(f"{path.stem}-{variant}-as-{as_name}.json.relabelled")
    out.write_text(json.dumps(run), encoding="utf-8")
    return out


def _speedup(path: Path, variant: str = "auto") -> tuple[float, float | None, float | None]:
    run = json.loads(path.read_text(encoding="utf-8"))
    info = next(b["extra_info"] for b in run["benchmarks"] if b.get("extra_info", {}).get("variant") == variant)
    return info["speedup"], info.get("speedup_low"), info.get("speedup_high")


def slowdown(base: Path, cand: Path) -> float:
    return _speedup(base)[0] / _speedup(cand)[0]


def print_speedups(paths: list[Path]) -> None:
    print("\nauto speedup [95% interval] per run:")
    for path in paths:
        speedup, low, high = _speedup(path)
        interval = f" [{low:.3f}, {high:.3f}]" if low is not None else " (no interval: older plugin)"
        print(f"  {path.name}: {speedup:.3f}{interval}")


if __name__ == "__main__":
    sys.exit(main())
