#!/usr/bin/env python
"""The compiled decoding step against the eager one (`--compile`): tokens/s of the same engine, model,
prompts, batch and number of new tokens, each way; the time compiling took; and whether both ways
chose the same tokens. EOS is forbidden and a step boundary forced every 32 tokens, so every row
decodes the same length and steering works at its real rate.

  python bench/compiled.py [--model embedded] [--batches 16,48] [--new_tokens 64] [--mode steered]

Target on a 2-core CPU: compiled >= 1.1 x eager at batch 16 and 48 (the goal beyond: 1.3 x).
"""

from __future__ import annotations

import argparse
import time

import torch
from common import bench_problems
from gpu import BoundaryEvery

from rebalance.calibration import generic
from rebalance.control import ControlFunction
from rebalance.decoding.decode import engine_for
from rebalance.decoding.records import make_table
from rebalance.decoding.sampling import SuppressTokens
from rebalance.decoding.sites import num_residual_sites
from rebalance.decoding.steering import Mode, SteeringSetup, site_index
from rebalance.examples import Example
from rebalance.models import load_model


def decode(model, tokenizer, table, problems, args, compile: bool) -> tuple[float, dict, float]:
    """(seconds, {idx: tokens}, seconds spent compiling) of one run of the engine over `problems`."""
    boundary = [i for t, i in tokenizer.get_vocab().items() if t == "ĊĊ"] or [table.eos_ids[0]]
    steering = None
    if args.mode == "steered":
        vector = torch.randn(model.config.hidden_size, generator=torch.Generator().manual_seed(0)) * 0.05
        steering = SteeringSetup(vector, site_index(num_residual_sites(model), args.layer, "input"), Mode.DYNAMIC,
                                 -1.0, ControlFunction(**generic()))
    engine = engine_for(model, tokenizer, table, width=len(problems), max_new_tokens=args.new_tokens,
                        steering=steering, capture_on="cpu" if args.mode == "collect" else None,
                        processors=[SuppressTokens(table.eos_ids), BoundaryEvery(boundary[0], 32)])
    if compile:
        engine.compile()
    start = time.perf_counter()
    with engine:
        tokens = {done.example.idx: done.tokens for done in engine.run(
            Example(i, p, "", {}) for i, p in enumerate(problems))}
    return time.perf_counter() - start, tokens, engine.forward.compile_seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="embedded")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batches", default="16,48")
    parser.add_argument("--new_tokens", type=int, default=64)
    parser.add_argument("--mode", choices=("plain", "steered", "collect"), default="steered")
    parser.add_argument("--layer", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=2, help="timed runs of each way (best counts)")
    args = parser.parse_args()
    model, tokenizer = load_model(args.model, args.device)
    table = make_table(model, tokenizer)
    print(f"model {args.model}, {args.device}, {args.mode}, {args.new_tokens} new tokens a row, "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(f"{'batch':>5} {'eager tok/s':>12} {'compiled tok/s':>15} {'ratio':>6} {'compile s':>10} {'same tokens':>12}")
    for batch in [int(b) for b in args.batches.split(",")]:
        problems = bench_problems(batch, seed=batch)
        decode(model, tokenizer, table, problems[:2], argparse.Namespace(**{**vars(args), "new_tokens": 4}),
               compile=False)  # warm-up: kernels, allocator
        eager = [decode(model, tokenizer, table, problems, args, compile=False) for _ in range(args.repeats)]
        first = decode(model, tokenizer, table, problems, args, compile=True)  # compiles (or reuses) its shapes
        compiled = [decode(model, tokenizer, table, problems, args, compile=True) for _ in range(args.repeats)]
        tokens = batch * args.new_tokens
        eager_tok_s = tokens / min(run[0] for run in eager)
        compiled_tok_s = tokens / min(run[0] for run in compiled)
        same = all(run[1] == eager[0][1] for run in eager + compiled + [first])
        print(f"{batch:>5} {eager_tok_s:>12.1f} {compiled_tok_s:>15.1f} {compiled_tok_s / eager_tok_s:>6.2f} "
              f"{first[2]:>10.1f} {str(same):>12}", flush=True)


if __name__ == "__main__":
    main()
