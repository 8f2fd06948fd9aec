"""Accuracy-aware quantization: rank layers by the error their quantization alone adds, then return
the most harmful ones to float, greedily, until an accuracy budget holds, keeping the fastest model.

Sensitivity is cheap: for each layer group (a Conv with its SiLU) a copy of the INT8 model reads
float inputs instead of its DequantizeLinear outputs (its Q/DQ removed), and the drop in output
error against FP32 on a few images is that group's sensitivity; no re-quantization per group.
The ranking is redone after every step, on the model of that step, because harm can interact
(a widened activation hurts both the layer that makes it and the one that reads it).
"""

from __future__ import annotations

import dataclasses
import shlex
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx

from quantlab import ortcompat
from quantlab.atomicio import atomic_write_bytes, temp_folder
from quantlab.bench import interleaved_latency
from quantlab.datasets import check_class_names
from quantlab.description import ModelDescription
from quantlab.evaluate import EvalData, EvalResult, evaluate_models
from quantlab.images import iter_images
from quantlab.onnxmodel import inspect_model, load_model, resolve_input_hw
from quantlab.preprocess import letterbox
from quantlab.quantize import quantize_model, stage_model
from quantlab.errors import ConfigError
from quantlab.recipes import Mode, Recipe
from quantlab.sessions import inference_session, make_session
from quantlab.textsafe import for_markdown
from quantlab.variant import FP32

SENSITIVITY_IMAGES = 16


class TuneWarning(UserWarning):
    """No configuration met the accuracy budget; the closest one was kept."""


@dataclass(frozen=True)
class Sensitivity:
    """error_reduction: output error (normalised MSE, boxes + scores) removed by keeping `nodes` in float."""

    nodes: tuple[str, ...]
    error_reduction: float


@dataclass(frozen=True)
class Step:
    """One greedy step: the nodes kept in float so far, and what the model then measured."""

    index: int
    added: tuple[str, ...]
    float_nodes: tuple[str, ...]
    accuracy_loss: float  # mAP50-95 drop with labels, else 1 - detection agreement
    map50_95: float | None
    agreement: float | None
    latency_ms: float
    speedup: float
    size_bytes: int
    path: Path = field(repr=False, compare=False)

    def as_dict(self) -> dict:
        return {"index": self.index, "added": list(self.added), "float_nodes": list(self.float_nodes),
                "accuracy_loss": self.accuracy_loss, "map50_95": self.map50_95, "agreement": self.agreement,
                "latency_ms": self.latency_ms, "speedup": self.speedup, "size_bytes": self.size_bytes}


@dataclass(frozen=True)
class TuneResult:
    steps: list[Step]
    chosen: Step
    met: bool
    budget: float
    sensitivities: list[Sensitivity]
    output_path: Path
    seconds: float

    def as_dict(self) -> dict:
        return {"met": self.met, "budget": self.budget, "chosen_step": self.chosen.index,
                "output_path": str(self.output_path), "seconds": self.seconds,
                "steps": [s.as_dict() for s in self.steps],
                "sensitivity": [{"nodes": list(s.nodes), "error_reduction": s.error_reduction}
                                for s in self.sensitivities]}


def layer_groups(model: onnx.ModelProto) -> list[tuple[str, ...]]:
    """Each Conv with the SiLU that follows it (Sigmoid, then Mul of the conv output and the Sigmoid)."""
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for node in model.graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    groups = []
    for conv in (n for n in model.graph.node if n.op_type == "Conv"):
        group = [conv.name]
        after = consumers.get(conv.output[0], [])
        sigmoid = next((n for n in after if n.op_type == "Sigmoid"), None)
        if sigmoid is not None:
            mul = next((n for n in consumers.get(sigmoid.output[0], []) if n.op_type == "Mul"
                        and conv.output[0] in n.input), None)
            if mul is not None:
                group += [sigmoid.name, mul.name]
        groups.append(tuple(group))
    return groups


def bypass_quantization(qdq: onnx.ModelProto, fp32: onnx.ModelProto, nodes: Sequence[str]) -> onnx.ModelProto:
    """A copy of `qdq` in which `nodes` read float tensors instead of their DequantizeLinear outputs."""
    model = onnx.ModelProto()
    model.CopyFrom(qdq)
    producers = {out: n for n in model.graph.node for out in n.output}
    fp32_nodes = {n.name: n for n in fp32.graph.node}
    fp32_weights = {t.name: t for t in fp32.graph.initializer}
    present = {t.name for t in model.graph.initializer}
    wanted = set(nodes)
    for node in model.graph.node:
        if node.name not in wanted:
            continue
        for i, name in enumerate(node.input):
            dq = producers.get(name)
            if dq is None or dq.op_type != "DequantizeLinear":
                continue
            q = producers.get(dq.input[0])
            if q is not None and q.op_type == "QuantizeLinear":
                node.input[i] = q.input[0]  # the float activation before its Q/DQ pair
            elif node.name in fp32_nodes and i < len(fp32_nodes[node.name].input):
                original = fp32_nodes[node.name].input[i]  # a quantized weight or bias: use the float one
                if original in fp32_weights:
                    float_name = f"{original}__float"  # the DequantizeLinear may already own the old name
                    if float_name not in present:
                        tensor = onnx.TensorProto()
                        tensor.CopyFrom(fp32_weights[original])
                        tensor.name = float_name
                        model.graph.initializer.append(tensor)
                        present.add(float_name)
                    node.input[i] = float_name
    return model


