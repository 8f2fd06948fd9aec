"""Where should Q/DQ go on this CPU? Candidate INT8 builds of the demo, timed and scored in one process.

  python tools/ort_placement.py [--runs 200] [--threads 1] [--out /tmp/placement] [--no-openvino] [--nncf]

Every candidate is quantized by quantlab (quantize_model with a Recipe), then timed interleaved
with FP32 (quantlab.bench's seeded rounds, 1 thread by default) and evaluated on the demo's labelled
val split. Ratios are onnxruntime FP32's median latency over the candidate's; the mAP50-95 drop
is against FP32 on onnxruntime. With openvino installed, the same files also run on OpenVINO.
--nncf adds OpenVINO's own INT8 of the demo, the peer to beat: NNCF (pip install nncf, not a
quantlab dependency) with the settings of Ultralytics' OpenVINO INT8 export, calibrated on the
same images. Prints a Markdown table; run it on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import onnx
import onnxruntime as ort

from quantlab.bench import interleaved_latency
from quantlab.calibration import ImageCalibrationReader
from quantlab.datasets import load_dataset
from quantlab.demo import DEMO_MODEL
from quantlab.demo.shapes import write_dataset
from quantlab.evaluate import evaluate_models, labelled_samples
from quantlab.images import list_images
from quantlab.onnxmodel import ModelInfo, inspect_model, resolve_input_hw
from quantlab.pipeline import probe_input
from quantlab.quantize import quantize_model
from quantlab.recipes import PRESETS, auto_recipe
from quantlab.sessions import make_session, open_session, session_options

EARLY = tuple(f"/model.{i}/" for i in range(4))  # the lead's observation: Q/DQ overhead dominates there


def _nodes(model: onnx.ModelProto, prefixes=(), op_types=()) -> tuple[str, ...]:
    return tuple(n.name for n in model.graph.node
                 if (not prefixes or n.name.startswith(prefixes)) and (not op_types or n.op_type in op_types))


def candidates() -> dict:
    """name -> Recipe: the placements worth measuring on onnxruntime and OpenVINO."""
    model = onnx.load(str(DEMO_MODEL))
    auto = auto_recipe()
    return {
        "auto": auto,
        "auto-early-float": auto.replace(name="early", exclude_nodes=_nodes(model, EARLY)),
        "silu-float": auto.replace(name="silu-float", exclude_nodes=_nodes(model, op_types=("Sigmoid", "Mul"))),
        "conv-only": auto.replace(name="conv-only", op_types=("Conv",)),
        "auto-u8u8": auto.replace(name="u8u8", weight_type="u8"),
        "auto-per-tensor": auto.replace(name="per-tensor", per_channel=False),
        "s8s8": PRESETS["s8s8"],
        # for OpenVINO, which fuses SiLU into the convolution: INT8 where its kernels take INT8
        "conv-add-concat-pool": auto.replace(name="cacp", op_types=("Conv", "Add", "Concat", "MaxPool", "Resize")),
        "ov-conv": PRESETS["ov-conv"],  # Conv inputs only: its outputs float too
        "conv-only-per-tensor": auto.replace(name="conv-pt", op_types=("Conv",), per_channel=False),
        "conv-only-early-float": auto.replace(name="conv-early", op_types=("Conv",), exclude_nodes=_nodes(model, EARLY)),
        "conv-only-s8": auto.replace(name="conv-s8", op_types=("Conv",), activation_type="s8"),
    }


def nncf_model(out: Path, calib: list[Path], info: ModelInfo, threads: int):
    """The demo quantized by NNCF 3.x as Ultralytics exports OpenVINO INT8: MIXED preset, the head's
    decode and every Multiply, Subtract and Sigmoid ignored, calibrated on the images `auto` samples;
    saved as OpenVINO IR and opened on OpenVINO."""
    import nncf
    import openvino as ov

    path = out / "nncf.xml"
    if not path.exists():
        auto = auto_recipe()
        reader = ImageCalibrationReader(calib, info.input_name, resolve_input_hw(info), auto.num_calib, auto.seed)
        feeds = list(iter(reader.get_next, None))
        head = "/model.22"
        ignored = nncf.IgnoredScope(patterns=[f".*{head}/.*/Add", f".*{head}/.*/Sub*", f".*{head}/.*/Mul*",
                                              f".*{head}/.*/Div*", f".*{head}/dfl.*"],
                                    types=["Multiply", "Subtract", "Sigmoid"], validate=False)
        quantized = nncf.quantize(ov.Core().read_model(str(DEMO_MODEL)), nncf.Dataset(feeds),
                                  preset=nncf.QuantizationPreset.MIXED, ignored_scope=ignored,
                                  subset_size=len(feeds))
        ov.save_model(quantized, str(path), compress_to_fp16=False)
    return open_session(path, "openvino", threads)


def op_profile(path: Path, feed: dict, runs: int = 50) -> dict[str, float]:
    """Share of onnxruntime's kernel time per op type for one model (1 thread), from its profiler."""
    import json

    options = session_options(1)
    options.enable_profiling = True
    options.profile_file_prefix = str(path.with_suffix(""))
    session = ort.InferenceSession(path.read_bytes(), options, providers=["CPUExecutionProvider"])
    for _ in range(runs):
        session.run(None, feed)
    events = json.loads(Path(session.end_profiling()).read_text())
    totals: dict[str, float] = {}
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
            op = e["args"]["op_name"]
            totals[op] = totals.get(op, 0.0) + e["dur"]
    whole = sum(totals.values())
    return {op: t / whole for op, t in sorted(totals.items(), key=lambda kv: -kv[1])}


