"""The run report: JSON (schema in quantlab/schemas), Markdown with verdicts, and an optional chart."""

from __future__ import annotations

import datetime as dt
import io
import platform
from pathlib import Path

import onnxruntime as ort

from quantlab import __version__
from quantlab.atomicio import atomic_write_bytes, sha256_file
from quantlab.cpu import detect_cpu
from quantlab.devices import on_gpu
from quantlab.gates import Budgets, known_cause
from quantlab.jsonio import json_bytes
from quantlab.ortcompat import ORT_VERSION
from quantlab.measures import BUDGETED, WHEN_WORDS, measure
from quantlab.onnxmodel import model_sha256, model_size_bytes
from quantlab.pipeline import JobResult, Variant
from quantlab.plotting import pyplot_or_none
from quantlab.recipes import Mode, QType
from quantlab.sessions import ONNXRUNTIME, TENSORRT, runtime_version
from quantlab.textsafe import for_markdown as md

SCHEMA_PATH = Path(__file__).resolve().parent / "schemas" / "report.schema.json"
MB = 1e6


def machine_facts(threads: int, providers: tuple[str, ...], runtimes: tuple[str, ...] = (ONNXRUNTIME,)) -> dict:
    cpu = detect_cpu()
    return {"cpu": cpu.model, "arch": cpu.arch, "flags": cpu.notable_flags(), "vnni": cpu.has_vnni,
            "cores": cpu.cores, "onnxruntime": ORT_VERSION, "provider": providers[0], "providers": list(providers),
            "device": ort.get_device(), "threads": threads,
            "runtimes": {r: runtime_version(r) for r in runtimes},
            "python": platform.python_version()}


def _variant_entry(variant: Variant, job: JobResult, budgets: Budgets, out_dir: Path) -> dict:
    """The variant's measures (quantlab.measures) with the report's own facts: where its file is, its
    latency, how it was built, and its verdict against the budgets."""
    reference = job.reference.name
    latency, q = job.latencies[variant.name], variant.quantized
    evaluation = job.evaluations[variant.name]
    record = measure(variant.name, variant.runtime, variant.plan.gated, job.description.task,
                     q.recipe.settings() if q else None, model_size_bytes(variant.path), job.model_size,
                     evaluation, job.evaluations[reference], job.memories.get(variant.name),
                     job.memories.get(reference), job.latencies[reference].median_ms / latency.median_ms)
    memory = job.memories.get(variant.name)
    entry = {
        "name": variant.name,
        **{k: v for k, v in record.as_dict().items() if k not in ("variant", "task")},
        "role": variant.plan.role.value,
        "path": _relative(variant.path, out_dir),
        "latency_ms": {"median": latency.median_ms, "p90": latency.p90_ms, "p99": latency.p99_ms},
        "fps": latency.fps,
        "gmac_per_s": (gmac_per_s := job.macs / latency.median_ms / 1e6 if job.macs else None),
        "peak_share": job.peak.share(gmac_per_s, variant.precision) if job.peak and _on_cpu(variant, job) else None,
        "memory": memory.as_dict() if memory else None,
        "metric": evaluation.metric,
        "per_class": evaluation.map.per_class if evaluation.map else None,
        "parity": evaluation.parity,
        "quantize_seconds": q.seconds if q else None,
        "float_nodes": len(q.float_nodes) if q else None,
        "self_check": q.self_check.as_dict() if q and q.self_check else None,
        "provider_note": job.provider_notes.get(variant.name),
    }
    checks = budgets.checks(record.labelled, variant.plan.speed_gated, variant.plan.size_gated) \
        if (q and record.gated) else []
    entry["failures"] = [msg for c in checks if (msg := c.fails(entry))]
    if record.gated and q and q.self_check and not q.self_check.passed:
        entry["failures"].insert(0, f"{variant.name}: self-check against FP32 failed ({q.self_check.summary()})")
    entry["verdict"] = verdict(entry, budgets, not _on_cpu(variant, job))
    return entry


