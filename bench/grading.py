#!/usr/bin/env python
"""Grading time for MATH-500 with long responses: 500 records of about 10k tokens each (reasoning
filler, `</think>`, then a boxed answer in a form that needs math-verify for about half of them).
Needs Math_Math500/test.jsonl: ../shared/data, or ./Data after `make data`.
  python bench/grading.py [--data_dir ../shared/data] [--tokens 10000] [--model embedded]
"""

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STEP = ("Let me compute the next term carefully: 12 * 7 = 84, and 84 + 16 = 100.\n\n"
        "Wait, maybe I should double check the previous step, since \\frac{3}{4} of 100 is 75.\n\n")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    shared = os.path.join(ROOT, "..", "shared", "data")
    parser.add_argument("--data_dir", default=shared if os.path.isdir(shared) else os.path.join(ROOT, "Data"),
                        help="holds Math_Math500/test.jsonl (default: ../shared/data, else ./Data)")
    parser.add_argument("--tokens", type=int, default=10000, help="approximate tokens per response")
    parser.add_argument("--model", default="embedded", help="tokenizer used to count tokens")
    args = parser.parse_args()
    with open(os.path.join(args.data_dir, "Math_Math500", "test.jsonl")) as handle:
        golds = [json.loads(line)["answer"] for line in handle if line.strip()]
    rng = random.Random(0)
    filler = STEP * (args.tokens // 66)  # the step text is about 66 tokens (SmolLM2)
    folder = tempfile.mkdtemp(prefix="rebalance_grading_")
    path = os.path.join(folder, "steer_temp0.6_maxlen16384.merged.jsonl")
    with open(path, "w") as handle:
        for idx, gold in enumerate(golds):
            answer = rng.choice([gold, f"\\left({gold}\\right)", "0", gold.replace("\\frac", "\\dfrac")])
            handle.write(json.dumps({"idx": idx, "generated_responses": [
                filler + "</think>\n\nSo the answer is $\\boxed{" + answer + "}$."]}) + "\n")
    try:
        time_check(path, args)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def time_check(path: str, args) -> None:
    """Run check.py on the file as a user would and print its table and the wall time."""
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "check.py", "--model_name_or_path", args.model, "--data_name",
                           "Math_Math500", "--data_dir", args.data_dir, "--generation_path", path],
                          cwd=ROOT, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if proc.returncode:
        raise SystemExit(proc.stderr[-2000:])
    with open(path[: -len(".jsonl")] + ".metrics.json") as handle:
        metrics = json.load(handle)
    print(proc.stdout)
    print(f"graded {metrics['n']} MATH-500 records of {metrics['avg_tokens']:.0f} tokens on average "
          f"in {seconds:.1f} s wall ({os.cpu_count()} CPUs), accuracy {metrics['accuracy']:.1f}%")


if __name__ == "__main__":
    main()
