#!/usr/bin/env python
"""The GPU measurement: plain `generate`, dynamic ReBalance steering and the collection run on a
random model of DeepSeek-R1-Distill-Qwen-1.5B's shape (Qwen2, hidden 1536, 28 blocks, vocab
151936), built from a config so nothing is downloaded, in bf16. Greedy rows: batch 1, 16 and 64,
512 new tokens per row (EOS forbidden, a step boundary forced every 32 tokens so steering and
capture do their real work). Then the paper's settings at the widest batch:
  sampled   T 0.7, top-p 0.95 (plain `generate` and steered, both sampling)
  ragged    a queue of 4 x batch examples whose lengths are forced from a long-tailed law (10 % at
            the limit): plain `generate` in static batches against the steered engine refilling
            slots; tokens/s counts each row's tokens up to its EOS
  long      batch 16 with 8,192-token prompts, 64 new tokens: decoding against a long cache
The floor of a decoding step is the bytes it must read (weights, and the key/value cache at the
run's mean context) over the device-to-device copy bandwidth; each row reports its share of it.

  python bench/gpu.py                 # on a GPU: table on stdout, JSON in bench/results/
  python bench/gpu.py --rehearse      # the same code on the CPU at a tiny shape, in seconds

Targets: steered >= 0.95 x plain and collection >= 0.85 x plain at every greedy batch size;
steered tokens/s at batch 64 >= 20 x batch 1; sampled steered >= 0.95 x sampled plain; ragged
steered >= 1.2 x plain; long-context steered >= 1.0 x plain.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

import torch
from common import SAMPLING, bench_problems, plain_generate, tokens_per_second
from ragged import RowLengths, longtail_lengths, static_batches
from transformers import LogitsProcessor

from rebalance.calibration import released
from rebalance.control import ControlFunction
from rebalance.decoding.decode import collect_batch, steer_batch, steer_stream
from rebalance.decoding.memory import kv_bytes_per_token
from rebalance.decoding.records import make_table
from rebalance.decoding.sampling import Sampling, SuppressTokens
from rebalance.decoding.sites import num_residual_sites
from rebalance.decoding.steering import SteeringSetup, site_index
from rebalance.examples import Example, prompt_ids

SHAPES = {
    "r1-1.5b": dict(hidden_size=1536, intermediate_size=8960, num_hidden_layers=28, num_attention_heads=12,
                    num_key_value_heads=2, vocab_size=151936),
    "rehearsal": dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                      num_key_value_heads=2, vocab_size=512),
}
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<think>", "</think>", "<unk>", "ĊĊ", "Ċ"]
TEMPLATE = ("{% for m in messages %}<|im_start|> {{ m['content'] }} <|im_end|> {% endfor %}"
            "{% if add_generation_prompt %}<|im_start|> <think> {% endif %}")


def word_tokenizer(vocab_size: int):
    """A word-level tokenizer with an entry for every id of the model (so any sampled id decodes),
    the chat markers, `<think>` tags, and `ĊĊ` as the step boundary."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {token: i for i, token in enumerate(SPECIALS)}
    vocab.update({f"w{i}": i for i in range(len(SPECIALS), vocab_size)})
    core = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(tokenizer_object=core, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                                   unk_token="<unk>", chat_template=TEMPLATE)


def random_model(shape: str, dtype: torch.dtype, device: str):
    from transformers import AutoModelForCausalLM, Qwen2Config

    config = Qwen2Config(**SHAPES[shape], max_position_embeddings=32768, tie_word_embeddings=False)
    torch.manual_seed(0)
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(config, dtype=dtype)
    return model.eval()


class BoundaryEvery(LogitsProcessor):
    """Force the step-boundary token every `every` generated tokens: a random model would rarely
    write one, and steering and capture only work at boundaries."""

    def __init__(self, token: int, every: int):
        self.token, self.every, self.calls = token, every, 0

    def __call__(self, input_ids, scores):
        self.calls += 1
        if self.calls % self.every == 0:
            scores = torch.full_like(scores, float("-inf"))
            scores[:, self.token] = 0.0
        return scores


