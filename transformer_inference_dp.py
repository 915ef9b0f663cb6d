#!/usr/bin/env python
"""Stage 1, collection: greedy generation on a seen set, recording step confidences and the
hidden state of every layer at each reasoning step, in one pass (docs/method.md §3)."""

import argparse
import sys

from rebalance.commands.flags import add_ignored_flag, add_model_flags, add_run_flags
from rebalance.errors import cli_entry
from rebalance.runs import collection_job, run_collection


@cli_entry
def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    add_model_flags(parser)
    add_run_flags(parser)
    parser.add_argument("--temperature", type=float, default=0.7,
                        help="only named in the output file (origin_temp{T}_...), as in the authors' script: "
                             "decoding is always greedy")
    parser.add_argument("--top_p", type=float, default=0.95, help="unused, as --temperature: decoding is greedy")
    parser.add_argument("--hs_device", choices=("auto", "cuda", "cpu"), default="auto",
                        help="where captured hidden rows wait until their example is written: cpu (and auto) "
                             "moves them off the GPU at every step, cuda keeps them on the GPU")
    add_ignored_flag(parser, "--score_dtype", choices=("bf16", "fp16", "fp32"),
                     why="confidences come from the logits generation already computes (softmax in float32); "
                         "there is no separate scoring pass whose precision could be chosen")
    args = parser.parse_args(argv)
    job = collection_job(args.model_name_or_path, args.dataset_dir, args.dataset, args.output_path,
                         args.max_generated_tokens, args.temperature, args.batch_size, args.limit,
                         args.dtype, args.trust_remote_code, args.hs_device, args.fit_batch)
    run_collection(job, args.num_gpus)
    print(f"records: {job.out_dir}/{job.base}.shard*.jsonl\nhidden states: {job.hidden_dir}/hidden_{{idx}}.pt")


if __name__ == "__main__":
    sys.exit(main())
