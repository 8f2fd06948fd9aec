"""Make the tiny, briefly trained Ultralytics ONNX exports in tests/data/models/ (the YOLO task test data).

Run by hand in a throwaway venv; the test suite and CI never import ultralytics or torch:

    python3 -m venv /tmp/ulvenv && /tmp/ulvenv/bin/pip install ultralytics onnx onnxslim
    /tmp/ulvenv/bin/python tools/make_test_models.py --ort-python .venv/bin/python

Every model is built from its Ultralytics yaml (no .pt is read or downloaded), shrunk (SCALE, or
WIDE_SCALE for the trainings in WIDE; nc 4; REG_MAX) and trained from scratch for EPOCHS epochs on
quantlab's own demo shapes dataset, written by `quantlab demo-data --task {detect,segment,pose,obb}`
(run with --ort-python from the --quantlab source tree; nothing is downloaded). Random weights quantize
unlike real ones (INT8-vs-FP32 score cosine 0.24-0.96 where trained models give over 0.99), so the
weights are trained, briefly: 2-5 minutes per model on 2 CPU cores, enough for the scores to mean
something (the README's trainings table gives each model's mAP50 on the demo val split), not for good
detectors. One training serves every file built from the same yaml and kpt_shape. Then each is
exported to ONNX (opset 17, onnxslim, batch 1, 96x160), two copies lose their metadata, the project
venv's onnxruntime runs every file on zeros, and the tables in tests/data/models/README.md are
rewritten from what it reports and from the trainings.

Ultralytics runs offline (YOLO_OFFLINE, no auto-install, settings, datasets and runs/ in a temporary
folder, sync off); it warns that onnxruntime is missing from this venv, and slims the graphs without it.
Seeded (demo-data, torch with deterministic algorithms, one dataloader process, and Python's hash seed,
on which onnxslim's symbolic shapes in the dynamic export depend), so a rerun with the same package
versions on the same CPU gives the same weights and graphs; files are not byte-identical across runs
(Ultralytics writes the export date into the metadata) nor promised identical across CPUs or torch,
ultralytics or onnxslim versions.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import dataclasses
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import onnx  # torch and ultralytics are imported where used: --describe runs in the project venv, without them

REPO = Path(__file__).resolve().parents[1]
MODELS_DIR = REPO / "tests" / "data" / "models"
TABLE_START = "<!-- table written by tools/make_test_models.py -->"
TABLE_END = "<!-- end of table -->"

SEED = 0
INPUT_HW = (96, 160)
SCALE = [0.33, 0.0625, 128]  # depth, width, max_channels: 8 channels in every layer past the stem
# 16 channels (width 0.125) for these trainings. With 8, after EPOCHS epochs their scores stayed unsure
# (yolov8's best anchor 0.60 over 50 demo images; 0.95 with 16) and quantlab's INT8 self-check fell under
# its 0.98 floor: score cosine 0.95 (pose) and 0.977 (OBB) with 100 calibration images, 0.86 and 0.94 in
# the in-graph NMS exports of yolov8 and yolov8-seg. With 16 every file passes, at about 1.7x the size.
WIDE = {"yolov8", "yolov8-seg", "yolov8-pose-4x3", "yolov8-obb"}  # Spec.weights names
WIDE_SCALE = [0.33, 0.125, 128]
# DFL bins where the yaml does not set them (v10Detect always has 16, yolo26 has 1). At 16 the box branch
# alone is ~0.5 MB per model; 5 is the smallest that keeps the DFL's (4 sides, bins) axes apart.
REG_MAX = 5
SHAPES = ("circle", "rectangle", "triangle", "star")  # quantlab's demo shapes dataset
DEMO_KPT_SHAPE = (4, 3)  # what demo-data --task pose writes: top, right, bottom, left vertex, each x y visibility
EPOCHS = 20
# Brief training on 2 CPU cores. Square 160 (the export is 96x160). AdamW at 8x the lr Ultralytics' 'auto'
# picks for a short run learns more in 15 epochs: yolov8 mAP50 0.10 with 'auto', 0.22 at lr 0.005, 0.26 at 0.01.
TRAIN = dict(imgsz=max(INPUT_HW), epochs=EPOCHS, batch=32, workers=0, device="cpu", amp=False, plots=False,
             val=False, seed=SEED, deterministic=True, optimizer="AdamW", lr0=0.01, verbose=False)
EXPORT = dict(format="onnx", imgsz=list(INPUT_HW), batch=1)  # opset, simplify, dynamic and nms: per Spec


@dataclass(frozen=True)
class Spec:
    """One exported file: the Ultralytics model yaml it is built from, what it is trained on, how it is exported."""

    file: str
    yaml: str
    nms: bool | None = None  # Ultralytics 8.4: None raw outputs, False the end-to-end head, True NMS in graph
    dynamic: bool = False
    kpt_shape: tuple[int, int] | None = None  # pose: (4, 3) is the demo data's; (4, 2) drops its visibility
    opset: int = 17
    simplify: bool = True  # onnxslim
    twin: str | None = None  # --set dynamic: the families file whose weights it is exported with

    @property
    def task(self) -> str:
        """The Ultralytics task, which is also the `demo-data --task` it is trained on."""
        suffix = Path(self.yaml).stem.rpartition("-")[2]
        return {"seg": "segment", "pose": "pose", "obb": "obb"}.get(suffix, "detect")

    @property
    def weights(self) -> str:
        """A name for the training this file is exported from: one per yaml and kpt_shape."""
        shape = "x".join(map(str, self.kpt_shape)) if self.kpt_shape else ""
        return "-".join(filter(None, (Path(self.yaml).stem, shape)))

    @property
    def drops_visibility(self) -> bool:
        """A pose file trained on the demo pose labels without their visibility values."""
        return self.kpt_shape not in (None, DEMO_KPT_SHAPE)


SPECS = (
    Spec("yolov5u.onnx", "yolov5.yaml"),  # Ultralytics 8's yolov5.yaml is the anchor-free 'u' model
    Spec("yolov8.onnx", "yolov8.yaml"),
    Spec("yolo11.onnx", "yolo11.yaml"),
    Spec("yolov10.onnx", "yolov10n.yaml"),  # the one-to-many branch, raw like yolov8
    Spec("yolo26.onnx", "yolo26.yaml"),
    Spec("yolov8-seg.onnx", "yolov8-seg.yaml"),
    Spec("yolo11-seg.onnx", "yolo11-seg.yaml"),
    Spec("yolov8-pose.onnx", "yolov8-pose.yaml", kpt_shape=(4, 3)),  # top, right, bottom, left outline vertex
    Spec("yolov8-pose-4x2.onnx", "yolov8-pose.yaml", kpt_shape=(4, 2)),  # the same points, no visibility
    Spec("yolov8-obb.onnx", "yolov8-obb.yaml"),
    Spec("yolov10.e2e.onnx", "yolov10n.yaml", nms=False),  # same weights as yolov10.onnx, one-to-one + TopK
    Spec("yolo26.e2e.onnx", "yolo26.yaml", nms=False),
    Spec("yolo26-obb.e2e.onnx", "yolo26-obb.yaml", nms=False),  # OBB26: boxes cx cy w h, raw angle
    Spec("yolov8.nms.onnx", "yolov8.yaml", nms=True),
    Spec("yolov8-seg.nms.onnx", "yolov8-seg.yaml", nms=True),
    Spec("yolov8-seg.dynamic.onnx", "yolov8-seg.yaml", dynamic=True),
)
STRIPPED = {"yolov8-seg.nometa.onnx": "yolov8-seg.onnx", "yolov8-pose.nometa.onnx": "yolov8-pose.onnx"}

# `--set dynamic`: the exports users make for serving stacks (`dynamic=True`), for every task and the
# end-to-end head, at the opsets serving stacks pin, with onnxslim on and off. No training: each takes its
# weights from its static twin in this folder (the same Ultralytics model rebuilt, fused, and loaded from
# the twin's initializers, checked by re-exporting the twin exactly), so a test can require of both the
# same description, head and mAP.
DYNAMIC_OPSETS = (12, 13, 17, 20)
DYNAMIC_TWINS = ("yolov8.onnx", "yolov8-seg.onnx", "yolov8-pose.onnx", "yolov8-obb.onnx", "yolo26.e2e.onnx")
DYNAMIC_SPECS = tuple(
    dataclasses.replace(twin, file=f"{Path(twin.file).stem}.dynamic.opset{opset}{'.slim' if slim else ''}.onnx",
                        dynamic=True, opset=opset, simplify=slim, twin=twin.file)
    for twin in SPECS if twin.file in DYNAMIC_TWINS for opset in DYNAMIC_OPSETS for slim in (False, True)
)
SETS = {  # --set: (its specs, the copies stripped of metadata, the folder)
    "families": (SPECS, STRIPPED, MODELS_DIR),
    "dynamic": (DYNAMIC_SPECS, {}, MODELS_DIR / "dynamic"),
}


@dataclass(frozen=True)
class Training:
    """One training run: the files exported from it, its time, and Ultralytics' validation on the demo val split."""

    weights: str
    data: str
    train_s: float
    map50: dict[str, float]  # per part: "B" boxes (rotated for OBB), "M" masks, "P" keypoints


