"""Helpers for the benchmarks: the same prompts and a fixed number of new tokens for every method."""

from __future__ import annotations

import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import random  # noqa: E402

from demo_problems import make_problem  # noqa: E402

from rebalance.decoding.sampling import SuppressTokens, left_pad  # noqa: E402
from rebalance.examples import prompt_ids  # noqa: E402


def bench_problems(count: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    return [make_problem(rng)["problem"] for _ in range(count)]


SAMPLING = dict(temperature=0.7, top_p=0.95)  # the paper's sampled decoding


def plain_generate(model, tokenizer, problems, new_tokens, eos_ids, extra=(), **sampling):
    """Plain HF `generate` (greedy unless `sampling` says otherwise), EOS forbidden so every row
    decodes exactly `new_tokens` (`extra`: more logits processors, the same ones the compared
    method gets)."""
    prompts = [prompt_ids(tokenizer, p) for p in problems]
    ids, mask = left_pad(prompts, tokenizer.pad_token_id, next(model.parameters()).device)
    with torch.inference_mode():
        return model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=new_tokens, do_sample=bool(sampling),
                              min_new_tokens=0, logits_processor=[SuppressTokens(eos_ids), *extra],
                              pad_token_id=tokenizer.pad_token_id, eos_token_id=list(eos_ids), **sampling)


def tokens_per_second(fn, problems, batch_size, new_tokens, repeats=1):
    """Generated tokens per second over all problems, in batches of `batch_size` (best of repeats)."""
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for i in range(0, len(problems), batch_size):
            fn(problems[i:i + batch_size])
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    return len(problems) * new_tokens / best


def compare_with_plain(model, tokenizer, eos_ids, ours, label: str, new_tokens: int, batches: str) -> None:
    """Print tokens/s of plain `generate` and of `ours(problems)` per batch size, and their ratio."""
    print(f"{'batch':>5} {'plain tok/s':>12} {label + ' tok/s':>14} {'ratio':>6}")
    for batch in [int(b) for b in batches.split(",")]:
        problems = bench_problems(max(batch, 4 if batch == 1 else batch))
        plain_generate(model, tokenizer, problems[:batch], 4, eos_ids)  # warm-up
        plain = tokens_per_second(lambda ps: plain_generate(model, tokenizer, ps, new_tokens, eos_ids),
                                  problems, batch, new_tokens, repeats=2)
        mine = tokens_per_second(ours, problems, batch, new_tokens, repeats=2)
        print(f"{batch:>5} {plain:>12.1f} {mine:>14.1f} {mine / plain:>6.2f}")