def _normalised_error(outputs: list[np.ndarray], references: list[np.ndarray], description: ModelDescription
                      ) -> float:
    """Mean squared error over mean square, for each part of the output apart (boxes, scores and the
    task's own values), summed."""
    total = 0.0
    mine, theirs = [description.split(o) for o in outputs], [description.split(r) for r in references]
    for part in theirs[0] if theirs else ():
        err = sum(float(np.mean((o[part] - r[part]) ** 2)) for o, r in zip(mine, theirs))
        power = sum(float(np.mean(r[part] ** 2)) for r in theirs)
        total += err / max(power, 1e-12)
    return total


def rank_sensitivity(qdq_path: Path, fp32_prepared: onnx.ModelProto, feeds: list[dict],
                     groups: Sequence[tuple[str, ...]], description: ModelDescription, progress: Callable[[int], None] | None = None
                     ) -> list[Sensitivity]:
    """Groups sorted by how much output error keeping them in float removes, largest first."""
    qdq = onnx.load(str(qdq_path))
    present = {n.name for n in qdq.graph.node}

    def outputs_of(model_bytes) -> list[np.ndarray]:
        session = inference_session(model_bytes)
        return [session.run(None, feed)[0] for feed in feeds]

    references = outputs_of(fp32_prepared.SerializeToString())
    base_error = _normalised_error(outputs_of(qdq.SerializeToString()), references, description)
    ranked = []
    for group in groups:
        if not set(group) <= present:
            continue
        bypassed = bypass_quantization(qdq, fp32_prepared, group)
        error = _normalised_error(outputs_of(bypassed.SerializeToString()), references, description)
        ranked.append(Sensitivity(group, base_error - error))
        if progress is not None:
            progress(1)
    return sorted(ranked, key=lambda s: s.error_reduction, reverse=True)


def _feeds(paths: Sequence[Path], input_name: str, input_hw: tuple[int, int]) -> list[dict]:
    return [{input_name: letterbox(image, input_hw)[0]} for _, image in iter_images(paths)]


def _accuracy(result: EvalResult, fp32: EvalResult) -> tuple[float, float | None, float | None]:
    """(loss, mAP50-95, agreement): the loss is the mAP50-95 drop with labels, else 1 - agreement."""
    if result.map is not None:
        return fp32.map.map50_95 - result.map.map50_95, result.map.map50_95, result.agreement
    return 1.0 - (result.agreement or 0.0), None, result.agreement


