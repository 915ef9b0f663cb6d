#!/usr/bin/env python
"""Steered generation (dynamic ReBalance) vs plain `generate`: tokens/s, same model, prompts,
batch size and number of new tokens. Target: steered >= 0.95 x plain (the release decoded one
example at a time in a Python loop).
  python bench/steering.py [--model embedded] [--new_tokens 64] [--batches 1,8] [--layer 20]
"""

import argparse

import torch
from common import compare_with_plain

from rebalance.calibration import generic
from rebalance.control import ControlFunction
from rebalance.decoding.decode import steer_batch
from rebalance.decoding.records import make_table
from rebalance.decoding.sampling import SuppressTokens
from rebalance.decoding.sites import num_residual_sites
from rebalance.decoding.steering import SteeringSetup, site_index
from rebalance.examples import Example
from rebalance.models import load_model


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="embedded")
    parser.add_argument("--new_tokens", type=int, default=64)
    parser.add_argument("--batches", default="1,8")
    parser.add_argument("--layer", type=int, default=20)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    model, tokenizer = load_model(args.model, args.device)
    table = make_table(model, tokenizer)
    eos = list(table.eos_ids)
    vector = torch.randn(model.config.hidden_size, generator=torch.Generator().manual_seed(0)) * 0.05
    setup = SteeringSetup(vector, site_index(num_residual_sites(model), args.layer, "input"), "dynamic", -1.0,
                          ControlFunction(**generic()))
    steered_boundaries = []

    def steer(problems):
        examples = [Example(i, p, "", {}) for i, p in enumerate(problems)]
        out = steer_batch(model, tokenizer, table, examples, setup, args.new_tokens, processors=[SuppressTokens(eos)])
        steered_boundaries.extend(len(r.record["steer_coefs"]) for r in out)

    print(f"model {args.model}, device {args.device}, {args.new_tokens} new tokens per row, layer {args.layer}")
    compare_with_plain(model, tokenizer, eos, steer, "steered", args.new_tokens, args.batches)
    print(f"steered boundaries per response: {sum(steered_boundaries) / max(len(steered_boundaries), 1):.1f}")


if __name__ == "__main__":
    main()
