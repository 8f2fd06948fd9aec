"""Run models over labelled or unlabelled images, streaming, and return their accuracy and parity."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort

from quantlab.sessions import run_explained
from quantlab.datasets import Dataset, Labels, read_labels
from quantlab.description import OBB, POSE, SEGMENT, ModelDescription
from quantlab.detections import PREDICT_NMS, VAL_NMS, NmsSettings, decode
from quantlab.errors import DatasetError, ImageError
from quantlab.images import iter_images
from quantlab.metrics import DetectionMAP, MapResult
from quantlab.parity import OutputParity
from quantlab.preprocess import letterbox

# The candidate side of detection agreement: every box above 0.001, one label per box, so a model
# compared with itself gets exactly 1.0 (its predict-default boxes rank first, all matched).
AGREEMENT_NMS = NmsSettings(conf=VAL_NMS.conf, iou=VAL_NMS.iou, max_det=VAL_NMS.max_det, multi_label=False)
# The task's own metric against labels (COCOeval's iouType, or rotated IoU for OBB); box mAP beside it
TASK_METRIC = {SEGMENT: "segm", POSE: "keypoints", OBB: "obb"}


def _metric_kind(description: ModelDescription) -> str:
    """The COCOeval kind of the task's mAP: bbox, segm, keypoints or obb."""
    return TASK_METRIC.get(description.task, "bbox")


def _box_kind(description: ModelDescription) -> str:
    """Boxes as the task has them: rotated for OBB. Detection agreement compares these."""
    return "obb" if description.task == OBB else "bbox"


@dataclass(frozen=True)
class Sample:
    """One image to evaluate: path, BGR image, labels (None when unlabelled)."""

    path: Path
    image: np.ndarray
    labels: Labels | None


@dataclass(frozen=True)
class EvalResult:
    """map: the task's mAP against labels (None without): box, mask, keypoint (OKS) or rotated-box;
    box_map: box mAP beside a segment or pose model's own (None otherwise); agreement: box mAP50 against
    the reference's detections; parity: {output name: {part: {...}, 'top1_agreement'}} against the reference."""

    images: int
    map: MapResult | None
    agreement: float | None
    parity: dict | None
    metric: str = "bbox"
    box_map: MapResult | None = None

    def as_dict(self) -> dict:
        return {
            "images": self.images,
            "metric": self.metric,
            "map50": self.map.map50 if self.map else None,
            "map50_95": self.map.map50_95 if self.map else None,
            "per_class": self.map.per_class if self.map else None,
            "box_map50_95": self.box_map.map50_95 if self.box_map else None,
            "agreement": self.agreement,
            "parity": self.parity,
        }


def labelled_samples(dataset: Dataset, description: ModelDescription) -> Iterator[Sample]:
    """The dataset's images with their labels read as the model's task has them."""
    for path, image in iter_images(dataset.images):
        yield Sample(path, image, read_labels(path, image.shape[:2], len(dataset.names), description.task,
                                              description.kpt_shape))


def unlabelled_samples(paths: Iterable[Path]) -> Iterator[Sample]:
    for path, image in iter_images(paths):
        yield Sample(path, image, None)


@dataclass(frozen=True)
class EvalData:
    """What a job evaluates on: a labelled dataset (mAP against its labels) or unlabelled images
    (agreement and parity with the reference only)."""

    dataset: Dataset | None = None
    images: tuple[Path, ...] = ()

    @property
    def labelled(self) -> bool:
        return self.dataset is not None

    @property
    def paths(self) -> list[Path]:
        return list(self.dataset.images if self.dataset is not None else self.images)

    @property
    def source(self) -> str:
        """The data.yaml, or the folder of the first image: named in errors and the report."""
        return str(self.dataset.yaml_path) if self.dataset is not None else str(Path(self.images[0]).parent)

    def class_names(self, model_names: dict[int, str]) -> dict[int, str]:
        """The dataset's class names; the model's own without one."""
        return self.dataset.names if self.dataset is not None else model_names

    def samples(self, description: ModelDescription) -> Iterator[Sample]:
        """The images, read one at a time, with their labels as the model's task has them when labelled."""
        if self.dataset is not None:
            return labelled_samples(self.dataset, description)
        return unlabelled_samples(self.images)


def evaluate_models(sessions: Mapping[str, ort.InferenceSession], samples: Iterable[Sample],
                    input_hw: tuple[int, int], names: dict[int, str], description: ModelDescription,
                    reference: str | None = None, progress: Callable[[int], None] | None = None,
                    source: str = "images") -> dict[str, EvalResult]:
    """Evaluate every session on the same samples, read and preprocessed once each; outputs are
    decoded, compared and scored as the model's task has them (`description`).

    reference: the name of the session (usually FP32) that agreement and parity compare against.
    source: the folder or data.yaml the samples come from, named in errors.
    """
    if reference is not None and reference not in sessions:
        raise ValueError(f"reference {reference!r} is not one of the sessions: {', '.join(sessions)}")
    input_names = {name: s.get_inputs()[0].name for name, s in sessions.items()}
    output_names = {name: s.get_outputs()[0].name for name, s in sessions.items()}
    kind, box_kind = _metric_kind(description), _box_kind(description)
    maps = {name: DetectionMAP(names, kind) for name in sessions}
    box_maps = {name: DetectionMAP(names, box_kind) for name in sessions} if kind != box_kind else None
    agreements = {name: DetectionMAP(names, box_kind) for name in sessions}
    parities = {name: OutputParity(description) for name in sessions}
    count, labelled, first = 0, False, None
    for sample in samples:
        first = first or sample.path
        tensor, geometry = letterbox(sample.image, input_hw)
        outputs = {name: run_explained(s, None, {input_names[name]: tensor}, f"{name} on {sample.path}")
                   for name, s in sessions.items()}
        truth = decode(outputs[reference], geometry, description, PREDICT_NMS, masks=False) if reference else None
        for name, output in outputs.items():
            if sample.labels is not None:
                labelled = True
                found = decode(output, geometry, description, VAL_NMS)
                maps[name].update(found, sample.labels)
                if box_maps is not None:
                    box_maps[name].update(found, sample.labels)
            if truth is not None:
                agreements[name].update(decode(output, geometry, description, AGREEMENT_NMS, masks=False), truth)
                parities[name].update(output, outputs[reference])
        count += 1
        if progress is not None:
            progress(1)
    if count == 0:
        raise ImageError(f"{source}: no image could be decoded, so nothing was evaluated (see the warnings above)")
    if labelled and not next(iter(maps.values())).has_targets:  # a data.yaml promised labels; none came
        raise DatasetError(f"{first.parent}: none of the {count} images has a usable label line (label files "
                           "missing, empty or every line skipped), so mAP cannot be measured; check the labels/ "
                           "folder beside images/, or evaluate with --images and a reference")
    results = {}
    for name in sessions:
        agreement = None
        if reference is not None:
            agreement = agreements[name].compute().map50 if agreements[name].has_targets else None
        scored = labelled and maps[name].has_targets
        results[name] = EvalResult(
            images=count,
            map=maps[name].compute() if scored else None,
            agreement=agreement,
            parity={output_names[name]: parities[name].compute()} if reference is not None else None,
            metric=kind,
            box_map=box_maps[name].compute() if scored and box_maps is not None else None,
        )
    return results
