"""Session memory's arithmetic, on child results given here: growth is peak minus the child's own baseline,
the reported figure the median growth, the baseline the median baseline, the spread (max - min) / median.
The children are replaced (their measurement is tested in test_memory.py); only the statistics are checked."""

import json
import subprocess

import pytest

from quantlab import memory
from quantlab.memory import measure_memory


def _children(monkeypatch, results):
    """Each child run returns the next {'baseline', 'peak'} of `results`."""
    pending = list(results)
    monkeypatch.setattr(memory, "can_measure", lambda: True)
    monkeypatch.setattr(memory.subprocess, "run", lambda args, **kwargs: subprocess.CompletedProcess(
        args, 0, stdout=json.dumps(pending.pop(0)), stderr=""))


@pytest.mark.parametrize(
    ("children", "session", "baseline", "spread"),
    [
        # growths 100, 300, 200 over baselines 50, 70, 60: median 200 (mean also 200), spread 200 / 200
        ([(50, 150), (70, 370), (60, 260)], 200, 60, 1.0),
        # growths 10, 10, 40: the median 10 ignores the outlier (a mean would say 20); spread 30 / 10
        ([(100, 110), (100, 110), (300, 340)], 10, 100, 3.0),
        # baselines 10, 500, 20 (one child started large): the median baseline is 20, not the mean or the min
        ([(10, 60), (500, 550), (20, 70)], 50, 20, 0.0),
    ],
    ids=["plain", "outlier-growth", "outlier-baseline"],
)
def test_session_memory_is_the_median_growth_over_each_childs_own_baseline(monkeypatch, children, session, baseline,
                                                                           spread):
    _children(monkeypatch, [{"baseline": b, "peak": p} for b, p in children])
    use = measure_memory("model.onnx", (192, 320), samples=3)
    assert (use.session_bytes, use.baseline_bytes, use.samples) == (session, baseline, 3)
    assert use.spread == pytest.approx(spread)
    assert use.as_dict()["session_bytes"] == session and use.as_dict()["baseline_bytes"] == baseline
