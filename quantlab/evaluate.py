"""Run models over labelled or unlabelled images, streaming, and return their accuracy and parity."""

from __future__ import annotations

import os
import warnings
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import onnxruntime as ort

from quantlab.sessions import run_explained
from quantlab.datasets import Dataset, Labels, read_labels
from quantlab.description import OBB, POSE, SEGMENT, ModelDescription
from quantlab.detections import PREDICT_NMS, VAL_NMS, Detections, NmsSettings, decode
from quantlab.errors import DatasetError, ImageError, SkippedImageWarning
from quantlab.images import iter_images, read_image
from quantlab.metrics import DetectionMAP, MapResult
from quantlab.parity import OutputParity
from quantlab.preprocess import letterbox

# The candidate side of detection agreement: every box above 0.001, one label per box, so a model
# compared with itself gets exactly 1.0 (its predict-default boxes rank first, all matched).
AGREEMENT_NMS = NmsSettings(conf=VAL_NMS.conf, iou=VAL_NMS.iou, max_det=VAL_NMS.max_det, multi_label=False)
# The task's own metric against labels (COCOeval's iouType, or rotated IoU for OBB); box mAP beside it
TASK_METRIC = {SEGMENT: "segm", POSE: "keypoints", OBB: "obb"}
# Images in flight per worker (taken, not yet accumulated): enough that no worker waits on the main thread,
# few enough that memory holds a handful of images whatever the folder's size
IN_FLIGHT_PER_WORKER = 2


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

    @property
    def labelled(self) -> bool:
        return self.labels is not None

    def read_image(self) -> np.ndarray:
        return self.image

    def read_labels(self, image_hw: tuple[int, int]) -> Labels | None:
        return self.labels


@dataclass(frozen=True)
class ImageFile:
    """One image on disk to evaluate, decoded when an evaluation worker reaches it: a Sample not yet read.

    label_reader: (image path, image (H, W)) -> Labels, as the model's task has them; None when unlabelled.
    """

    path: Path
    label_reader: Callable[[Path, tuple[int, int]], Labels] | None = None

    @property
    def labelled(self) -> bool:
        return self.label_reader is not None

    def read_image(self) -> np.ndarray:
        """(H, W, 3) uint8 BGR; ImageError when the file cannot be decoded."""
        return read_image(self.path)

    def read_labels(self, image_hw: tuple[int, int]) -> Labels | None:
        return self.label_reader(self.path, image_hw) if self.label_reader is not None else None


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


def _label_reader(dataset: Dataset, description: ModelDescription) -> Callable[[Path, tuple[int, int]], Labels]:
    """(image path, image (H, W)) -> its Labels, as the model's task has them."""
    return partial(read_labels, num_classes=len(dataset.names), task=description.task,
                   kpt_shape=description.kpt_shape)


def labelled_files(dataset: Dataset, description: ModelDescription) -> Iterator[ImageFile]:
    """The dataset's images, not yet read, each with the reader of its labels."""
    reader = _label_reader(dataset, description)
    return (ImageFile(path, reader) for path in dataset.images)


def unlabelled_files(paths: Iterable[Path]) -> Iterator[ImageFile]:
    return (ImageFile(path) for path in paths)


def labelled_samples(dataset: Dataset, description: ModelDescription) -> Iterator[Sample]:
    """The dataset's images read one at a time here, with their labels as the model's task has them."""
    reader = _label_reader(dataset, description)
    for path, image in iter_images(dataset.images):
        yield Sample(path, image, reader(path, image.shape[:2]))


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

    def samples(self, description: ModelDescription) -> Iterator[ImageFile]:
        """The images, each read by the evaluation worker that reaches it, with their labels as the model's
        task has them when labelled."""
        if self.dataset is not None:
            return labelled_files(self.dataset, description)
        return unlabelled_files(self.images)


