"""bench/gpu.py cannot rot while no GPU is at hand: its rehearsal runs the same code on the CPU."""

import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "bench"))

from gpu import BoundaryEvery, targets  # noqa: E402


GREEDY = ("plain", "cb", "cb_graphs", "engine", "steered", "steered_compiled", "engine_compiled", "collect",
          "collect_compiled")


def test_the_check_rehearses_every_part_on_the_cpu_and_leaves_its_figures(tmp_path):
    """`bench/gpu_check.sh` as a GPU machine would run it, on the CPU at a tiny shape: every part
    finishes inside its limit and leaves its files; the table holds every method of every part."""
    env = {**os.environ, "REHEARSE": "1", "OUT": str(tmp_path), "PY": sys.executable, "SCALE": "4"}
    proc = subprocess.run(["bash", "bench/gpu_check.sh"], cwd=ROOT, capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    parts = (tmp_path / "parts.txt").read_text().splitlines()
    assert [line.split(":")[0] for line in parts] == ["correct", "greedy", "long", "sampled", "ragged"]
    checks = json.loads((tmp_path / "correctness.json").read_text())
    assert len(checks) == 2 * 4 and all(c["ok"] for c in checks)  # kinds x (dtype, compiled), one arch here
    assert all(c["compared"] == 5 and not c["parted_at"] for c in checks if c["dtype"] == "float32")
    result = json.loads((tmp_path / "gpu_rehearsal.json").read_text())
    rows = [(r["setting"], r["method"], r["batch"]) for r in result["rows"]]
    assert rows == [("greedy", m, b) for b in (4, 1) for m in GREEDY] + [
        ("long", m, 4) for m in ("plain", "steered", "steered_compiled")] + [
        ("sampled", m, 4) for m in ("plain", "cb", "steered", "steered_compiled")] + [
        ("ragged", m, 4) for m in ("plain", "steered")]
    assert all(r["tokens_per_s"] > 0 and 0 < r["floor_fraction"] for r in result["rows"])
    assert all(r["compile_s"] > 0 for r in result["rows"] if r["method"].endswith("_compiled"))
    for key in ("device", "torch", "transformers", "cuda", "weight_bytes", "copy_bandwidth_GBps", "floor_step_ms",
                "kv_bytes_per_token", "long_context"):
        assert key in result
    assert result["kv_bytes_per_token"] == 2 * 2 * 2 * 16 * 4 and result["long_context"] == 256
    assert all(t["met"] is not None for t in result["targets"].values())
    table = (tmp_path / "gpu_rehearsal.txt").read_text()
    assert "of floor" in table and "target steered_compiled_vs_cb_graphs" in table
    assert table == (tmp_path / "table.txt").read_text()


def test_a_part_cut_off_keeps_the_rows_it_measured(tmp_path):
    """Rows land on disk as they are measured: the report of a results file holding only some rows
    (a part killed by its limit) names what was not measured instead of failing."""
    from gpu import read_rows, write_report

    meta = {"device": "x", "torch": "t", "transformers": "tf", "cuda": None, "shape": "rehearsal", "dtype": "float32",
            "new_tokens": 16, "boundary_every": 4, "weight_bytes": 1 << 20, "copy_bandwidth_GBps": 10.0,
            "floor_step_ms": 0.1, "kv_bytes_per_token": 512, "long_context": 256}
    rows = [{"setting": "greedy", "method": "plain", "batch": 4, "tokens_per_s": 100.0, "step_ms": 40.0,
             "floor_fraction": 0.01},
            {"setting": "greedy", "method": "cb", "batch": 4, "error": "RuntimeError: no paged attention"}]
    (tmp_path / "gpu_x.jsonl").write_text("\n".join(json.dumps(item) for item in [{"meta": meta}, *rows]) + "\n")
    assert read_rows(str(tmp_path / "gpu_x.jsonl")) == (meta, rows)
    table = write_report(str(tmp_path / "gpu_x"))
    assert "greedy   cb                    4 not measured: RuntimeError: no paged attention" in table
    assert "target steered_vs_cb: not measured (>= 0.9) not measured" in table


def test_targets_from_hand_made_rows():
    rows = [{"setting": s, "method": m, "batch": b, "tokens_per_s": v, "floor_fraction": f}
            for s, m, b, v, f in [
                ("greedy", "plain", 1, 100.0, 0.2), ("greedy", "steered", 1, 96.0, 0.2),
                ("greedy", "collect", 1, 80.0, 0.2), ("greedy", "engine", 1, 100.0, 0.2),
                ("greedy", "plain", 64, 4000.0, 0.2), ("greedy", "steered", 64, 3900.0, 0.2),
                ("greedy", "collect", 64, 3600.0, 0.2), ("greedy", "engine", 64, 4000.0, 0.2),
                ("greedy", "cb", 64, 4500.0, 0.2), ("greedy", "cb_graphs", 64, 9000.0, 0.5),
                ("greedy", "steered_compiled", 64, 7200.0, 0.35), ("greedy", "engine_compiled", 64, 7300.0, 0.36),
                ("sampled", "plain", 64, 3000.0, 0.2), ("sampled", "steered", 64, 2800.0, 0.2),
                ("ragged", "plain", 64, 1000.0, 0.2), ("ragged", "steered", 64, 1300.0, 0.2),
                ("long", "plain", 16, 200.0, 0.2), ("long", "steered", 16, 200.0, 0.2)]]
    got = targets(rows + [{"setting": "greedy", "method": "cb", "batch": 1, "error": "no paged attention"}])
    assert got["steered_vs_plain"] == {"ratios": {1: 0.96, 64: 0.975}, "target": 0.95, "met": True}
    assert got["collect_vs_plain"]["ratios"] == {1: 0.8, 64: 0.9} and got["collect_vs_plain"]["met"] is False
    assert got["steered_vs_engine"]["ratios"] == {1: 0.96, 64: 0.975} and got["steered_vs_engine"]["met"] is True
    assert got["steered_compiled_vs_engine_compiled"]["ratios"] == {1: None, 64: pytest.approx(7200 / 7300)}
    assert got["steered_compiled_vs_engine_compiled"]["met"] is True
    assert got["steered_scaling"]["ratio"] == pytest.approx(3900 / 96) and got["steered_scaling"]["met"] is True
    assert got["steered_vs_cb"] == {"ratio": pytest.approx(3900 / 4500), "target": 0.9, "met": False, "batch": 64}
    assert got["steered_compiled_vs_cb_graphs"]["ratio"] == 0.8 and got["steered_compiled_vs_cb_graphs"]["met"] is False
    assert got["steered_compiled_floor_share"] == {"ratio": 0.35, "batch": 64, "target": 0.3, "met": True}
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