def extended_session(path: Path, threads: int) -> ort.InferenceSession:
    options = session_options(threads)
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    return ort.InferenceSession(path.read_bytes(), options, providers=["CPUExecutionProvider"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--only", default="", help="comma-separated candidate names (default: all)")
    parser.add_argument("--no-openvino", action="store_true")
    parser.add_argument("--nncf", action="store_true", help="add NNCF's INT8 on OpenVINO (needs nncf)")
    parser.add_argument("--profile", action="store_true", help="also print auto's onnxruntime op-type profile")
    args = parser.parse_args(argv)
    out = args.out or Path(tempfile.mkdtemp(prefix="quantlab-placement-"))
    out.mkdir(parents=True, exist_ok=True)
    data = out / "data" / "data.yaml"
    if not data.exists():
        write_dataset(out / "data", splits=("val", "calib"))
    dataset = load_dataset(data)
    calib = list_images(out / "data" / "images" / "calib")
    chosen = {k: v for k, v in candidates().items() if not args.only or k in args.only.split(",")}
    paths = {"fp32": DEMO_MODEL}
    for name, recipe in chosen.items():
        path = out / f"{name}.onnx"
        if not path.exists():
            quantize_model(DEMO_MODEL, path, recipe, calib, force=True)
        paths[name] = path
    sessions = {f"{n}@ort": make_session(p, args.threads) for n, p in paths.items()}
    if "auto" in paths:
        sessions["auto@ort-extended"] = extended_session(paths["auto"], args.threads)
    if not args.no_openvino:
        sessions.update({f"{n}@openvino": open_session(p, "openvino", args.threads) for n, p in paths.items()})
    info = inspect_model(DEMO_MODEL)
    if args.nncf:
        sessions["nncf@openvino"] = nncf_model(out, calib, info, args.threads)
    evaluations = evaluate_models(sessions, labelled_samples(dataset, info.description), resolve_input_hw(info),
                                  dataset.names, info.description, reference="fp32@ort")
    feed = probe_input(info, dataset.images[0], resolve_input_hw(info))
    latencies = interleaved_latency(sessions, feed, runs=args.runs)
    base_ms, base_map = latencies["fp32@ort"].median_ms, evaluations["fp32@ort"].map.map50_95
    print(f"onnxruntime {ort.__version__}, {args.threads} thread(s), {args.runs} interleaved runs, "
          f"FP32 {base_ms:.2f} ms, mAP50-95 {base_map:.4f}")
    print("| candidate | runtime | median ms | x FP32 | mAP50-95 | drop | agreement |")
    print("|---|---|---|---|---|---|---|")
    for name in sorted(sessions, key=lambda n: latencies[n].median_ms):
        candidate, runtime = name.split("@")
        e = evaluations[name]
        print(f"| {candidate} | {runtime} | {latencies[name].median_ms:.2f} | {base_ms / latencies[name].median_ms:.2f}x "
              f"| {e.map.map50_95:.4f} | {base_map - e.map.map50_95:+.4f} | {e.agreement:.3f} |")
    if args.profile and "auto" in paths:
        shares = op_profile(paths["auto"], feed)
        print("auto on onnxruntime, share of kernel time: " + ", ".join(f"{op} {s:.1%}" for op, s in shares.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
