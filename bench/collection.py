#!/usr/bin/env python
"""Collection run vs plain `generate`: tokens/s on the same model, prompts and batch size.

The release ran three passes per example (generate, token-by-token re-scoring, full forward);
this project's collection is one pass, so the target is collection >= 0.85 x plain.
  python bench/collection.py [--model embedded] [--new_tokens 64] [--batches 1,8]
"""

import argparse

from common import compare_with_plain

from rebalance.decoding.decode import collect_batch
from rebalance.decoding.records import make_table
from rebalance.decoding.sampling import SuppressTokens
from rebalance.examples import Example
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
    compare_with_plain(model, tokenizer, eos, collect, "collect", args.new_tokens, args.batches)


if __name__ == "__main__":
    main()