def _on_cpu(variant: Variant, job: JobResult) -> bool:
    return not (variant.runtime == TENSORRT or (variant.runtime == ONNXRUNTIME and on_gpu(job.sessions.providers)))


def _relative(path: Path, out_dir: Path) -> str:
    """A path inside the output folder relative to it (so the report stays true when the folder moves);
    any other absolute."""
    path = Path(path)
    return str(path.relative_to(out_dir)) if path.is_relative_to(out_dir) else str(path)


def verdict(entry: dict, budgets: Budgets, ran_on_gpu: bool = False) -> str:
    """A short plain-words judgement of one variant against FP32; ran_on_gpu: it ran on a GPU provider (or
    TensorRT), where the CPU's reasons for a slowdown do not apply."""
    if entry["recipe"] is None:
        if entry["runtime"] == ONNXRUNTIME:
            return "baseline"
        return f"FP32 model on {entry['runtime']}: {entry['speedup']:.2f}x onnxruntime FP32's speed; " + (
            "as accurate" if accurate(entry, budgets) else "accuracy over budget")
    recipe = entry["recipe"]
    parts = [f"{1 / entry['size_ratio']:.1f}x smaller"]
    if entry["speedup"] >= 1:
        parts.append(f"{entry['speedup']:.2f}x faster")
    elif entry.get("provider_note"):
        parts.append(f"but {1 / entry['speedup']:.1f}x slower: {entry['provider_note']}")
    elif ran_on_gpu:
        parts.append(f"but {1 / entry['speedup']:.1f}x slower")
    elif recipe["mode"] == Mode.FP16.value:
        parts.append(f"but {1 / entry['speedup']:.1f}x slower: FP16 is for GPUs; a CPU without FP16 arithmetic "
                     "gains nothing from it")
    elif recipe["mode"] == Mode.DYNAMIC.value:
        parts.append(f"but {1 / entry['speedup']:.1f}x slower: dynamic quantization runs ConvInteger and "
                     "quantizes activations at run time, slower than float convolutions on CPU")
    elif recipe["activation_type"] == QType.S8.value and detect_cpu().arch == "x86_64":
        parts.append(f"but {1 / entry['speedup']:.1f}x slower: on x86 S8xS8 QDQ convolutions are not fused "
                     "into QLinearConv and run as dequantize -> float Conv -> quantize")
    else:
        parts.append(f"but {1 / entry['speedup']:.1f}x slower")
    drop, agreement = entry["map_drop"], entry["agreement"]
    if accurate(entry, budgets):
        parts.append("as accurate" + (f" (mAP50-95 {-drop:+.3f})" if drop is not None else
                                      f" (agreement {agreement:.3f})"))
    elif drop is not None:
        parts.append(f"accuracy drop over budget (mAP50-95 -{drop:.3f} > {budgets.max_map_drop:g})")
    elif agreement is not None:
        parts.append(f"detections disagree with FP32 (agreement {agreement:.3f} < {budgets.min_agreement:g})")
    else:
        parts.append("accuracy not measured (the FP32 model detects nothing on these images)")
    if (drop or 0) > budgets.max_map_drop and (cause := known_cause(entry)):
        parts.append(cause)
    return "; ".join(parts)


def accurate(entry: dict, budgets: Budgets) -> bool:
    """Within the accuracy budget: the mAP50-95 drop with labels, agreement with FP32 without."""
    return budgets.accuracy_check(labelled=entry["map_drop"] is not None).fails(entry) is None


def fastest_accurate(variants: list[dict], budgets: Budgets) -> dict | None:
    """The fastest variant within the accuracy budget, whatever its runtime (FP32 itself qualifies)."""
    candidates = [v for v in variants if accurate(v, budgets)]
    if not candidates:
        return None
    best = max(candidates, key=lambda v: v["speedup"])
    return {"name": best["name"], "runtime": best["runtime"], "speedup": best["speedup"], "map_drop": best["map_drop"]}