def demo_data(task: str, work: Path, ort_python: Path, quantlab_src: Path) -> Path:
    """Write the demo shapes dataset for `task` (train and val splits) under `work`; returns its data.yaml."""
    out = work / "data" / task
    # run in quantlab_src too: `python -m` puts the working folder ahead of PYTHONPATH on sys.path
    subprocess.run([str(ort_python), "-m", "quantlab", "demo-data", str(out), "--task", task,
                    "--splits", "train,val", "--quiet"],
                   check=True, cwd=quantlab_src, env={**os.environ, "PYTHONPATH": str(quantlab_src)})
    return out / "data.yaml"


def without_visibility(data_yaml: Path, out: Path) -> Path:
    """Copy a [K, 3] pose dataset to `out` as [K, 2]: every keypoint's visibility value dropped.

    Keypoints demo-data marks outside the image (0 0 0, 2.6% of them) become (0, 0) points, which a
    [K, 2] dataset cannot mark; training tolerates them. Returns the new data.yaml.
    """
    from ultralytics.utils import YAML

    source = data_yaml.parent
    spec = YAML.load(data_yaml)
    dims = spec["kpt_shape"][1]
    shutil.copytree(source / "images", out / "images")  # copies: Ultralytics resolves links to the source labels
    for labels in sorted((source / "labels").rglob("*.txt")):
        lines = []
        for line in labels.read_text().splitlines():
            values = line.split()
            keypoints = values[5:]
            lines.append(" ".join(values[:5] + [v for i, v in enumerate(keypoints) if i % dims != dims - 1]))
        target = out / labels.relative_to(source)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text("".join(f"{line}\n" for line in lines))
    spec["kpt_shape"] = [spec["kpt_shape"][0], dims - 1]
    spec.pop("yaml_file", None)
    YAML.save(out / "data.yaml", spec)
    return out / "data.yaml"


