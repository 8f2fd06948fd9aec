"""Train, prune, fine-tune and export the demo YOLOv8n that quantlab ships.

Run once, by hand, in a separate environment (never in CI or the test suite):

    python -m venv .venv-train && .venv-train/bin/pip install -e '.[train]'
    .venv-train/bin/python tools/train_demo_model.py --work /tmp/quantlab-train

Stages are cached in --work (delete a stage's folder to redo it): dataset, base
training, pruning + fine-tuning, ONNX export, Ultralytics' own val of the ONNX.
The ONNX and its model card are then copied into quantlab/demo/.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import platform
import shutil
import sys
import time
from pathlib import Path

import torch
import torch.nn as nn
import torch_pruning as tp
import ultralytics
from ultralytics import YOLO
from ultralytics.models.yolo.detect import DetectionTrainer
from ultralytics.nn.modules import C2f, Conv, Detect

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from quantlab.demo.shapes import DEFAULT_SEED, SPLIT_SIZES, write_dataset  # noqa: E402

DEMO_DIR = REPO / "quantlab" / "demo"
MODEL_NAME = "yolov8n_shapes_pruned.onnx"
INPUT_HW = (192, 320)

SETTINGS = {
    "seed": DEFAULT_SEED,
    "imgsz": 320,
    "batch": 16,
    "base_epochs": 22,
    "finetune_epochs": 10,
    "pruning_ratio": 0.2,
    "importance": "L1 magnitude (torch-pruning MagnitudeImportance p=1)",
    "opset": 17,
    "input_hw": list(INPUT_HW),
}


class C2fSplit(nn.Module):
    """C2f whose first 1x1 conv is two convs (one per half), so torch-pruning can follow the split."""

    def __init__(self, c2f: C2f):
        super().__init__()
        self.c = c2f.c
        conv = c2f.cv1.conv
        self.cv0 = Conv(conv.in_channels, self.c, 1, 1)
        self.cv1 = Conv(conv.in_channels, self.c, 1, 1)
        for half, target in ((slice(0, self.c), self.cv0), (slice(self.c, 2 * self.c), self.cv1)):
            target.conv.weight.data = conv.weight.data[half].clone()
            bn, src = target.bn, c2f.cv1.bn
            bn.weight.data = src.weight.data[half].clone()
            bn.bias.data = src.bias.data[half].clone()
            bn.running_mean.data = src.running_mean.data[half].clone()
            bn.running_var.data = src.running_var.data[half].clone()
            bn.eps, bn.momentum = src.eps, src.momentum
        self.cv2 = c2f.cv2
        self.m = c2f.m
        for attr in ("f", "i", "type", "np"):  # routing attributes Ultralytics' forward reads
            if hasattr(c2f, attr):
                setattr(self, attr, getattr(c2f, attr))

    def forward(self, x):
        y = [self.cv0(x), self.cv1(x)]
        y.extend(m(y[-1]) for m in self.m)
        return self.cv2(torch.cat(y, 1))


def split_c2f_blocks(module: nn.Module) -> None:
    for name, child in module.named_children():
        if isinstance(child, C2f):
            setattr(module, name, C2fSplit(child).eval())
        else:
            split_c2f_blocks(child)


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def prune(detection_model: nn.Module) -> nn.Module:
    """Remove the lowest-L1 channels everywhere but the Detect head."""
    model = detection_model.float().eval()
    split_c2f_blocks(model)
    head = [m for m in model.modules() if isinstance(m, Detect)]
    for m in head:
        m.export = True  # a plain tensor output for tracing
    for p in model.parameters():
        p.requires_grad_(True)
    pruner = tp.pruner.MagnitudePruner(
        model,
        torch.randn(1, 3, SETTINGS["imgsz"], SETTINGS["imgsz"]),
        importance=tp.importance.MagnitudeImportance(p=1),
        pruning_ratio=SETTINGS["pruning_ratio"],
        ignored_layers=head,
        iterative_steps=1,
    )
    pruner.step()
    for m in head:
        m.export = False
    return model


class PrunedTrainer(DetectionTrainer):
    """Ultralytics' trainer, but it trains the given pruned module instead of rebuilding one from yaml."""

    pruned_model: nn.Module | None = None

    def get_model(self, cfg=None, weights=None, verbose=True):
        return PrunedTrainer.pruned_model