def build_report(job: JobResult, model_path: Path, budgets: Budgets, out_dir: Path) -> dict:
    """The report of a job whose files are in `out_dir`; the paths in it are relative to that folder."""
    variants = [_variant_entry(v, job, budgets, out_dir) for v in job.variants]
    first = job.evaluations[job.reference.name]
    return {
        "schema_version": 2,
        "quantlab_version": __version__,
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "model": {"path": str(model_path), "sha256": sha256_file(model_path), "macs": job.macs,
                  "content_sha256": model_sha256(model_path), "input_hw": list(job.input_hw),
                  "task": job.description.as_dict()},
        "evaluation": {"source": _relative(Path(job.eval_source), out_dir), "images": first.images,
                       "labelled": first.map is not None, "seconds": job.eval_seconds,
                       "images_per_s": first.images / job.eval_seconds},
        "machine": {**machine_facts(job.sessions.threads, job.sessions.providers,
                                    tuple(dict.fromkeys(v.runtime for v in job.variants))),
                    "peak": job.peak.as_dict() if job.peak else None},
        "budgets": budgets.as_dict(),
        "variants": variants,
        "fastest_accurate": fastest_accurate(variants, budgets),
    }




def gates_in_words(budgets: dict) -> str:
    """'size_ratio <= 0.3, map_drop <= 0.01 (with labels), ...': every budget that is set, in the table's order."""
    return ", ".join(f"{m.name} {'>=' if m.higher_is_better else '<='} {budgets[m.budget_name]:g}"
                     f"{f' ({WHEN_WORDS[m.budget.when]})' if WHEN_WORDS[m.budget.when] else ''}" for m in BUDGETED if budgets.get(m.budget_name) is not None)


def _fmt(value, spec: str, empty: str = "-") -> str:
    return empty if value is None else format(value, spec)


# What the mAP columns measure, per task (the metric each task's evaluation uses)
METRIC_WORDS = {"bbox": "box mAP", "segm": "mask mAP (box mAP50-95 beside it in the JSON)",
                "keypoints": "keypoint OKS mAP (box mAP50-95 beside it in the JSON)", "obb": "rotated-box mAP"}


