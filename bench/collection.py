#!/usr/bin/env python
"""Collection run vs plain `generate`: tokens/s on the same model, prompts and batch size.

The release ran three passes per example (generate, token-by-token re-scoring, full forward);
this project's collection is one pass, so the target is collection >= 0.85 x plain.
  python bench/collection.py [--model embedded] [--new_tokens 64] [--batches 1,8]
"""

import argparse

from common import bench_problems, plain_generate, tokens_per_second

from rebalance.collect import collect_batch, make_table
from rebalance.data import Example
from rebalance.generation import SuppressTokens
from rebalance.models import load_model


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="embedded")
    parser.add_argument("--new_tokens", type=int, default=64)
    parser.add_argument("--batches", default="1,8")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    model, tokenizer = load_model(args.model, args.device)
    table = make_table(model, tokenizer)
    eos = list(table.eos_ids)

    def collect(problems):
        examples = [Example(i, p, "", {}) for i, p in enumerate(problems)]
        return collect_batch(model, tokenizer, table, examples, args.new_tokens, processors=[SuppressTokens(eos)])

    print(f"model {args.model}, device {args.device}, {args.new_tokens} new tokens per row")
    print(f"{'batch':>5} {'plain tok/s':>12} {'collect tok/s':>14} {'ratio':>6}")
    for batch in [int(b) for b in args.batches.split(",")]:
        problems = bench_problems(max(batch, 4 if batch == 1 else batch))
        plain_generate(model, tokenizer, problems[:batch], 4, eos)  # warm-up
        plain = tokens_per_second(lambda ps: plain_generate(model, tokenizer, ps, args.new_tokens, eos),
                                  problems, batch, args.new_tokens, repeats=2)
        ours = tokens_per_second(collect, problems, batch, args.new_tokens, repeats=2)
        print(f"{batch:>5} {plain:>12.1f} {ours:>14.1f} {ours / plain:>6.2f}")


if __name__ == "__main__":
    main()