def train_args(data_yaml: Path, work: Path, name: str, epochs: int) -> dict:
    return dict(
        data=str(data_yaml), epochs=epochs, imgsz=SETTINGS["imgsz"], batch=SETTINGS["batch"],
        workers=2, device="cpu", seed=SETTINGS["seed"], deterministic=True, amp=False,
        plots=False, val=False, project=str(work), name=name, exist_ok=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, default=Path("/tmp/quantlab-train"))
    args = parser.parse_args()
    work = args.work.resolve()
    started = time.time()

    data_yaml = work / "data" / "data.yaml"
    if not data_yaml.exists():
        write_dataset(work / "data", seed=SETTINGS["seed"])
    print(f"dataset: {data_yaml}", flush=True)

    minutes_file = work / "stage_minutes.json"  # kept across cached re-runs, for the card
    minutes = json.loads(minutes_file.read_text()) if minutes_file.exists() else {}

    base_pt = work / "base" / "weights" / "last.pt"
    if not base_pt.exists():
        stage_started = time.time()
        YOLO("yolov8n.yaml").train(**train_args(data_yaml, work, "base", SETTINGS["base_epochs"]))
        minutes["base_training"] = round((time.time() - stage_started) / 60, 1)
        minutes_file.write_text(json.dumps(minutes))
    base = YOLO(str(base_pt))
    params_base = count_params(base.model)

    tuned_pt = work / "pruned" / "weights" / "last.pt"
    pruned = prune(base.model)
    params_pruned = count_params(pruned)
    print(f"parameters: {params_base} -> {params_pruned}", flush=True)
    if not tuned_pt.exists():
        stage_started = time.time()
        PrunedTrainer.pruned_model = pruned
        base.train(trainer=PrunedTrainer, **train_args(data_yaml, work, "pruned", SETTINGS["finetune_epochs"]))
        minutes["pruned_finetuning"] = round((time.time() - stage_started) / 60, 1)
        minutes_file.write_text(json.dumps(minutes))
    tuned = YOLO(str(tuned_pt))

    onnx_path = Path(tuned.export(format="onnx", imgsz=list(INPUT_HW), opset=SETTINGS["opset"],
                                  simplify=True, dynamic=False, batch=1))
    metrics = YOLO(str(onnx_path), task="detect").val(
        data=str(data_yaml), imgsz=list(INPUT_HW), batch=1, rect=False, plots=False, device="cpu")

    shipped = DEMO_DIR / MODEL_NAME
    shutil.copyfile(onnx_path, shipped)
    blob = shipped.read_bytes()
    card = {
        "model": MODEL_NAME,
        "architecture": "YOLOv8n from yolov8n.yaml (no pretrained weights), pruned, fine-tuned",
        "classes": list(tuned.names.values()),
        "input": {"name": "images", "shape": [1, 3, *INPUT_HW], "dtype": "float32"},
        "output_layout": "(1, 4 + nc, N): cx cy w h in input pixels, then class probabilities",
        "dataset": {"generator": "quantlab.demo.shapes.write_dataset", "seed": SETTINGS["seed"],
                    "splits": SPLIT_SIZES},
        "settings": SETTINGS,
        "parameters": {"before_pruning": params_base, "after_pruning": params_pruned,
                       "removed_fraction": round(1 - params_pruned / params_base, 4)},
        "ultralytics_val": {"map50": round(float(metrics.box.map50), 4),
                            "map50_95": round(float(metrics.box.map), 4),
                            "call": "YOLO(onnx, task='detect').val(data=data.yaml, imgsz=[192, 320], "
                                    "batch=1, rect=False)", "split": "val"},
        "size_bytes": len(blob),
        "sha256": hashlib.sha256(blob).hexdigest(),
        "versions": {"ultralytics": ultralytics.__version__, "torch": torch.__version__,
                     "torch_pruning": tp.__version__, "python": platform.python_version()},
        "minutes": {**minutes, "export_and_val_this_run": round((time.time() - started) / 60, 1)},
        "machine": "2-core x86-64 CPU, no GPU",
        "reproduce": "python tools/train_demo_model.py --work /tmp/quantlab-train  (in a venv with '.[train]')",
    }
    (DEMO_DIR / "model_card.json").write_text(json.dumps(card, indent=2) + "\n")
    print(json.dumps(card, indent=2))


if __name__ == "__main__":
    main()