def render_markdown(report: dict) -> str:
    """The report as Markdown: the field report's columns first, then accuracy and verdicts. Every string
    that is not a number (paths, names, machine facts, verdicts naming them) is escaped (quantlab.textsafe)."""
    m = report["machine"]
    task = report["model"]["task"]
    metric = report["variants"][0]["metric"]
    task_parts = task["task"] != "detect"
    lines = [
        "# quantlab report",
        "",
        f"Model {md(report['model']['path'])} ({md(task['task'])}{', end-to-end' if task['end_to_end'] else ''}, "
        f"{task['classes']} classes) at {report['model']['input_hw'][0]}x{report['model']['input_hw'][1]}"
        + (f", {report['model']['macs'] / 1e9:.2f} GMAC an image" if report["model"]["macs"] else "") + "; "
        f"evaluated on {report['evaluation']['images']} images "
        f"({'labelled: ' + METRIC_WORDS[metric] if report['evaluation']['labelled'] else 'unlabelled: agreement with FP32 only'}).",
        f"Machine: {md(m['cpu'])} ({md(m['arch'])}; {md(', '.join(m['flags'])) or 'no INT8 extensions'}), "
        f"{m['cores']} cores, {m['threads']} thread(s), onnxruntime {md(m['onnxruntime'])}, {md(m['provider'])}"
        + "".join(f", {md(r)} {md(v)}" for r, v in m["runtimes"].items() if r != ONNXRUNTIME) + "."
        + (f" Peak (onnxruntime's GEMM on {m['peak']['threads']} thread(s)): INT8 {m['peak']['int8_gmac_per_s']:.0f}, "
           f"FP32 {m['peak']['fp32_gmac_per_s']:.0f} GMAC/s; Peak % is each model's GMAC/s against its precision's."
           if m.get("peak") else ""),
        "",
        "| Model | Runtime | Size MB | Latency ms | FPS | GMAC/s | Peak % | Size change | Speed change | mAP50 | mAP50-95 | mAP change "
        f"| Agreement | Box cos | Score cos |{' Task cos |' if task_parts else ''} Session MB | Quantize s |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|" + ("---|" if task_parts else ""),
    ]
    for v in report["variants"]:
        lines.append(
            f"| {md(v['name'])} | {md(v['runtime'])} | {v['size_bytes'] / MB:.2f} | {v['latency_ms']['median']:.2f} "
            f"| {v['fps']:.1f} | {_fmt(v['gmac_per_s'], '.1f')} "
            f"| {_fmt(None if v.get('peak_share') is None else 100 * v['peak_share'], '.0f')} "
            f"| {(v['size_ratio'] - 1) * 100:+.1f}% | {v['speedup']:.2f}x | {_fmt(v['map50'], '.3f')} "
            f"| {_fmt(v['map50_95'], '.3f')} | {_fmt(0.0 - v['map_drop'] if v['map_drop'] is not None else None, '+.3f')} "
            f"| {_fmt(v['agreement'], '.3f')} | {_fmt(v['box_cosine'], '.4f')} | {_fmt(v['score_cosine'], '.4f')} "
            + (f"| {_fmt(v['task_cosine'], '.4f')} " if task_parts else "") +
            f"| {_fmt(v['memory'] and v['memory']['session_bytes'] / MB, '.1f')} | {_fmt(v['quantize_seconds'], '.1f')} |"
        )
    best = report["fastest_accurate"]
    lines += ["", "Fastest accurate variant: " + (
        f"**{md(best['name'])}** ({best['speedup']:.2f}x FP32"
        + (f", mAP50-95 drop {best['map_drop']:.4f})" if best["map_drop"] is not None else ")")
        if best else "none within the accuracy budget") + "."]
    lines += ["", "Speed change is onnxruntime FP32 median latency over the variant's, timed interleaved in one process. "
              "Session MB is the peak resident memory an onnxruntime session adds (creation and inference), "
              "measured in a fresh process per model (median of 3; '-' where the platform cannot measure it).", ""]
    lines += ["## Verdicts", ""]
    for v in report["variants"]:
        gate = "" if not v["gated"] else (" **FAILS: " + md("; ".join(v["failures"])) + "**" if v["failures"]
                                          else " (gates pass)")
        lines.append(f"- **{md(v['name'])}**: {md(v['verdict'])}.{gate}")
    lines += ["", f"Gates: {gates_in_words(report['budgets'])}. Variants not gated are shown for contrast.", ""]
    return "\n".join(lines)


def write_chart(report: dict, path: Path) -> bool:
    """Size vs latency, bubble area by mAP50-95 (or agreement); False when matplotlib is absent."""
    plt = pyplot_or_none()
    if plt is None:
        return False
    fig, ax = plt.subplots(figsize=(6, 4), dpi=120)
    for v in report["variants"]:
        quality = v["map50_95"] if v["map50_95"] is not None else (v["agreement"] or 0.0)
        ax.scatter(v["size_bytes"] / MB, v["latency_ms"]["median"], s=40 + 600 * quality, alpha=0.6)
        ax.annotate(f"{v['name']}\n{quality:.3f}", (v["size_bytes"] / MB, v["latency_ms"]["median"]),
                    fontsize=8, ha="center")
    ax.set_xlabel("size (MB)")
    ax.set_ylabel("median latency (ms)")
    ax.set_title("size vs latency (bubble: mAP50-95, or agreement without labels)")
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    atomic_write_bytes(path, buffer.getvalue())
    return True


def write_report(report: dict, out_dir: Path) -> dict[str, Path]:
    """report.json, report.md and (with matplotlib) report.png in out_dir, each written atomically."""
    paths = {"json": out_dir / "report.json", "markdown": out_dir / "report.md"}
    atomic_write_bytes(paths["json"], json_bytes(report))
    atomic_write_bytes(paths["markdown"], render_markdown(report).encode())
    chart = out_dir / "report.png"
    if write_chart(report, chart):
        paths["chart"] = chart
    return paths
