"""Make the tiny random-weight Ultralytics ONNX exports in tests/data/models/ (the YOLO task test data).

Run by hand in a throwaway venv; the test suite and CI never import ultralytics or torch:

    python3 -m venv /tmp/ulvenv && /tmp/ulvenv/bin/pip install ultralytics onnx onnxslim
    /tmp/ulvenv/bin/python tools/make_test_models.py --ort-python .venv/bin/python

Every model is built from its Ultralytics yaml (no .pt is read or downloaded), shrunk (SCALE, nc 4 or 1,
REG_MAX) and given seeded random weights. Ultralytics' own init loses the signal on the way to the head:
every output is a constant (boxes of one size, scores 2e-4..3e-3, nothing over nms=True's 0.25). So
BatchNorm statistics are re-estimated on seeded noise images and each prediction conv is rescaled to
the mean and spread in HEAD_TARGETS, so that boxes, scores and task channels vary across anchors.
Then each is exported to ONNX (opset 17, onnxslim, batch 1, 96x160), two copies lose their metadata,
the project venv's onnxruntime (--ort-python) runs every file on zeros, and the table in
tests/data/models/README.md is rewritten from what it reports.

Ultralytics runs offline (YOLO_OFFLINE, no auto-install, settings in a temporary folder, sync off); it
warns that onnxruntime is missing from this venv, and slims the graphs without it.
Seeded (torch, and Python's hash seed, on which onnxslim's symbolic shapes in the dynamic export depend),
so a rerun with the same package versions gives the same graphs and weights; files are not byte-identical
across runs (Ultralytics writes the export date into the metadata) nor promised identical across
torch, ultralytics or onnxslim versions.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
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
# DFL bins where the yaml does not set them (v10Detect always has 16, yolo26 has 1). At 16 the box branch
# alone is ~0.5 MB per model; 5 is the smallest that keeps the DFL's (4 sides, bins) axes apart.
REG_MAX = 5
SHAPES = ("circle", "rectangle", "triangle", "star")  # quantlab's demo shapes dataset
NOISE_IMAGES = 8
# (mean, std) given to each prediction conv's outputs: DFL logits, or the box sides in strides when
# reg_max is 1; class logits (mostly low scores, some over 0.5); mask coefficients, keypoints, angle.
HEAD_TARGETS = {"box": (0.0, 2.0), "box_sides": (2.0, 0.5), "cls": (-4.0, 2.0), "extra": (0.0, 1.0)}
EXPORT = dict(format="onnx", imgsz=list(INPUT_HW), opset=17, simplify=True, batch=1)


@dataclass(frozen=True)
class Spec:
    """One exported file: the Ultralytics model yaml it is built from and how it is exported."""

    file: str
    yaml: str
    nms: bool | None = None  # Ultralytics 8.4: None raw outputs, False the end-to-end head, True NMS in graph
    dynamic: bool = False
    kpt_shape: tuple[int, int] | None = None
    names: tuple[str, ...] = SHAPES


SPECS = (
    Spec("yolov5u.onnx", "yolov5.yaml"),  # Ultralytics 8's yolov5.yaml is the anchor-free 'u' model
    Spec("yolov8.onnx", "yolov8.yaml"),
    Spec("yolo11.onnx", "yolo11.yaml"),
    Spec("yolov10.onnx", "yolov10n.yaml"),  # the one-to-many branch, raw like yolov8
    Spec("yolo26.onnx", "yolo26.yaml"),
    Spec("yolov8-seg.onnx", "yolov8-seg.yaml"),
    Spec("yolo11-seg.onnx", "yolo11-seg.yaml"),
    Spec("yolov8-pose.onnx", "yolov8-pose.yaml", names=("person",)),
    Spec("yolov8-pose-5x2.onnx", "yolov8-pose.yaml", kpt_shape=(5, 2), names=("star",)),  # 5 tips, no visibility
    Spec("yolov8-obb.onnx", "yolov8-obb.yaml"),
    Spec("yolov10.e2e.onnx", "yolov10n.yaml", nms=False),  # same weights as yolov10.onnx, one-to-one + TopK
    Spec("yolo26.e2e.onnx", "yolo26.yaml", nms=False),
    Spec("yolo26-obb.e2e.onnx", "yolo26-obb.yaml", nms=False),  # OBB26: boxes cx cy w h, raw angle
    Spec("yolov8.nms.onnx", "yolov8.yaml", nms=True),
    Spec("yolov8-seg.nms.onnx", "yolov8-seg.yaml", nms=True),
    Spec("yolov8-seg.dynamic.onnx", "yolov8-seg.yaml", dynamic=True),
)
STRIPPED = {"yolov8-seg.nometa.onnx": "yolov8-seg.onnx", "yolov8-pose.nometa.onnx": "yolov8-pose.onnx"}


def spread_activations(model, images) -> None:
    """Re-estimate BatchNorm statistics on `images`, then give each prediction conv its HEAD_TARGETS."""
    import torch

    for bn in (m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)):
        bn.reset_running_stats()
        bn.momentum = None  # a cumulative average: the one batch below sets the statistics
    model.train()
    with torch.no_grad():
        model(images)  # in training mode each BatchNorm normalises by, and records, its batch statistics
    model.eval()

    head = model.model[-1]
    convs = {name: m for name, m in head.named_modules()
             if isinstance(m, torch.nn.Conv2d) and m.bias is not None and not name.startswith("proto")}
    outputs = {}
    hooks = [conv.register_forward_hook(lambda _, __, y, name=name: outputs.setdefault(name, y))
             for name, conv in convs.items()]
    with torch.no_grad():
        model(images)
    for hook in hooks:
        hook.remove()
    for name, y in outputs.items():  # convs used only in training (Pose26's sigma) never ran
        branch = name.removeprefix("one2one_").split(".")[0]
        kind = {"cv2": "box" if head.reg_max > 1 else "box_sides", "cv3": "cls"}.get(branch, "extra")
        target_mean, target_std = HEAD_TARGETS[kind]
        mean, std = y.mean(dim=(0, 2, 3)), y.std(dim=(0, 2, 3)).clamp_min(1e-6)
        conv = convs[name]
        with torch.no_grad():
            gain = target_std / std
            conv.weight.mul_(gain.view(-1, 1, 1, 1))
            conv.bias.copy_((conv.bias - mean) * gain + target_mean)


def export(spec: Spec, work: Path) -> Path:
    """Build `spec`'s model with seeded weights and export it; returns the .onnx, written under `work`."""
    import torch
    from ultralytics import YOLO
    from ultralytics.utils import ROOT, YAML
    from ultralytics.utils.torch_utils import init_seeds

    cfg = YAML.load(next((ROOT / "cfg" / "models").rglob(spec.yaml)))
    cfg.update(nc=len(spec.names), scales={"n": SCALE})
    cfg.setdefault("reg_max", REG_MAX)
    if spec.kpt_shape:
        cfg["kpt_shape"] = list(spec.kpt_shape)
    stem = re.sub(r"^(yolov?\d+)n?", r"\1n", Path(spec.yaml).stem)  # the 'n' makes Ultralytics pick scales["n"]
    folder = work / Path(spec.file).stem
    folder.mkdir()
    cfg_path = folder / f"{stem}.yaml"
    YAML.save(cfg_path, cfg)

    init_seeds(SEED, deterministic=True)
    yolo = YOLO(str(cfg_path))
    yolo.model.names = dict(enumerate(spec.names))
    images = torch.rand(NOISE_IMAGES, 3, *INPUT_HW, generator=torch.Generator().manual_seed(SEED))
    spread_activations(yolo.model, images)
    with contextlib.chdir(folder):  # Ultralytics writes the .onnx into the working folder
        return folder / yolo.export(**EXPORT, nms=spec.nms, dynamic=spec.dynamic)


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


