#!/usr/bin/env python
"""Where a decoding step's time goes: the model's forward against the host's work around it (the
step's mask and feed, the plugins, the logits processors, the draw, the step tracker, the one
transfer and the per-row bookkeeping), per step and per row, at a tiny shape on the CPU, where the
forward is cheap and everything around it shows. On a GPU the forward is queued asynchronously, so
the host's share is the time a step cannot hide behind the device.

  python bench/step_profile.py [--batches 1,16,64] [--new_tokens 64] [--hidden 64] [--layers 2]

Each phase is timed by wrapping the engine's own methods; `--top N` adds the N host functions
that cost most (cProfile, outside the forward).
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import time
from collections import defaultdict

import torch
from common import SAMPLING, bench_problems
from gpu import BoundaryEvery, random_model, word_tokenizer

from rebalance.calibration import generic
from rebalance.control import ControlFunction
from rebalance.decoding.decode import engine_for
from rebalance.decoding.records import make_table
from rebalance.decoding.sampling import Sampling, SuppressTokens
from rebalance.decoding.sites import num_residual_sites
from rebalance.decoding.steering import Mode, SteeringSetup, site_index
from rebalance.examples import Example

KINDS = ("steered", "collect", "sampled")


def timed(owner, name: str, spent: dict, key: str) -> None:
    """Wrap `owner.name` so each call adds its seconds to spent[key]."""
    inner = getattr(owner, name)

    def wrapper(*args, **kwargs):
        start = time.perf_counter()
        try:
            return inner(*args, **kwargs)
        finally:
            spent[key] += time.perf_counter() - start

    setattr(owner, name, wrapper)


def profile(model, tokenizer, kind: str, batch: int, new_tokens: int, top: int) -> dict:
    table = make_table(model, tokenizer)
    boundary = tokenizer.convert_tokens_to_ids("ĊĊ")
    vector = torch.randn(model.config.hidden_size, generator=torch.Generator().manual_seed(0))
    setup = SteeringSetup(vector, site_index(num_residual_sites(model), 1, "input"), Mode.DYNAMIC, -1.0,
                          ControlFunction(**generic()))
    engine = engine_for(model, tokenizer, table, width=batch, max_new_tokens=new_tokens,
                        steering=None if kind == "collect" else setup, capture_on="cpu" if kind == "collect" else None,
                        processors=[SuppressTokens(table.eos_ids), BoundaryEvery(boundary, 8)],
                        sampling=Sampling(**SAMPLING) if kind == "sampled" else Sampling())
    spent: dict[str, float] = defaultdict(float)
    timed(engine.forward, "_fn", spent, "forward")  # the model's own forward (the plugins' hooks inside)
    timed(engine, "_forward", spent, "step_forward")  # ... and the feed, mask, plugins around it
    timed(engine, "_choose", spent, "choose")        # processors, draw, tracker, transfer, bookkeeping
    timed(engine, "_admit", spent, "admit")
    timed(engine, "_step", spent, "step")
    problems = bench_problems(batch, seed=batch)
    profiler = cProfile.Profile() if top else None
    with engine:
        if profiler:
            profiler.enable()
        list(engine.run(Example(i, p, "", {}) for i, p in enumerate(problems)))
        if profiler:
            profiler.disable()
    steps = engine.steps - 1  # the first step is the admission's
    decode = spent["step"] - spent["admit"]
    host = decode - spent["forward"]
    out = {"kind": kind, "batch": batch, "steps": steps, "step_ms": 1000 * decode / steps,
           "forward_ms": 1000 * spent["forward"] / steps, "host_ms": 1000 * host / steps,
           "around_forward_ms": 1000 * (spent["step_forward"] - spent["forward"]) / steps,
           "choose_ms": 1000 * spent["choose"] / steps}
    out["host_share"] = out["host_ms"] / out["step_ms"]
    out["host_us_per_row"] = 1000 * out["host_ms"] / batch
    if profiler:
        text = io.StringIO()
        pstats.Stats(profiler, stream=text).sort_stats("tottime").print_stats(top)
        out["top"] = text.getvalue()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batches", default="1,16,64")
    parser.add_argument("--new_tokens", type=int, default=64)
    parser.add_argument("--kinds", default=",".join(KINDS))
    parser.add_argument("--top", type=int, default=0, help="also list the N costliest functions (cProfile)")
    args = parser.parse_args()
    model = random_model("rehearsal", torch.float32, "cpu")
    tokenizer = word_tokenizer(model.config.vocab_size)
    print(f"random Qwen2 {model.config.hidden_size} wide, {model.config.num_hidden_layers} blocks, vocab "
          f"{model.config.vocab_size}, fp32, CPU, {torch.get_num_threads()} threads, "
          f"{args.new_tokens} new tokens a row")
    print(f"{'kind':<8} {'batch':>5} {'step ms':>8} {'forward':>8} {'host':>8} {'share':>6} {'host us/row':>12} "
          f"{'around fwd':>11} {'choose':>8}")
    for kind in args.kinds.split(","):
        for batch in [int(b) for b in args.batches.split(",")]:
            r = profile(model, tokenizer, kind, batch, args.new_tokens, args.top)
            print(f"{kind:<8} {batch:>5} {r['step_ms']:>8.2f} {r['forward_ms']:>8.2f} {r['host_ms']:>8.2f} "
                  f"{100 * r['host_share']:>5.0f}% {r['host_us_per_row']:>12.1f} {r['around_forward_ms']:>11.2f} "
                  f"{r['choose_ms']:>8.2f}", flush=True)
            if args.top:
                print(r["top"])


if __name__ == "__main__":
    main()
