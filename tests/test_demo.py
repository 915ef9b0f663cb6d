"""The demo script's stages end to end on a tiny random model (the same script `make demo`
runs on SmolLM2): every expected file exists and both runs' metrics parse with n = held-out size."""

import csv
import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_demo_stages_on_a_tiny_model(tiny_dirs, tmp_path):
    out, data = tmp_path / "out", tmp_path / "Data"
    env = dict(os.environ, PY=sys.executable, MODEL=tiny_dirs["qwen2"], OUT=str(out), DATA=str(data),
               SEEN="10", HELDOUT="4", MAXLEN="48", WORKERS="1", BATCH="5", SWEEP="-0.5")
    proc = subprocess.run(["bash", "scripts/demo.sh"], cwd=ROOT, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    seen = out / "runs" / "qwen2" / "Organism_Seen"
    held = out / "runs" / "qwen2" / "Organism_Heldout"
    layer = int(proc.stdout.split("best layer: ")[1].split()[0])
    vector = out / "vectors" / "qwen2" / f"steer_vector_layer{layer}_conf_mixed.pt"
    expected = [
        data / "Organism_Seen" / "test.jsonl", data / "Organism_Heldout" / "test.jsonl",
        seen / "origin_temp0.7_maxlen48.merged.jsonl", seen / "hidden_0.pt",
        seen / "origin_temp0.7_maxlen48.merged.ridge_r2.png", seen / "origin_temp0.7_maxlen48.merged.ridge_r2.csv",
        vector, vector.with_suffix(".json"),
        held / "baseline_temp0.0_maxlen48.merged.jsonl", held / "steer_temp0.0_maxlen48.merged.jsonl",
        held / "control_surface.png", held / "steer_temp0.0_maxlen48.merged.lengths.png",
        held / "steer_temp0.0_maxlen48.merged.graded.jsonl", held / "baseline_temp0.0_maxlen48.merged.graded.jsonl",
        held / "static-0.5_temp0.0_maxlen48.merged.metrics.json", held / "sweep.png", held / "sweep.md",
        out / "runs" / "qwen2" / "report.md", out / "runs" / "qwen2" / "report.csv", out / "runs" / "qwen2" / "report.png",
    ]
    assert [str(p) for p in expected if not p.is_file()] == []
    with open(seen / "origin_temp0.7_maxlen48.merged.ridge_r2.csv") as handle:  # the layer the steer criterion picks
        rows = list(csv.DictReader(handle))
    scored = [r for r in rows if r["steer_score"] != "nan"]
    assert layer == int(max(scored, key=lambda r: (float(r["steer_score"]), -int(r["layer"])))["layer"])
    for run in ("steer", "baseline"):
        with open(held / f"{run}_temp0.0_maxlen48.merged.metrics.json") as handle:
            metrics = json.load(handle)
        assert metrics["n"] == 4 and metrics["missing"] == [] and 0 <= metrics["accuracy"] <= 100
    assert "delta" in proc.stdout and "length distributions:" in proc.stdout
    assert "| baseline | " in proc.stdout and "| static -0.5 | " in proc.stdout  # dynamic vs static table
    assert "| Organism_Heldout | 4/4 |" in proc.stdout  # the demo ends with the report