def table(described: list[dict], versions: dict) -> str:
    specs = {spec.file: spec for spec in SPECS}
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
        spec = specs.get(d["file"]) or specs[STRIPPED[d["file"]]]
        meta = d["metadata"]
        source = spec.yaml + (f", kpt_shape {list(spec.kpt_shape)}" if spec.kpt_shape else "")
        how = ("copy of " + STRIPPED[d["file"]] + ", metadata_props deleted" if d["file"] in STRIPPED
               else f"nms={spec.nms}" + (", dynamic=True" if spec.dynamic else ""))
        extra = sorted(set(meta) - common)
        meta_text = ("none" if not meta else f"task={meta['task']}, end2end={meta['end2end']}"
                     + "".join(f", {k}={meta[k]}" for k in extra))
        head = meta.get("head", "(no metadata)")
        task = meta.get("task", "(no metadata)")
        size = (MODELS_DIR / d["file"]).stat().st_size
        lines.append(f"| `{d['file']}` | {source} | {task} | {head} | {how} | "
                     f"{'<br>'.join(shape_text(o) for o in d['outputs'])} | {meta_text} | {size:,} |")
    total = sum((MODELS_DIR / d["file"]).stat().st_size for d in described)
    lines += ["", f"Total: {total:,} bytes in {len(described)} files."]
    return "\n".join(lines)


def write_table(readme: Path, text: str) -> None:
    content = readme.read_text()
    if TABLE_START not in content or TABLE_END not in content:
        raise SystemExit(f"{readme}: the markers {TABLE_START!r} and {TABLE_END!r} are missing; add them "
                         "where the table goes")
    before, rest = content.split(TABLE_START, 1)
    after = rest.split(TABLE_END, 1)[1]
    readme.write_text(f"{before}{TABLE_START}\n{text}\n{TABLE_END}{after}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ort-python", type=Path, default=REPO / ".venv" / "bin" / "python",
                        help="a Python with the project's onnxruntime, to run and describe every file")
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

        SETTINGS.update(sync=False)
        MODELS_DIR.mkdir(parents=True, exist_ok=True)
        for spec in SPECS:
            shutil.copyfile(export(spec, work), MODELS_DIR / spec.file)
        for file, source in STRIPPED.items():
            model = onnx.load(MODELS_DIR / source)
            del model.metadata_props[:]
            onnx.save(model, MODELS_DIR / file)
        versions = {"ultralytics": ultralytics.__version__, "torch": torch.__version__,
                    "onnx": onnx.__version__, "onnxslim": onnxslim.__version__}

    files = [str(MODELS_DIR / spec.file) for spec in SPECS] + [str(MODELS_DIR / f) for f in STRIPPED]
    described = json.loads(subprocess.run([str(args.ort_python), __file__, "--describe", *files],
                                          check=True, stdout=subprocess.PIPE, text=True).stdout)
    text = table(described, versions)
    write_table(MODELS_DIR / "README.md", text)
    print(text)


if __name__ == "__main__":
    main()
