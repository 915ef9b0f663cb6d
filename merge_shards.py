#!/usr/bin/env python
"""Merge the per-rank shards of a run into one file sorted by idx (docs/method.md §10)."""

import argparse
import sys

from rebalance.commands.flags import positive_int
from rebalance.errors import cli_entry
from rebalance.files.shards import merge_shards


@cli_entry
def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dir", required=True, help="folder holding BASE.shard*.jsonl")
    parser.add_argument("--base", required=True, help="e.g. origin_temp0.0_maxlen16384")
    parser.add_argument("--out", default=None, help="default: DIR/BASE.merged.jsonl")
    parser.add_argument("--expected", type=positive_int, default=None, help="dataset size, to list missing idx")
    args = parser.parse_args(argv)
    summary = merge_shards(args.dir, args.base, args.out, args.expected)
    for name, count in summary["shards"].items():
        print(f"{name}: {count} records")
    print(f"merged {summary['records']} records ({summary['duplicates_dropped']} duplicates dropped) -> {summary['out']}")
    if "missing" in summary:
        missing = summary["missing"]
        print(f"missing {len(missing)} of {args.expected}: {missing[:50]}{' ...' if len(missing) > 50 else ''}")


if __name__ == "__main__":
    sys.exit(main())