def copy_bandwidth(device: str, nbytes: int, repeats: int = 10) -> float:
    """Bytes moved per second (read + write) by a device-to-device copy of `nbytes`."""
    src = torch.empty(nbytes // 2, dtype=torch.bfloat16, device=device)
    dst = torch.empty_like(src)
    dst.copy_(src)
    synchronize(device)
    start = time.perf_counter()
    for _ in range(repeats):
        dst.copy_(src)
    synchronize(device)
    return 2 * src.numel() * src.element_size() * repeats / (time.perf_counter() - start)


def synchronize(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def device_name(device: str) -> str:
    return torch.cuda.get_device_name(device) if device.startswith("cuda") else (platform.processor() or "cpu")


def measure(args) -> dict:
    dtype = getattr(torch, args.dtype)
    model = random_model(args.shape, dtype, args.device)
    tokenizer = word_tokenizer(model.config.vocab_size)
    table = make_table(model, tokenizer)
    eos = list(table.eos_ids)
    boundary = tokenizer.convert_tokens_to_ids("ĊĊ")
    shaping = lambda: [SuppressTokens(eos), BoundaryEvery(boundary, args.boundary_every)]  # noqa: E731
    layer, constants = released("DeepSeek-R1-Distill-Qwen-1.5B")
    layer = min(layer, model.config.num_hidden_layers - 1)
    vector = torch.randn(model.config.hidden_size, generator=torch.Generator().manual_seed(0))
    setup = SteeringSetup(vector, site_index(num_residual_sites(model), layer, "input"), "dynamic", -1.0,
                          ControlFunction(**constants))
    examples = lambda ps: [Example(i, p, "", {}) for i, p in enumerate(ps)]  # noqa: E731
    methods = {
        "plain": lambda ps, n: plain_generate(model, tokenizer, ps, n, eos, extra=shaping()[1:]),
        "steered": lambda ps, n: steer_batch(model, tokenizer, table, examples(ps), setup, n, processors=shaping()),
        "collect": lambda ps, n: collect_batch(model, tokenizer, table, examples(ps), n, processors=shaping(),
                                               rows_device="cpu"),
    }
    sampled = {
        "plain": lambda ps, n: plain_generate(model, tokenizer, ps, n, eos, extra=shaping()[1:], **SAMPLING),
        "steered": lambda ps, n: steer_batch(model, tokenizer, table, examples(ps), setup, n, Sampling(**SAMPLING),
                                             processors=shaping()),
    }
    weight_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    bandwidth = copy_bandwidth(args.device, max(weight_bytes, 64 << 20))
    per_token = kv_bytes_per_token(model.config, torch.finfo(dtype).bits // 8)

    def floor_s(batch: int, context: float) -> float:
        """Seconds a decoding step needs at least: the weights and the cache it reads, at copy speed."""
        return (weight_bytes + batch * context * per_token) / bandwidth

    def row(setting, name, batch, tok_s, context):
        step_s = batch / tok_s
        return {"setting": setting, "method": name, "batch": batch, "tokens_per_s": tok_s, "step_ms": 1000 * step_s,
                "floor_fraction": floor_s(batch, context) / step_s}

    def timed(setting, runs, problems, batch, new_tokens, context):
        for name, run in runs.items():
            run(problems, 4)  # warm-up: kernels, allocator, hooks
            tok_s = tokens_per_second(lambda ps: run(ps, new_tokens), problems, batch, new_tokens)
            rows.append(row(setting, name, batch, tok_s, context))

    def mean_prompt(problems) -> float:
        return sum(len(prompt_ids(tokenizer, p)) for p in problems) / len(problems)

    rows = []
    batches = [int(b) for b in args.batches.split(",")]
    for batch in batches:
        problems = bench_problems(batch, seed=batch)
        prompt = mean_prompt(problems)
        timed("greedy", methods, problems, batch, args.new_tokens, prompt + args.new_tokens / 2)
        print(f"batch {batch} done", flush=True)
    widest = batches[-1]  # the last greedy batch's problems and prompt length serve the rows below
    timed("sampled", sampled, problems, widest, args.new_tokens, prompt + args.new_tokens / 2)
    rows.extend(ragged_rows(model, tokenizer, table, setup, widest, args, row, prompt))
    long_batch, rng = min(16, widest), torch.Generator().manual_seed(0)
    words = torch.randint(len(SPECIALS), model.config.vocab_size, (long_batch, args.long_context), generator=rng)
    long_problems = [" ".join(f"w{int(i)}" for i in line) for line in words]
    timed("long", {k: methods[k] for k in ("plain", "steered")}, long_problems, long_batch, args.long_tokens,
          args.long_context + args.long_tokens / 2)
    print("sampled, ragged and long rows done", flush=True)
    return {
        "device": device_name(args.device), "torch": torch.__version__,
        "transformers": __import__("transformers").__version__, "cuda": torch.version.cuda,
        "shape": args.shape, **SHAPES[args.shape], "dtype": args.dtype, "new_tokens": args.new_tokens,
        "boundary_every": args.boundary_every, "weight_bytes": weight_bytes, "copy_bandwidth_GBps": bandwidth / 1e9,
        "floor_step_ms": 1000 * floor_s(1, 0), "kv_bytes_per_token": per_token, "long_context": args.long_context,
        "rows": rows, "targets": targets(rows),
    }


def ragged_rows(model, tokenizer, table, setup, width: int, args, row, prompt: float) -> list[dict]:
    """A long-tailed queue of 4 x width examples: plain `generate` in static batches of `width`
    (each batch runs until its longest row ends) against the steered engine refilling slots."""
    count, limit = 4 * width, args.new_tokens
    lengths = longtail_lengths(count, limit, seed=width)
    problems = bench_problems(count, seed=count)
    boundary = tokenizer.convert_tokens_to_ids("ĊĊ")
    out = []
    for name in ("plain", "steered"):
        start, tokens = time.perf_counter(), 0
        if name == "plain":
            tokens, _ = static_batches(model, tokenizer, problems, width, limit, lengths, table.eos_ids,
                                       extra=[BoundaryEvery(boundary, args.boundary_every)])
        else:
            force = RowLengths(lengths, table.eos_ids[0])
            done = steer_stream(model, tokenizer, table, [Example(i, p, "", {}) for i, p in enumerate(problems)],
                                setup, limit, processors=[BoundaryEvery(boundary, args.boundary_every), force],
                                width=width)
            tokens = sum(len(d.tokens) for d in done)
        synchronize(args.device)
        tok_s = tokens / (time.perf_counter() - start)
        out.append(row("ragged", name, width, tok_s, prompt + sum(lengths) / count / 2))
    return out


def targets(rows: list[dict]) -> dict:
    """Every target, with the measured ratio and whether it is met."""
    speed = {(r["setting"], r["method"], r["batch"]): r["tokens_per_s"] for r in rows}
    batches = sorted({r["batch"] for r in rows if r["setting"] == "greedy"})
    out = {}
    for name, floor in (("steered", 0.95), ("collect", 0.85)):
        ratios = {b: speed[("greedy", name, b)] / speed[("greedy", "plain", b)] for b in batches}
        out[f"{name}_vs_plain"] = {"ratios": ratios, "target": floor, "met": min(ratios.values()) >= floor}
    scale = speed[("greedy", "steered", batches[-1])] / speed[("greedy", "steered", batches[0])]
    out["steered_scaling"] = {"ratio": scale, "batches": [batches[0], batches[-1]], "target": 20.0,
                              "met": scale >= 20.0}
    for setting, floor in (("sampled", 0.95), ("ragged", 1.2), ("long", 1.0)):
        (batch,) = {r["batch"] for r in rows if r["setting"] == setting}
        ratio = speed[(setting, "steered", batch)] / speed[(setting, "plain", batch)]
        out[f"{setting}_steered_vs_plain"] = {"ratio": ratio, "batch": batch, "target": floor, "met": ratio >= floor}
    return out


def format_table(result: dict) -> str:
    lines = [f"{result['device']} | torch {result['torch']} | transformers {result['transformers']} | "
             f"CUDA {result['cuda']} | {result['shape']} {result['dtype']}, {result['new_tokens']} new tokens, "
             f"boundary every {result['boundary_every']}",
             f"weights {result['weight_bytes'] / 2**30:.2f} GiB, "
             f"copy bandwidth {result['copy_bandwidth_GBps']:.0f} GB/s, "
             f"floor {result['floor_step_ms']:.2f} ms a step for the weights alone, plus "
             f"{result['kv_bytes_per_token'] / 1024:.0f} KiB a cached token "
             f"(long rows: {result['long_context']} tokens)",
             f"{'setting':<8} {'method':<8} {'batch':>5} {'tok/s':>10} {'ms/step':>8} {'x plain':>8} {'of floor':>8}"]
    plain = {(r["setting"], r["batch"]): r["tokens_per_s"] for r in result["rows"] if r["method"] == "plain"}
    for r in result["rows"]:
        lines.append(f"{r['setting']:<8} {r['method']:<8} {r['batch']:>5} {r['tokens_per_s']:>10.1f} "
                     f"{r['step_ms']:>8.2f} {r['tokens_per_s'] / plain[(r['setting'], r['batch'])]:>8.2f} "
                     f"{100 * r['floor_fraction']:>7.1f}%")
    for name, t in result["targets"].items():
        shown = t.get("ratios", t.get("ratio"))
        shown = ", ".join(f"b{b} {v:.2f}" for b, v in shown.items()) if isinstance(shown, dict) else f"{shown:.2f}x"
        lines.append(f"target {name}: {shown} (>= {t['target']}) {'met' if t['met'] else 'MISSED'}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rehearse", action="store_true", help="CPU, tiny shape, 16 tokens, batches 1,4")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--dtype", default="bfloat16")
    parser.add_argument("--shape", choices=SHAPES, default="r1-1.5b")
    parser.add_argument("--batches", default="1,16,64")
    parser.add_argument("--new_tokens", type=int, default=512)
    parser.add_argument("--boundary_every", type=int, default=32)
    parser.add_argument("--long_context", type=int, default=8192, help="prompt tokens of the long-context rows")
    parser.add_argument("--long_tokens", type=int, default=64, help="new tokens of the long-context rows")
    parser.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "results"))
    args = parser.parse_args()
    if args.rehearse:
        args.device, args.dtype, args.shape, args.batches, args.new_tokens, args.boundary_every = (
            "cpu", "float32", "rehearsal", "1,4", 16, 4)
        args.long_context, args.long_tokens = 256, 8
    elif not torch.cuda.is_available() and args.device.startswith("cuda"):
        parser.error("no CUDA device here: run with --rehearse to check the script on the CPU")
    result = measure(args)
    table = format_table(result)
    print(table)
    os.makedirs(args.out, exist_ok=True)
    stem = os.path.join(args.out, f"gpu_{'rehearsal' if args.rehearse else args.shape}")
    with open(f"{stem}.json", "w") as handle:
        json.dump(result, handle, indent=2)
    with open(f"{stem}.txt", "w") as handle:
        handle.write(table + "\n")
    print(f"wrote {stem}.json and {stem}.txt")


if __name__ == "__main__":
    main()
