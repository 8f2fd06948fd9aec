"""tools/gpu_table.py, the GPU table's script, run on the CPU provider: each precision built, timed and scored."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_the_gpu_table_times_and_scores_each_precision_on_the_provider(tmp_path):
    result = subprocess.run([sys.executable, str(ROOT / "tools" / "gpu_table.py"), "--runs", "3", "--warmup", "1",
                             "--out", str(tmp_path)], capture_output=True, text=True, timeout=900, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    table = json.loads((tmp_path / "table.json").read_text())
    rows = {r["precision"]: r for r in table["rows"]}
    assert list(rows) == ["fp32", "fp16", "int8"] and all(r["batch"] == 1 for r in rows.values())
    assert rows["fp32"]["ratio"] == 1.0 and rows["fp32"]["cuda_graph"] is None
    assert all(r["ratio"] == pytest.approx(rows["fp32"]["model_only_ms"] / r["model_only_ms"]) for r in rows.values())
    assert abs(rows["fp16"]["map50_95"] - rows["fp32"]["map50_95"]) <= 0.005 < rows["fp32"]["map50_95"]
    assert table["facts"]["providers"] == ["CPUExecutionProvider"] and "--runs 3" in table["facts"]["command"]
    markdown = (tmp_path / "table.md").read_text()
    assert "| precision | batch | model-only ms | end-to-end ms | x FP32 | images/s | mAP50-95 |" in markdown
    assert "| fp16 | 1 |" in markdown and "onnxruntime" in markdown
