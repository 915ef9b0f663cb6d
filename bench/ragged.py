#!/usr/bin/env python
"""Ragged workloads: plain HF `generate` in static batches of W vs the in-flight engine at width W.

Rows of one batch end at different steps. A static batch computes its finished rows as padding
until its longest row ends; the engine hands a finished row's slot to the next example. Each
measurement runs in a fresh process (same prompts, greedy):
  smollm2   the embedded SmolLM2-135M, natural EOS, arithmetic and short word problems,
            192 new tokens, W = 6
  longtail  a small random Llama with SmolLM2's vocabulary, each example's length forced from a
            lognormal (median 48 tokens, 10 % at the 512-token limit, like reasoning traces), W = 8
  batch1    SmolLM2 at width 1 (nothing to refill: the engine must not be slower than `generate`)
  memory    peak RSS of the engine on the long-tailed queue and on a queue three times longer
Useful tokens/s counts generated tokens up to and including the EOS. Occupancy = useful tokens /
(W x decoding steps): the share of the batch's row-steps that produced a kept token.
  python bench/ragged.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import resource
import subprocess
import sys
import time

import torch
from common import bench_problems
from transformers import LogitsProcessor

from rebalance.decoding.engine import Engine, RowAwareProcessor
from rebalance.decoding.records import make_table
from rebalance.decoding.sampling import left_pad
from rebalance.examples import Example, prompt_ids
from rebalance.models import load_model

WORKLOADS = {  # name: (model, examples, width, max new tokens)
    "smollm2": ("embedded", 24, 6, 192),
    "longtail": ("random", 64, 8, 512),
    "batch1": ("embedded", 4, 1, 96),
}


def longtail_lengths(count: int, limit: int, seed: int = 0) -> list[int]:
    """Lognormal lengths (median limit/10.7, sigma 1) with every tenth example at the limit."""
    rng = random.Random(seed)
    lengths = [min(limit, max(4, round(rng.lognormvariate(math.log(limit / 10.7), 1.0)))) for _ in range(count)]
    for i in range(0, count, 10):
        lengths[i] = limit
    return lengths


def random_model(device):
    """A 4-block random Llama on SmolLM2's tokenizer: compute comparable per token, lengths forced."""
    from transformers import LlamaConfig, LlamaForCausalLM

    _, tokenizer = load_model("embedded", device)
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=256, intermediate_size=768, num_hidden_layers=4,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=2048,
                         eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    return LlamaForCausalLM(config).eval().to(device), tokenizer


class StaticLengths(LogitsProcessor):
    """For a static batch: row r ends with EOS as its lengths[r]-th token, never before."""

    def __init__(self, lengths, prompt_width, eos_id):
        self.lengths, self.prompt_width, self.eos_id = torch.tensor(lengths), prompt_width, eos_id

    def __call__(self, input_ids, scores):
        generated = input_ids.shape[1] - self.prompt_width
        ends = self.lengths.to(scores.device) == generated + 1
        scores[:, self.eos_id] = float("-inf")
        scores[ends] = float("-inf")
        scores[ends, self.eos_id] = 0.0
        return scores


class RowLengths(RowAwareProcessor):
    """For the engine: example idx ends with EOS as its lengths[idx]-th token, never before."""

    def __init__(self, lengths, eos_id):
        self.lengths, self.eos_id = torch.tensor(lengths), eos_id

    def __call__(self, input_ids, scores, rows=None):
        ends = self.lengths.to(scores.device)[rows.example_idx] == rows.generated + 1
        scores[:, self.eos_id] = float("-inf")
        scores[ends] = float("-inf")
        scores[ends, self.eos_id] = 0.0
        return scores


def useful(ids, eos_ids) -> int:
    """Tokens up to and including the first EOS."""
    for i, token in enumerate(ids):
        if token in eos_ids:
            return i + 1
    return len(ids)