def tune(model_path: Path, output_path: Path, recipe: Recipe, calib_images: Sequence[Path], data: EvalData,
         max_loss: float = 0.005,
         time_budget_s: float = 300.0, max_steps: int = 12, threads: int = 1, runs: int = 60,
         progress: Callable[[str, int], Callable[[int], None] | None] = lambda label, total: None,
         on_step: Callable[[Step], None] = lambda step: None) -> TuneResult:
    """Greedily keep the most sensitive layer groups in float until the accuracy loss is within
    `max_loss`; keep the fastest model that meets it (or the closest, with a TuneWarning)."""
    if recipe.mode is Mode.FP16:
        raise ConfigError(f"recipe {recipe.name!r} builds FP16: tune moves quantized layers back to float, and an "
                          "FP16 build has none (tune an INT8 recipe)")
    started = time.perf_counter()
    model_path, output_path = Path(model_path), Path(output_path)
    info = inspect_model(model_path)
    input_hw = resolve_input_hw(info)
    if data.dataset is not None:
        check_class_names(data.dataset, info.description, model_path)
    fp32_session = make_session(model_path, threads)
    names = data.class_names(info.class_names)
    fp32_eval = evaluate_models({FP32: fp32_session}, data.samples(info.description), input_hw, names,
                                info.description, reference=FP32)[FP32]
    feed = _feeds(data.paths[:1], info.input_name, input_hw)[0]

    with temp_folder("quantlab-tune-") as work_dir:
        work = Path(work_dir)
        steps: list[Step] = []

        def measure(index: int, float_nodes: tuple[str, ...], added: tuple[str, ...]) -> Step:
            path = work / f"step{index:02d}.onnx"
            # force: a step may fail the self-check; tune measures its accuracy and judges it itself
            quantize_model(model_path, path, recipe.replace(exclude_nodes=float_nodes), calib_images, force=True)
            session = make_session(path, threads)
            result = evaluate_models({FP32: fp32_session, "candidate": session}, data.samples(info.description),
                                     input_hw, names,
                                     info.description, reference=FP32)["candidate"]
            loss, map50_95, agreement = _accuracy(result, fp32_eval)
            latency = interleaved_latency({FP32: fp32_session, "candidate": session}, feed, runs=runs, warmup=5)
            step = Step(index, added, float_nodes, loss, map50_95, agreement, latency["candidate"].median_ms,
                        latency[FP32].median_ms / latency["candidate"].median_ms, path.stat().st_size, path)
            steps.append(step)
            on_step(step)
            return step

        def unpadded(step: Step) -> Path:
            """The step's model without channel padding, for the sensitivity pass: it swaps the user's float
            weights into the quantized graph, and padded weights have other shapes."""
            if not recipe.align_channels:
                return step.path
            path = work / f"step{step.index:02d}-unpadded.onnx"
            quantize_model(model_path, path, recipe.replace(align_channels=0, exclude_nodes=step.float_nodes),
                           calib_images, force=True)
            return path

        base = measure(0, tuple(recipe.exclude_nodes), ())
        sensitivities: list[Sensitivity] = []
        if base.accuracy_loss > max_loss:
            prepared = work / "prepared.onnx"
            ortcompat.pre_process(str(stage_model(load_model(model_path), work)), str(prepared))
            prepared_model = load_model(prepared)
            feeds = _feeds(data.paths[-SENSITIVITY_IMAGES:], info.input_name, input_hw)
            groups = layer_groups(prepared_model)
            float_nodes, current = tuple(recipe.exclude_nodes), base
            for index in range(1, max_steps + 1):
                if time.perf_counter() - started > time_budget_s:
                    break
                # ranked again on the current model: a group's harm can hide behind another's
                remaining = [g for g in groups if not set(g) <= set(float_nodes)]
                ranked = rank_sensitivity(unpadded(current), prepared_model, feeds, remaining, info.description,
                                          progress=progress(f"sensitivity {index}", len(remaining)))
                if not ranked:
                    break
                sensitivities = sensitivities or ranked
                float_nodes = float_nodes + ranked[0].nodes
                current = measure(index, float_nodes, ranked[0].nodes)
                if current.accuracy_loss <= max_loss:
                    break
        meeting = [s for s in steps if s.accuracy_loss <= max_loss]
        chosen = min(meeting, key=lambda s: s.latency_ms) if meeting else min(steps, key=lambda s: s.accuracy_loss)
        if not meeting:
            warnings.warn(f"no configuration met the accuracy budget {max_loss:g}; kept step {chosen.index}, "
                          f"the closest (loss {chosen.accuracy_loss:.4f})", TuneWarning, stacklevel=2)
        atomic_write_bytes(output_path, chosen.path.read_bytes())
    return TuneResult(steps, dataclasses.replace(chosen, path=output_path), bool(meeting), max_loss, sensitivities,
                      output_path=output_path, seconds=time.perf_counter() - started)


def render_tune_markdown(result: TuneResult) -> str:
    """Every step: what went back to float, the accuracy loss, latency and speedup."""
    lines = ["# quantlab tune", "",
             f"Budget: accuracy loss <= {result.budget:g}; "
             f"{'met' if result.met else 'NOT met: the closest model was kept'} at step {result.chosen.index}; "
             f"{result.seconds:.0f} s.", "",
             "| Step | Back to float | Float nodes | Accuracy loss | mAP50-95 | Agreement | Latency ms | Speedup |",
             "|---|---|---|---|---|---|---|---|"]
    for s in result.steps:
        added = for_markdown(", ".join(s.added)) if s.added else "(recipe as is)"  # node names: the model's text
        lines.append(f"| {s.index}{' *' if s.index == result.chosen.index else ''} | {added} | {len(s.float_nodes)} "
                     f"| {s.accuracy_loss:.4f} | {'-' if s.map50_95 is None else f'{s.map50_95:.4f}'} "
                     f"| {'-' if s.agreement is None else f'{s.agreement:.4f}'} | {s.latency_ms:.2f} "
                     f"| {s.speedup:.2f}x |")
    nodes = " ".join(shlex.quote(n) for n in result.chosen.float_nodes)
    command = f"quantlab quantize MODEL --calib DIR --exclude {nodes}"
    lines += ["", "Reproduce: " + for_markdown(command) if nodes else "", ""]
    return "\n".join(lines)
