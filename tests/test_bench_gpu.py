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
    assert [(r["setting"], r["method"], r["batch"]) for r in result["rows"]] == [
        ("greedy", m, b) for b in (1, 4) for m in ("plain", "steered", "collect")] + [
        (setting, m, 4) for setting in ("sampled", "ragged", "long") for m in ("plain", "steered")]
    assert all(r["tokens_per_s"] > 0 and 0 < r["floor_fraction"] for r in result["rows"])
    for key in ("device", "torch", "transformers", "cuda", "weight_bytes", "copy_bandwidth_GBps", "floor_step_ms",
                "kv_bytes_per_token", "long_context"):
        assert key in result
    assert result["kv_bytes_per_token"] == 2 * 2 * 2 * 16 * 4 and result["long_context"] == 256
    assert set(result["targets"]) == {"steered_vs_plain", "collect_vs_plain", "steered_scaling",
                                      "sampled_steered_vs_plain", "ragged_steered_vs_plain", "long_steered_vs_plain"}
    table = (tmp_path / "gpu_rehearsal.txt").read_text()
    assert "of floor" in table and "target long_steered_vs_plain" in table and table in proc.stdout


def test_targets_from_hand_made_rows():
    rows = [{"setting": s, "method": m, "batch": b, "tokens_per_s": v} for s, m, b, v in [
        ("greedy", "plain", 1, 100.0), ("greedy", "steered", 1, 96.0), ("greedy", "collect", 1, 80.0),
        ("greedy", "plain", 64, 4000.0), ("greedy", "steered", 64, 3900.0), ("greedy", "collect", 64, 3600.0),
        ("sampled", "plain", 64, 3000.0), ("sampled", "steered", 64, 2800.0),
        ("ragged", "plain", 64, 1000.0), ("ragged", "steered", 64, 1300.0),
        ("long", "plain", 16, 200.0), ("long", "steered", 16, 200.0)]]
    got = targets(rows)
    assert got["steered_vs_plain"] == {"ratios": {1: 0.96, 64: 0.975}, "target": 0.95, "met": True}
    assert got["collect_vs_plain"]["ratios"] == {1: 0.8, 64: 0.9} and got["collect_vs_plain"]["met"] is False
    assert got["steered_scaling"]["ratio"] == pytest.approx(3900 / 96) and got["steered_scaling"]["met"] is True
    assert got["sampled_steered_vs_plain"]["ratio"] == pytest.approx(2800 / 3000)
    assert got["sampled_steered_vs_plain"]["met"] is False
    assert got["ragged_steered_vs_plain"] == {"ratio": 1.3, "batch": 64, "target": 1.2, "met": True}
    assert got["long_steered_vs_plain"] == {"ratio": 1.0, "batch": 16, "target": 1.0, "met": True}


def test_boundary_is_forced_every_kth_step():
    import torch

    force = BoundaryEvery(token=3, every=4)
    outs = [force(None, torch.zeros(2, 8)) for _ in range(8)]
    forced = [i for i, scores in enumerate(outs) if torch.isinf(scores).any()]
    assert forced == [3, 7] and all(int(outs[i].argmax(-1)[1]) == 3 for i in forced)