def usable_cpus() -> int:
    """The CPUs this process may run on (its affinity mask where the OS has one)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def default_workers(threads: int = 1) -> int:
    """Evaluation's worker threads: the usable CPUs over each session's intra-op `threads`, so together they fill
    the machine; 1 under an address-space limit (`ulimit -v`), which counts every thread's stack and thread-local
    data, and where a thread that cannot get them aborts the process instead of raising MemoryError."""
    try:
        import resource

        limited = resource.getrlimit(resource.RLIMIT_AS)[0] != resource.RLIM_INFINITY
    except (ImportError, AttributeError, OSError, ValueError):  # no such limit on this platform
        limited = False
    return 1 if limited else max(1, usable_cpus() // max(1, threads))


@dataclass(frozen=True)
class _Inferred:
    """One image's work, done by a worker, for the main thread to accumulate in the images' order.

    skipped: why the image could not be decoded (nothing else is set); failure: what running or decoding
    raised, re-raised by the main thread once it has read the image's labels, as the serial path would.
    outputs: each session's raw outputs; found: its detections at val's NMS (labelled images only);
    agreeing: at AGREEMENT_NMS, and truth: the reference's at predict's NMS (with a reference only).
    """

    item: Sample | ImageFile
    skipped: ImageError | None = None
    failure: Exception | None = None
    image_hw: tuple[int, int] | None = None
    outputs: dict[str, list[np.ndarray]] | None = None
    found: dict[str, Detections] | None = None
    agreeing: dict[str, Detections] | None = None
    truth: Detections | None = None


def _infer(item: Sample | ImageFile, sessions: Mapping, input_names: dict[str, str], input_hw: tuple[int, int],
           description: ModelDescription, reference: str | None) -> _Inferred:
    """Read, letterbox, run every session and decode: everything of one image that touches no accumulator."""
    try:
        image = item.read_image()
    except ImageError as exc:
        return _Inferred(item, skipped=exc)
    try:
        tensor, geometry = letterbox(image, input_hw)
        outputs = {name: run_explained(s, None, {input_names[name]: tensor}, f"{name} on {item.path}")
                   for name, s in sessions.items()}
        found = ({name: decode(output, geometry, description, VAL_NMS) for name, output in outputs.items()}
                 if item.labelled else None)
        truth, agreeing = None, None
        if reference is not None:
            truth = decode(outputs[reference], geometry, description, PREDICT_NMS, masks=False)
            agreeing = {name: decode(output, geometry, description, AGREEMENT_NMS, masks=False)
                        for name, output in outputs.items()}
    except Exception as exc:  # re-raised in the images' order by the main thread (_Inferred.failure)
        return _Inferred(item, failure=exc, image_hw=image.shape[:2])
    return _Inferred(item, image_hw=image.shape[:2], outputs=outputs, found=found, agreeing=agreeing, truth=truth)


def _in_order(work: Callable, items: Iterable, workers: int) -> Iterator:
    """work(item) for each item, yielded in the items' order. workers=1: here, one item at a time, each read
    only when the one before is consumed; more: by that many threads, with at most IN_FLIGHT_PER_WORKER x
    workers items taken from `items` and not yet consumed (the one being consumed included). Closing the
    generator cancels what has not started and waits for the rest: no thread outlives it."""
    if workers == 1:
        yield from map(work, items)
        return
    pool = ThreadPoolExecutor(workers, thread_name_prefix="quantlab-evaluate")
    pending = deque()
    try:
        for item in items:
            pending.append(pool.submit(work, item))
            if len(pending) == IN_FLIGHT_PER_WORKER * workers:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def evaluate_models(sessions: Mapping[str, ort.InferenceSession], samples: Iterable[Sample | ImageFile],
                    input_hw: tuple[int, int], names: dict[int, str], description: ModelDescription,
                    reference: str | None = None, progress: Callable[[int], None] | None = None,
                    source: str = "images", workers: int | None = None) -> dict[str, EvalResult]:
    """Evaluate every session on the same samples, read and preprocessed once each; outputs are
    decoded, compared and scored as the model's task has them (`description`).

    samples: decoded Samples, or ImageFiles that the workers decode (an undecodable one is skipped with a
    SkippedImageWarning, its labels read only once it is decoded).
    reference: the name of the session (usually FP32) that agreement and parity compare against.
    source: the folder or data.yaml the samples come from, named in errors.
    workers: threads that read, letterbox, run and decode images concurrently (the sessions' run is
    thread-safe; onnxruntime, OpenCV and the file reads release the GIL); default default_workers(). The metrics
    are fed in the main thread in the samples' order, so every result, warning and error is the same, to
    the bit, whatever the count. workers=1 is the serial path: each sample is evaluated before the next
    is read.
    """
    if reference is not None and reference not in sessions:
        raise ValueError(f"reference {reference!r} is not one of the sessions: {', '.join(sessions)}")
    workers = default_workers() if workers is None else workers
    if workers < 1:
        raise ValueError(f"workers must be 1 or more, got {workers}")
    input_names = {name: s.get_inputs()[0].name for name, s in sessions.items()}
    output_names = {name: s.get_outputs()[0].name for name, s in sessions.items()}
    kind, box_kind = _metric_kind(description), _box_kind(description)
    maps = {name: DetectionMAP(names, kind) for name in sessions}
    box_maps = {name: DetectionMAP(names, box_kind) for name in sessions} if kind != box_kind else None
    agreements = {name: DetectionMAP(names, box_kind) for name in sessions}
    parities = {name: OutputParity(description) for name in sessions}
    count, labelled, first = 0, False, None
    work = partial(_infer, sessions=sessions, input_names=input_names, input_hw=input_hw,
                   description=description, reference=reference)
    with closing(_in_order(work, samples, workers)) as inferred:
        for done in inferred:
            if done.skipped is not None:
                warnings.warn(f"skipping {done.skipped}", SkippedImageWarning, stacklevel=2)
                continue
            labels = done.item.read_labels(done.image_hw)
            if done.failure is not None:
                raise done.failure
            first = first or done.item.path
            for name, output in done.outputs.items():
                if labels is not None:
                    labelled = True
                    maps[name].update(done.found[name], labels)
                    if box_maps is not None:
                        box_maps[name].update(done.found[name], labels)
                if done.truth is not None:
                    agreements[name].update(done.agreeing[name], done.truth)
                    parities[name].update(output, done.outputs[reference])
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
