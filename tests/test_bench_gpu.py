"""bench/gpu.py cannot rot while no GPU is at hand: its rehearsal runs the same code on the CPU."""

import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "bench"))

from gpu import BoundaryEvery, targets  # noqa: E402


def test_rehearsal_runs_every_method_and_writes_table_and_json(tmp_path):
    proc = subprocess.run([sys.executable, "bench/gpu.py", "--rehearse", "--out", str(tmp_path)], cwd=ROOT,
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads((tmp_path / "gpu_rehearsal.json").read_text())
    assert [(r["method"], r["batch"]) for r in result["rows"]] == [
        (m, b) for b in (1, 4) for m in ("plain", "steered", "collect")]
    assert all(r["tokens_per_s"] > 0 and 0 < r["floor_fraction"] for r in result["rows"])
    for key in ("device", "torch", "transformers", "cuda", "weight_bytes", "copy_bandwidth_GBps", "floor_step_ms"):
        assert key in result
    assert set(result["targets"]) == {"steered_vs_plain", "collect_vs_plain", "steered_scaling"}
    table = (tmp_path / "gpu_rehearsal.txt").read_text()
    assert "of floor" in table and "target steered_scaling" in table and table in proc.stdout


def test_targets_from_hand_made_rows():
    rows = [{"method": m, "batch": b, "tokens_per_s": v} for m, b, v in [
        ("plain", 1, 100.0), ("steered", 1, 96.0), ("collect", 1, 80.0),
        ("plain", 64, 4000.0), ("steered", 64, 3900.0), ("collect", 64, 3600.0)]]
    got = targets(rows)
    assert got["steered_vs_plain"] == {"ratios": {1: 0.96, 64: 0.975}, "target": 0.95, "met": True}
    assert got["collect_vs_plain"]["ratios"] == {1: 0.8, 64: 0.9} and got["collect_vs_plain"]["met"] is False
    assert got["steered_scaling"]["ratio"] == pytest.approx(3900 / 96) and got["steered_scaling"]["met"] is True


def test_boundary_is_forced_every_kth_step():
    import torch

    force = BoundaryEvery(token=3, every=4)
    outs = [force(None, torch.zeros(2, 8)) for _ in range(8)]
    forced = [i for i, scores in enumerate(outs) if torch.isinf(scores).any()]
    assert forced == [3, 7] and all(int(outs[i].argmax(-1)[1]) == 3 for i in forced)