def model_yaml(spec: Spec, work: Path) -> Path:
    """`spec`'s Ultralytics model yaml, shrunk (nc, scale, DFL bins, kpt_shape), written under `work`."""
    from ultralytics.utils import ROOT, YAML

    cfg = YAML.load(next((ROOT / "cfg" / "models").rglob(spec.yaml)))
    cfg.update(nc=len(SHAPES), scales={"n": WIDE_SCALE if spec.weights in WIDE else SCALE})
    cfg.setdefault("reg_max", REG_MAX)
    if spec.kpt_shape:
        cfg["kpt_shape"] = list(spec.kpt_shape)
    stem = re.sub(r"^(yolov?\d+)n?", r"\1n", Path(spec.yaml).stem)  # the 'n' makes Ultralytics pick scales["n"]
    folder = work / "cfg" / spec.weights
    folder.mkdir(parents=True, exist_ok=True)
    cfg_path = folder / f"{stem}.yaml"
    YAML.save(cfg_path, cfg)
    return cfg_path


def rebuilt(spec: Spec, work: Path):
    """A YOLO with the weights of `spec.twin` (a committed export): built from the same yaml, fused as the
    exporter fuses it, every tensor the twin holds loaded by its name (an end-to-end twin holds only its
    one-to-one branch, the one its export runs)."""
    import torch
    from onnx import numpy_helper
    from ultralytics import YOLO

    yolo = YOLO(str(model_yaml(spec, work)))
    if spec.nms is False:  # an end-to-end twin: fuse() then keeps the one-to-one branch, as the export does
        yolo.model.model[-1].end2end = True
    yolo.model.fuse()
    twin = onnx.load(str(MODELS_DIR / spec.twin))
    weights = {t.name: torch.from_numpy(numpy_helper.to_array(t).copy()) for t in twin.graph.initializer}
    state = yolo.model.state_dict()
    if not any(name in weights for name in state):
        raise SystemExit(f"{spec.twin}: none of its initializers is named like a tensor of {spec.yaml}")
    yolo.model.load_state_dict({name: weights.get(name, value) for name, value in state.items()})
    names = next(p.value for p in twin.metadata_props if p.key == "names")
    yolo.model.names = ast.literal_eval(names)
    return yolo


