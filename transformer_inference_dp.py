#!/usr/bin/env python
"""Stage 1, collection: greedy generation on a seen set, recording step confidences and the
hidden state of every layer at each reasoning step, in one pass (SPEC 3)."""

import argparse
import sys

from rebalance.cli import add_model_flags, add_run_flags
from rebalance.errors import cli_entry
from rebalance.runs import collection_job, run_collection


@cli_entry
def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    add_model_flags(parser)
    add_run_flags(parser)
    parser.add_argument("--temperature", type=float, default=0.0, help="kept in the file name; decoding is greedy")
    parser.add_argument("--top_p", type=float, default=1.0, help="accepted for compatibility; decoding is greedy")
    args = parser.parse_args(argv)
    job = collection_job(args.model_name_or_path, args.dataset_dir, args.dataset, args.output_path,
                         args.max_generated_tokens, args.temperature, args.batch_size, args.limit,
                         args.dtype, args.trust_remote_code)
    run_collection(job, args.num_gpus)
    print(f"records: {job.out_dir}/{job.base}.shard*.jsonl\nhidden states: {job.hidden_dir}")


if __name__ == "__main__":
    sys.exit(main())
