#!/usr/bin/env python
"""Time and peak memory of both analysis scripts on a synthetic calibration set the size of the
paper's (default: 500 examples x 100 steps x 29 layers x 1536 dims, fp16 on disk, ~4.5 GB).
Each script runs as its own process; peak memory is that process's maximum resident set.
  python bench/analysis.py [--records 500] [--steps 100] [--layers 29] [--dim 1536] [--dir DIR] [--keep]
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

import torch
from tqdm import tqdm

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def write_set(folder: str, records: int, steps: int, layers: int, dim: int) -> tuple[str, str]:
    """Records with random confidences and hidden files of random fp16 rows (one layer weakly
    encodes confidence so the scores are not all zero)."""
    hidden_dir = os.path.join(folder, "hidden_states")
    os.makedirs(hidden_dir, exist_ok=True)
    jsonl = os.path.join(folder, "origin_temp0.0_maxlen16384.merged.jsonl")
    gen = torch.Generator().manual_seed(0)
    direction = torch.randn(dim, generator=gen)
    with open(jsonl, "w") as handle:
        for idx in tqdm(range(records), desc="writing synthetic set", unit="file"):
            conf = torch.rand(steps + 1, generator=gen) * 0.6 + 0.4
            texts = ["Wait, let me check." if i % 7 == 3 else "Compute the next term." for i in range(steps + 1)]
            handle.write(json.dumps({"idx": idx, "question": f"q{idx}", "generated_responses": ["\n\n".join(texts)],
                                     "gold_answer": "0", "sentence_confidences": conf.tolist(), "step_texts": texts}) + "\n")
            rows = torch.randn(layers, steps, dim, generator=gen)
            rows[layers * 2 // 3] += conf[1:, None] * direction
            torch.save({layer: {0: {"step": rows[layer].half().clone()}} for layer in range(layers)},
                       os.path.join(hidden_dir, f"hidden_{idx}.pt"))
    return jsonl, hidden_dir


def timed(argv: list[str]) -> tuple[float, float, str]:
    """Wall seconds, peak RSS in GiB of this one child (os.wait4), and its last stdout line."""
    start = time.perf_counter()
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen([sys.executable, *argv], cwd=ROOT, stdout=out, stderr=err, text=True)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        seconds = time.perf_counter() - start
        out.seek(0)
        err.seek(0)
        if proc.returncode != 0:
            raise SystemExit(f"{argv[0]} failed:\n{err.read()[-2000:]}")
        return seconds, usage.ru_maxrss / 2**20, out.read().strip().splitlines()[-1]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=500)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--layers", type=int, default=29)
    parser.add_argument("--dim", type=int, default=1536)
    parser.add_argument("--dir", default=None, help="where the synthetic set goes (default: a temporary folder)")
    parser.add_argument("--keep", action="store_true", help="keep the synthetic set afterwards")
    args = parser.parse_args()
    folder = args.dir or tempfile.mkdtemp(prefix="rebalance_bench_")
    try:
        jsonl = os.path.join(folder, "origin_temp0.0_maxlen16384.merged.jsonl")
        hidden_dir = os.path.join(folder, "hidden_states")
        if not os.path.isfile(jsonl):
            jsonl, hidden_dir = write_set(folder, args.records, args.steps, args.layers, args.dim)
        on_disk = sum(e.stat().st_size for e in os.scandir(hidden_dir)) / 2**30
        print(f"set: {args.records} examples x {args.steps} steps x {args.layers} layers x {args.dim} dims, "
              f"fp16, {on_disk:.2f} GiB on disk; one layer in fp32 is "
              f"{args.records * args.steps * args.dim * 4 / 2**30:.2f} GiB")
        ridge_s, ridge_gib, best = timed(["hidden_config_ridge.py", "--jsonl_path", jsonl, "--hidden_dir", hidden_dir,
                                          "--tmp_dir", folder])
        vec = os.path.join(folder, f"steer_vector_layer{best}_conf_mixed.pt")
        auto_s, auto_gib, _ = timed(["hidden_analysis_auto.py", "--jsonl_path", jsonl, "--hidden_dir", hidden_dir,
                                     "--layer_id", best, "--save_path", vec])
        print(f"| script | wall s | peak RSS GiB |\n|---|---|---|\n"
              f"| hidden_config_ridge.py (all {args.layers} layers, best {best}) | {ridge_s:.1f} | {ridge_gib:.2f} |\n"
              f"| hidden_analysis_auto.py (layer {best}) | {auto_s:.1f} | {auto_gib:.2f} |")
    finally:
        if not args.keep and args.dir is None:
            shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