def same_outputs(a: Path, b: Path) -> bool:
    """Whether two models give the same outputs (within 1e-5) on one seeded random image."""
    import numpy as np
    import onnxruntime as ort

    image = np.random.default_rng(SEED).random((1, 3, *INPUT_HW), dtype=np.float32)
    outputs = []
    for path in (a, b):
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        outputs.append(session.run(None, {session.get_inputs()[0].name: image}))
    return all(x.shape == y.shape and np.allclose(x, y, atol=1e-5) for x, y in zip(*outputs))


def train(spec: Spec, data_yaml: Path, work: Path) -> tuple[Path, Training]:
    """Build `spec`'s model from its yaml and train it on `data_yaml`; returns its last.pt and the record."""
    from ultralytics import YOLO

    yolo = YOLO(str(model_yaml(spec, work)))
    started = time.perf_counter()
    metrics = yolo.train(data=str(data_yaml), project=str(work / "runs"), name=spec.weights, **TRAIN)
    train_s = time.perf_counter() - started
    map50 = {key[-2]: round(float(value), 3) for key, value in metrics.results_dict.items()
             if key.startswith("metrics/mAP50(")}
    data = f"demo-data --task {spec.task}" + (", visibility dropped" if spec.drops_visibility else "")
    return Path(yolo.trainer.last), Training(spec.weights, data, round(train_s, 1), map50)


def export(spec: Spec, yolo, data: str) -> Path:
    """Export `spec` from `yolo` (trained or rebuilt); returns the .onnx, written next to its weights (the
    next export from the same weights overwrites it)."""
    yolo.model.args["data"] = f"quantlab {data}"  # the metadata's description names this, not the temporary folder
    return Path(yolo.export(**EXPORT, nms=spec.nms, dynamic=spec.dynamic, opset=spec.opset, simplify=spec.simplify))


def describe(paths: list[str]) -> list[dict]:
    """Run each model on a zero image with onnxruntime: its outputs (declared and run shapes) and metadata."""
    import numpy as np
    import onnxruntime as ort

    described = []
    for path in paths:
        session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
        image = session.get_inputs()[0]
        shape = [d if isinstance(d, int) else fixed for d, fixed in zip(image.shape, (1, 3, *INPUT_HW))]
        results = session.run(None, {image.name: np.zeros(shape, np.float32)})
        described.append({
            "file": Path(path).name,
            "outputs": [{"name": o.name, "declared": o.shape, "ran": list(r.shape)}
                        for o, r in zip(session.get_outputs(), results)],
            "metadata": session.get_modelmeta().custom_metadata_map,
            "onnxruntime": ort.__version__,
        })
    return described


def shape_text(output: dict) -> str:
    ran = "(" + ", ".join(map(str, output["ran"])) + ")"
    if output["declared"] == output["ran"]:
        return f"{output['name']} {ran}"
    declared = "(" + ", ".join(map(str, output["declared"])) + ")"
    return f"{output['name']} {declared}, ran {ran}"


