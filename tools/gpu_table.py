"""Issue 27's table: FP32, FP16 and INT8 builds of one model on one execution provider, model-only and end-to-end
latency (IO binding) at batch 1, images/s at each batch where the batch axis is dynamic, the ratio to FP32, and
mAP50-95 against labels; written as Markdown and JSON with the date, the versions and the command.

On a machine with a GPU and onnxruntime-gpu (`pip install onnxruntime-gpu` in place of onnxruntime), from the
project root:
    python tools/gpu_table.py --providers CUDAExecutionProvider,CPUExecutionProvider --out gpu-table
It runs the same way on the CPU provider (the default), which is how tests/test_project.py checks it.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import platform
import shlex
import subprocess
import sys
from pathlib import Path

import onnxruntime as ort

from quantlab import DEMO_MODEL, __version__, demo_data, evaluate_model, quantize_model
from quantlab.cpu import detect_cpu
from quantlab.devicetiming import device_report
from quantlab.recipes import auto_recipe
from quantlab.settings import batch_sizes, count, providers


def device_name(chosen: tuple[str, ...]) -> str:
    """The GPU's name from nvidia-smi where the first provider is a GPU's and it answers; else the CPU's model."""
    if chosen[0] != "CPUExecutionProvider":
        try:
            found = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True,
                                   text=True, timeout=30, check=True).stdout.strip().splitlines()
            if found:
                return found[0]
        except (OSError, subprocess.SubprocessError):
            pass
    return detect_cpu().model


def build(model: Path, out: Path, calib: Path) -> dict[str, Path]:
    """FP32 as given, FP16 (recipe fp16) and INT8 (auto for this host's CPU: the QDQ model a GPU is handed)."""
    fp16 = quantize_model(model, out / "fp16.onnx", "fp16").output_path
    int8 = quantize_model(model, out / "int8.onnx", auto_recipe(), calib).output_path
    return {"fp32": model, "fp16": fp16, "int8": int8}


def rows(builds: dict[str, Path], data: Path, args) -> list[dict]:
    """One row per build and batch: latencies in ms, ratio of FP32's model-only median to the build's, mAP50-95."""
    measured = {name: (device_report(path, args.providers, runs=args.runs, warmup=args.warmup, batches=args.batches,
                                     cuda_graph=args.cuda_graph),
                       evaluate_model(path, data=data, providers=args.providers).map.map50_95)
                for name, path in builds.items()}
    fp32 = measured["fp32"][0]
    table = []
    for name, (report, map50_95) in measured.items():
        table.append({"precision": name, "batch": 1, "model_only_ms": report["model_only_ms"]["median"],
                      "end_to_end_ms": report["end_to_end_ms"]["median"],
                      "ratio": fp32["model_only_ms"]["median"] / report["model_only_ms"]["median"],
                      "images_per_s": 1000 / report["model_only_ms"]["median"], "map50_95": map50_95,
                      "cuda_graph": report["cuda_graph"], "note": report["cuda_graph_reason"]})
        fp32_batches = {t["batch"]: t for t in fp32["throughput"]}
        for t in report["throughput"]:
            if t["batch"] != 1:
                table.append({"precision": name, "batch": t["batch"], "model_only_ms": t["latency_ms"]["median"],
                              "end_to_end_ms": None, "ratio": t["images_per_s"] / fp32_batches[t["batch"]]["images_per_s"],
                              "images_per_s": t["images_per_s"], "map50_95": map50_95, "cuda_graph": report["cuda_graph"],
                              "note": ""})
    return table


def markdown(table: list[dict], facts: dict) -> str:
    head = [f"Measured {facts['date']} on {facts['device']} ({facts['providers'][0]}), quantlab {facts['quantlab']}, "
            f"onnxruntime {facts['onnxruntime']}, Python {facts['python']}; model {facts['model']}; "
            f"medians of {facts['runs']} runs.", "", f"`{facts['command']}`", "",
            "| precision | batch | model-only ms | end-to-end ms | x FP32 | images/s | mAP50-95 |",
            "|---|---|---|---|---|---|---|"]
    body = [f"| {r['precision']} | {r['batch']} | {r['model_only_ms']:.2f} | "
            f"{'-' if r['end_to_end_ms'] is None else format(r['end_to_end_ms'], '.2f')} | {r['ratio']:.2f} | "
            f"{r['images_per_s']:.0f} | {r['map50_95']:.4f} |" for r in table]
    return "\n".join(head + body) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, default=Path(DEMO_MODEL))
    parser.add_argument("--data", type=Path, help="an Ultralytics data.yaml (mAP); default: the demo data, made in OUT")
    parser.add_argument("--calib", type=Path, help="calibration images for INT8; default: the demo data's")
    parser.add_argument("--providers", type=providers, default=("CPUExecutionProvider",))
    parser.add_argument("--batches", type=batch_sizes, default=(1, 8, 32))
    parser.add_argument("--runs", type=count(1), default=200)
    parser.add_argument("--warmup", type=count(0), default=10)
    parser.add_argument("--cuda-graph", action="store_true", help="replay CUDA graphs where onnxruntime allows")
    parser.add_argument("--out", type=Path, default=Path("gpu-table"))
    args = parser.parse_args(argv)
    if (args.data is None) != (args.calib is None):
        parser.error("give both --data and --calib, or neither (the demo data)")
    args.out.mkdir(parents=True, exist_ok=True)
    data = args.data or demo_data(args.out / "data")
    calib = args.calib or data.parent / "images" / "calib"
    table = rows(build(args.model, args.out, calib), data, args)
    facts = {"date": dt.date.today().isoformat(), "device": device_name(args.providers),
             "providers": list(args.providers), "quantlab": __version__, "onnxruntime": ort.__version__,
             "python": platform.python_version(), "model": str(args.model), "runs": args.runs,
             "command": shlex.join(["python", "tools/gpu_table.py", *(argv if argv is not None else sys.argv[1:])])}
    (args.out / "table.md").write_text(markdown(table, facts))
    (args.out / "table.json").write_text(json.dumps({"facts": facts, "rows": table}, indent=2) + "\n")
    print(markdown(table, facts))
    return 0


if __name__ == "__main__":
    sys.exit(main())
