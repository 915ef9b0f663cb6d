#!/usr/bin/env python
"""Decoding steps at long contexts: plain HF `generate` (its default, concatenating cache),
`generate` with transformers' preallocated static cache, and the in-flight engine (slots written in
place), on a small random Qwen2-shaped model, 16 rows, the same random prompts of C tokens.

Each (method, context, decoding) runs in a fresh process: the prompts are prefilled, then `--steps`
tokens are decoded with EOS forbidden. A logits processor stamps the time of every step, so the
figure is milliseconds per decoding step with the prefill left out. Memory, over what the process
held before the model was built: the peak of the run (prefill and decoding; the high-water mark is
reset once the model is built, so building it does not count) and what decoding holds at the last
step, beside the engine's planned size (its cache at full length, the weights, the logits of one
step: decoding/memory.py).
  python bench/long_context.py [--contexts 512,2048,8192] [--steps 16] [--rows 16]
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import resource
import subprocess
import sys
import time

import torch
from common import SAMPLING  # (importing common puts the repository on sys.path)
from transformers import AutoTokenizer, LogitsProcessor, Qwen2Config, Qwen2ForCausalLM

from rebalance.decoding.engine import Engine, RowAwareProcessor
from rebalance.decoding.memory import GIB, MemoryPlan, kv_bytes_per_token
from rebalance.decoding.records import make_table
from rebalance.decoding.sampling import Sampling
from rebalance.examples import Example
from rebalance.store import embedded_model_dir

METHODS = ("plain", "static", "engine")
SHAPE = dict(hidden_size=512, intermediate_size=1376, num_hidden_layers=8, num_attention_heads=8, num_key_value_heads=2)


def rss_bytes() -> int:
    """The process's resident set now (Linux)."""
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def reset_peak() -> None:
    """Start the high-water mark afresh (Linux >= 4.0), so building the model does not count."""
    with open("/proc/self/clear_refs", "w") as handle:
        handle.write("5")


def peak_bytes() -> int:
    """The resident set's high-water mark since the last reset."""
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def held_bytes() -> int:
    """RSS after handing freed heap pages back to the system (glibc), so the prefill's freed
    activations do not count as held."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except OSError:
        pass
    return rss_bytes()


class Stamps(LogitsProcessor):
    """Notes the time of each decoding step (the processors run once per step) and, at the last
    one, the memory held."""

    def __init__(self, eos_ids, steps):
        self.eos_ids, self.steps, self.times, self.rss = list(eos_ids), steps, [], 0

    def __call__(self, input_ids, scores):
        self.times.append(time.perf_counter())
        if len(self.times) == self.steps:
            self.rss = held_bytes()
        scores[:, self.eos_ids] = float("-inf")
        return scores


class RowStamps(Stamps, RowAwareProcessor):
    def __call__(self, input_ids, scores, rows=None):
        return super().__call__(input_ids, scores)


def random_model(tokenizer, device):
    """A random Qwen2 (8 blocks, width 512, 2 key/value heads) on SmolLM2's tokenizer."""
    torch.manual_seed(0)
    config = Qwen2Config(vocab_size=len(tokenizer), max_position_embeddings=32768, eos_token_id=tokenizer.eos_token_id,
                         pad_token_id=tokenizer.pad_token_id, **SHAPE)
    return Qwen2ForCausalLM(config).eval().to(device)


def worker(method: str, context: int, steps: int, rows: int, sampled: bool) -> dict:
    device = "cuda" if torch.cuda.is_available() else "cpu"
    tokenizer = AutoTokenizer.from_pretrained(embedded_model_dir())
    base = rss_bytes()
    model = random_model(tokenizer, device)
    table = make_table(model, tokenizer)
    stamps = (RowStamps if method == "engine" else Stamps)(table.eos_ids, steps)
    generator = torch.Generator().manual_seed(1)
    prompts = torch.randint(1000, len(tokenizer), (rows, context), generator=generator)
    sampling = SAMPLING if sampled else {}
    held_bytes()
    reset_peak()
    with torch.inference_mode():
        if method == "engine":
            engine = Engine(model, tokenizer, table, prompt=lambda ex: prompts[ex.idx].tolist(), width=rows,
                            max_new_tokens=steps, processors=[stamps], sampling=Sampling(**sampling))
            done = list(engine.run([Example(i, "", "", {}) for i in range(rows)]))
            assert all(len(d.tokens) == steps for d in done)
        else:
            extra = {"cache_implementation": "static"} if method == "static" else {}
            model.generate(input_ids=prompts.to(device), attention_mask=torch.ones_like(prompts).to(device),
                           max_new_tokens=steps, min_new_tokens=0, logits_processor=[stamps],
                           pad_token_id=tokenizer.pad_token_id, do_sample=sampled, **sampling, **extra)
    if device == "cuda":
        torch.cuda.synchronize()
    # the memory probe runs after the last stamp, so it is in no interval
    step_ms = 1000 * (stamps.times[-1] - stamps.times[0]) / (len(stamps.times) - 1)
    weights = sum(p.numel() * p.element_size() for p in model.parameters())
    per_token = kv_bytes_per_token(model.config, model.dtype.itemsize)
    plan = MemoryPlan(width=rows, columns=context + steps, per_token=per_token, vocab=model.config.vocab_size,
                      weights=weights, available=0)
    peak = peak_bytes()
    return {"step_ms": step_ms, "peak": peak - base, "decoding": stamps.rss - base, "planned": plan.cache + weights}


def run_one(method: str, context: int, steps: int, rows: int, sampled: bool) -> dict:
    argv = [sys.executable, __file__, "--worker", method, "--contexts", str(context), "--steps", str(steps),
            "--rows", str(rows)] + (["--sampled"] if sampled else [])
    out = subprocess.run(argv, capture_output=True, text=True)
    if out.returncode:
        raise SystemExit(f"{method} at {context} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--contexts", default="512,2048,8192")
    parser.add_argument("--steps", type=int, default=16)
    parser.add_argument("--rows", type=int, default=16)
    parser.add_argument("--sampled", action="store_true", help="(worker) T 0.7, top-p 0.95")
    parser.add_argument("--worker", choices=METHODS)
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(args.worker, int(args.contexts), args.steps, args.rows, args.sampled)))
        return
    torch_threads = torch.get_num_threads()
    print(f"{args.rows} rows, {args.steps} decoding steps after the prefill, random Qwen2 {SHAPE}, "
          f"fp32, {torch_threads} threads; ms per decoding step (lower is better)")
    print(f"{'context':>7} {'decoding':>8} {'plain':>8} {'static':>8} {'engine':>8} {'x plain':>8} {'x static':>8} "
          f"{'engine peak / decoding / planned GiB':>38}")
    for context in [int(c) for c in args.contexts.split(",")]:
        for sampled in (False, True):
            got = {m: run_one(m, context, args.steps, args.rows, sampled) for m in METHODS}
            ms = {m: got[m]["step_ms"] for m in METHODS}
            mem = got["engine"]
            print(f"{context:>7} {'sampled' if sampled else 'greedy':>8} {ms['plain']:>8.1f} {ms['static']:>8.1f} "
                  f"{ms['engine']:>8.1f} {ms['plain'] / ms['engine']:>8.2f} {ms['static'] / ms['engine']:>8.2f} "
                  f"{mem['peak'] / GIB:>16.2f} / {mem['decoding'] / GIB:.2f} / {mem['planned'] / GIB:.2f}", flush=True)


if __name__ == "__main__":
    main()
