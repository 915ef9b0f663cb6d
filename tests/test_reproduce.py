"""scripts/reproduce.sh on a tiny model and two tiny benchmarks: all stages, then none, then only
the one whose output was deleted, then a kill -9 in the middle and a rerun that completes."""

import json
import os
import shutil
import signal
import subprocess
import sys

import torch

from rebalance.calibration import generic

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCHES = ("Math_GSM8K", "Math_AIME2024")  # known names, so check.py knows their answer families


def setup_workdir(tmp_path, tiny_dir):
    work = tmp_path / "work"
    shutil.copytree(tiny_dir, work / "TinyR1")
    for bench, problems in zip(BENCHES, (["What is 2 + 3?", "What is 4 + 4?", "What is 9 - 1?"],
                                         ["Find 7 * 6.", "Find 1 + 1."])):
        (work / "Data" / bench).mkdir(parents=True)
        (work / "Data" / bench / "test.jsonl").write_text(
            "".join(json.dumps({"problem": p, "answer": "5"}) + "\n" for p in problems))
    torch.save(torch.randn(32), work / "v.pt")
    (work / "v.json").write_text(json.dumps({**generic(), "layer": 1}))
    return work


def reproduce(work, *extra, popen=False):
    argv = ["bash", os.path.join(ROOT, "scripts", "reproduce.sh"), "--model_name_or_path", "TinyR1",
            "--steer_vector_path", "v.pt", "--benchmarks", ",".join(BENCHES), "--max_generated_tokens", "8",
            "--batch_size", "2", *extra]
    env = dict(os.environ, PY=sys.executable)
    if popen:
        return subprocess.Popen(argv, cwd=work, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                                start_new_session=True)
    done = subprocess.run(argv, cwd=work, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def stages(stdout):
    return [line[3:] for line in stdout.splitlines() if line.startswith("== ") and not line.startswith("== report")]


def assert_complete(work):
    for bench in BENCHES:
        expected = len((work / "Data" / bench / "test.jsonl").read_text().splitlines())
        for base in ("baseline_temp0.7_maxlen8", "steer_temp0.7_maxlen8"):
            folder = work / "outputs" / "TinyR1" / bench
            records = [json.loads(line) for line in (folder / f"{base}.merged.jsonl").read_text().splitlines()]
            assert sorted(r["idx"] for r in records) == list(range(expected))
            assert json.loads((folder / f"{base}.merged.metrics.json").read_text())["graded"] == expected
    report = (work / "outputs" / "TinyR1" / "report.md").read_text()
    assert all(f"| {bench} | " in report for bench in BENCHES)


def test_reproduce_runs_skips_and_resumes(tiny_dirs, tmp_path):
    work = setup_workdir(tmp_path, tiny_dirs["qwen2"])
    first = reproduce(work)
    assert stages(first) == [f"{bench}: {what}" for bench in BENCHES
                             for what in ("baseline run", "grading the baseline run", "ReBalance run",
                                          "grading the ReBalance run")]
    assert "--temperature 0.7 --top_p 0.95 --seed 42" in first
    assert_complete(work)

    second = reproduce(work)
    assert stages(second) == [] and "nothing to do: every run is complete and graded" in second

    (work / "outputs" / "TinyR1" / "Math_AIME2024" / "steer_temp0.7_maxlen8.merged.jsonl").unlink()
    third = reproduce(work)
    assert stages(third) == ["Math_AIME2024: ReBalance run", "Math_AIME2024: grading the ReBalance run"]
    assert "skip Math_AIME2024 ReBalance run" not in third and "skip Math_GSM8K baseline run" in third
    assert_complete(work)

    shutil.rmtree(work / "outputs" / "TinyR1" / "Math_AIME2024")
    run = reproduce(work, popen=True)
    for line in run.stdout:  # kill the whole process group as the second benchmark's ReBalance run starts
        if line.startswith("$ python") and "Math_AIME2024" in line and "--steer_mode dynamic" in line:
            break
    os.killpg(run.pid, signal.SIGKILL)
    run.wait()
    resumed = reproduce(work)
    assert "skip Math_GSM8K ReBalance run" in resumed and "skip Math_AIME2024 baseline grading" in resumed
    assert stages(resumed) == ["Math_AIME2024: ReBalance run", "Math_AIME2024: grading the ReBalance run"]
    assert_complete(work)