def static_batches(model, tokenizer, problems, width: int, limit: int, lengths, eos_ids, extra=()) -> tuple[int, int]:
    """Plain `generate` over `problems` in static batches of `width`, example i ending with EOS as
    its lengths[i]-th token (lengths None: wherever the model writes EOS; `extra`: processors run
    before the forcing). Returns the useful tokens and the decoding steps."""
    tokens, steps, eos = 0, 0, set(eos_ids)
    for first in range(0, len(problems), width):
        prompts = [prompt_ids(tokenizer, p) for p in problems[first:first + width]]
        ids, mask = left_pad(prompts, tokenizer.pad_token_id, model.device)
        force = [StaticLengths(lengths[first:first + width], ids.shape[1], eos_ids[0])] if lengths else []
        with torch.inference_mode():
            out = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=limit, do_sample=False,
                                 logits_processor=[*extra, *force], pad_token_id=tokenizer.pad_token_id,
                                 eos_token_id=list(eos_ids))
        generated = out[:, ids.shape[1]:].tolist()
        tokens += sum(useful(row, eos) for row in generated)
        steps += len(generated[0])
    return tokens, steps


def worker(method: str, workload: str, scale: int) -> dict:
    """One measurement; runs in its own process."""
    model_name, count, width, limit = WORKLOADS[workload]
    count *= scale
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model, tokenizer = random_model(device) if model_name == "random" else load_model(model_name, device)
    table = make_table(model, tokenizer)
    problems = bench_problems(count, seed=1)
    lengths = longtail_lengths(count, limit) if workload == "longtail" else None
    # warm-up (allocator, kernels), outside the timing
    prompt = lambda ex: prompt_ids(tokenizer, ex.problem)  # noqa: E731
    Engine(model, tokenizer, table, prompt=prompt, width=2, max_new_tokens=4).run([Example(0, problems[0], "", {})]).__next__()
    start = time.perf_counter()
    if method == "plain":
        tokens, steps = static_batches(model, tokenizer, problems, width, limit, lengths, table.eos_ids)
    else:
        extra = [RowLengths(lengths, table.eos_ids[0])] if lengths else []
        engine = Engine(model, tokenizer, table, prompt=prompt, width=width, max_new_tokens=limit, processors=extra)
        examples = [Example(i, p, "", {}) for i, p in enumerate(problems)]
        tokens = sum(len(done.tokens) for done in engine.run(examples))
        steps = engine.steps
    if device == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    return {"method": method, "workload": workload, "examples": count, "width": width, "tokens": tokens,
            "seconds": seconds, "tokens_per_s": tokens / seconds, "occupancy": tokens / (width * steps),
            "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def measure(method: str, workload: str, scale: int = 1) -> dict:
    here = os.path.abspath(__file__)
    out = subprocess.run([sys.executable, here, "--worker", method, workload, str(scale)], capture_output=True,
                         text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--worker", nargs=3, metavar=("METHOD", "WORKLOAD", "SCALE"), help=argparse.SUPPRESS)
    parser.add_argument("--only", default="smollm2,longtail,batch1,memory", help="comma-separated workloads")
    args = parser.parse_args()
    if args.worker:
        method, workload, scale = args.worker
        print(json.dumps(worker(method, workload, int(scale))))
        return
    wanted = args.only.split(",")
    if {"smollm2", "longtail", "batch1"} & set(wanted):
        print(f"{'workload':<10} {'W':>2} {'plain tok/s':>11} {'engine tok/s':>12} {'ratio':>6} "
              f"{'plain occ.':>10} {'engine occ.':>11}  (useful tokens)")
    for workload in ("smollm2", "longtail", "batch1"):
        if workload not in wanted:
            continue
        plain, mine = measure("plain", workload), measure("engine", workload)
        assert plain["tokens"] == mine["tokens"] or workload == "smollm2", (plain["tokens"], mine["tokens"])
        print(f"{workload:<10} {plain['width']:>2} {plain['tokens_per_s']:>11.1f} {mine['tokens_per_s']:>12.1f} "
              f"{mine['tokens_per_s'] / plain['tokens_per_s']:>6.2f} {plain['occupancy']:>10.2f} "
              f"{mine['occupancy']:>11.2f}  ({plain['tokens']} / {mine['tokens']})", flush=True)
    if "memory" in wanted:
        short, long = measure("engine", "longtail", 1), measure("engine", "longtail", 3)
        print(f"peak RSS, engine on the long-tailed queue: {short['examples']} examples {short['peak_rss_mib']:.0f} MiB, "
              f"{long['examples']} examples {long['peak_rss_mib']:.0f} MiB "
              f"({long['peak_rss_mib'] / short['peak_rss_mib']:.3f} x)")


if __name__ == "__main__":
    main()