def table(described: list[dict], trainings: list[Training], versions: dict, chosen: str) -> str:
    all_specs, stripped, folder = SETS[chosen]
    specs = {spec.file: spec for spec in all_specs}
    common = set.intersection(*(set(d["metadata"]) for d in described if d["metadata"]))
    lines = [
        f"Made with {', '.join(f'{k} {v}' for k, v in versions.items())}; onnxruntime "
        f"{described[0]['onnxruntime']} ran each file on a zero input (output shapes below).",
        "",
        f"Metadata keys of every file but the `.nometa` ones: {', '.join(sorted(common))}.",
        "",
        "| File | Built from | Task | Head | Export | Outputs (onnxruntime) | Metadata | Size (bytes) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for d in described:
        spec = specs.get(d["file"]) or specs[stripped[d["file"]]]
        meta = d["metadata"]
        source = (f"weights of `{spec.twin}`" if spec.twin else
                  spec.yaml + (f", kpt_shape {list(spec.kpt_shape)}" if spec.kpt_shape else "")
                  + (f", width {WIDE_SCALE[1]}" if spec.weights in WIDE else ""))
        how = ("copy of " + stripped[d["file"]] + ", metadata_props deleted" if d["file"] in stripped
               else f"nms={spec.nms}" + (", dynamic=True" if spec.dynamic else "") + f", opset {spec.opset}"
               + ("" if spec.simplify else ", simplify=False"))
        extra = sorted(set(meta) - common)
        meta_text = ("none" if not meta else f"task={meta['task']}, end2end={meta['end2end']}"
                     + "".join(f", {k}={meta[k]}" for k in extra))
        head = meta.get("head", "(no metadata)")
        task = meta.get("task", "(no metadata)")
        size = (folder / d["file"]).stat().st_size
        lines.append(f"| `{d['file']}` | {source} | {task} | {head} | {how} | "
                     f"{'<br>'.join(shape_text(o) for o in d['outputs'])} | {meta_text} | {size:,} |")
    total = sum((folder / d["file"]).stat().st_size for d in described)
    lines += ["", f"Total: {total:,} bytes in {len(described)} files."]
    if not trainings:
        return "\n".join(lines)
    lines += ["", f"Trainings ({EPOCHS} epochs each; the time on the machine that made them, {os.cpu_count()} CPUs; "
              "mAP50 from Ultralytics' validation of the last epoch on the demo val split, PyTorch, imgsz "
              f"{TRAIN['imgsz']}: B boxes, rotated for OBB; M masks; P keypoints):", "",
              "| Files | Trained on | Training (s) | mAP50 |", "|---|---|---|---|"]
    for training in trainings:
        files = [spec.file for spec in all_specs if spec.weights == training.weights]
        files += [file for file, source in stripped.items() if source in files]
        scores = ", ".join(f"{part} {value:.3f}" for part, value in training.map50.items())
        lines.append(f"| {', '.join(f'`{f}`' for f in files)} | {training.data} | {training.train_s:.0f} | {scores} |")
    return "\n".join(lines)


def write_table(readme: Path, text: str) -> None:
    content = readme.read_text()
    if TABLE_START not in content or TABLE_END not in content:
        raise SystemExit(f"{readme}: the markers {TABLE_START!r} and {TABLE_END!r} are missing; add them "
                         "where the table goes")
    before, rest = content.split(TABLE_START, 1)
    after = rest.split(TABLE_END, 1)[1]
    readme.write_text(f"{before}{TABLE_START}\n{text}\n{TABLE_END}{after}")


def train_and_export(specs: tuple[Spec, ...], folder: Path, work: Path, args) -> list[Training]:
    """Train each weights once on its task's demo data and export every spec from it into `folder`."""
    data = {task: demo_data(task, work, args.ort_python, args.quantlab)
            for task in dict.fromkeys(spec.task for spec in specs)}
    trained: dict[str, tuple[Path, Training]] = {}
    for spec in specs:
        if spec.weights not in trained:
            data_yaml = data[spec.task]
            if spec.drops_visibility:
                data_yaml = without_visibility(data_yaml, work / "data" / spec.weights)
            trained[spec.weights] = train(spec, data_yaml, work)
            print(trained[spec.weights][1], flush=True)
        weights, training = trained[spec.weights]
        from ultralytics import YOLO

        shutil.copyfile(export(spec, YOLO(str(weights)), training.data), folder / spec.file)
    return [training for _, training in trained.values()]


def export_from_twins(specs: tuple[Spec, ...], folder: Path, work: Path) -> list[Training]:
    """Export every spec into `folder` with its twin's weights, after checking that the rebuilt model
    re-exports the twin itself with the same outputs. Nothing is trained: no Training to report."""
    twins = {spec.file: spec for spec in SPECS}
    checked = set()
    with contextlib.chdir(work):  # a model built from a yaml is exported into the current folder, by the yaml's name
        for spec in specs:
            data = f"demo-data --task {spec.task}"
            if spec.twin not in checked:
                again = export(twins[spec.twin], rebuilt(spec, work), data)
                if not same_outputs(again, MODELS_DIR / spec.twin):
                    raise SystemExit(f"{spec.twin}: the model rebuilt from its weights exports other outputs; "
                                     "its yaml or scale in SPECS no longer matches the file")
                checked.add(spec.twin)
            shutil.copyfile(export(spec, rebuilt(spec, work), data), folder / spec.file)
    return []


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ort-python", type=Path, default=REPO / ".venv" / "bin" / "python",
                        help="a Python with the project's onnxruntime, to run and describe every file")
    parser.add_argument("--quantlab", type=Path, default=REPO, metavar="SOURCE",
                        help="the quantlab source tree whose `demo-data --task` (run with --ort-python) writes the "
                             "training data (default: this repository)")
    parser.add_argument("--set", choices=SETS, default="families", dest="chosen",
                        help="families: one file per YOLO family and export kind (tests/data/models); dynamic: "
                             "dynamic=True exports per task x opset x onnxslim with static twins (its dynamic/ folder)")
    parser.add_argument("--describe", nargs="+", metavar="ONNX", help=argparse.SUPPRESS)  # run by --ort-python
    args = parser.parse_args()
    if args.describe:
        print(json.dumps(describe(args.describe)))
        return
    if os.environ.get("PYTHONHASHSEED") != str(SEED):  # the dynamic export's symbolic shapes follow set order
        os.execve(sys.executable, [sys.executable, *sys.argv], {**os.environ, "PYTHONHASHSEED": str(SEED)})
    if not args.ort_python.exists():
        raise SystemExit(f"{args.ort_python}: no such Python; give --ort-python, one with onnxruntime installed")

    with tempfile.TemporaryDirectory(prefix="make-test-models-") as tmp:
        work = Path(tmp)
        # before the first ultralytics import: no network, no pip, no settings written outside `work`
        os.environ.update(YOLO_OFFLINE="1", YOLO_AUTOINSTALL="false", YOLO_CONFIG_DIR=str(work / "settings"))
        import onnxslim
        import torch
        import ultralytics
        from ultralytics.utils import SETTINGS

        SETTINGS.update(sync=False, datasets_dir=str(work / "datasets"), runs_dir=str(work / "runs"))
        specs, stripped, folder = SETS[args.chosen]
        folder.mkdir(parents=True, exist_ok=True)
        if args.chosen == "dynamic":
            trainings = export_from_twins(specs, folder, work)
        else:
            trainings = train_and_export(specs, folder, work, args)
        for file, source in stripped.items():
            model = onnx.load(folder / source)
            del model.metadata_props[:]
            onnx.save(model, folder / file)
        versions = {"ultralytics": ultralytics.__version__, "torch": torch.__version__,
                    "onnx": onnx.__version__, "onnxslim": onnxslim.__version__}

    files = [str(folder / spec.file) for spec in specs] + [str(folder / f) for f in stripped]
    described = json.loads(subprocess.run([str(args.ort_python), __file__, "--describe", *files],
                                          check=True, stdout=subprocess.PIPE, text=True).stdout)
    text = table(described, trainings, versions, args.chosen)
    write_table(folder / "README.md", text)
    print(text)


if __name__ == "__main__":
    main()
