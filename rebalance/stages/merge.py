"""Merging (`merge_shards.py`): the per-rank shards of a run into one file sorted by idx, duplicates
dropped, missing ids listed (docs/method.md §10)."""

from __future__ import annotations

import argparse

from ..errors import cli_entry
from ..files.shards import merge_shards
from .flags import positive_int


def build_parser(description: str = __doc__) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--dir", required=True, help="folder holding BASE.shard*.jsonl")
    parser.add_argument("--base", required=True, help="e.g. origin_temp0.0_maxlen16384")
    parser.add_argument("--out", default=None, help="default: DIR/BASE.merged.jsonl")
    parser.add_argument("--expected", type=positive_int, default=None, help="dataset size, to list missing idx")
    return parser


@cli_entry
def main(argv: list[str] | None = None, description: str = __doc__) -> int:
    args = build_parser(description).parse_args(argv)
    summary = merge_shards(args.dir, args.base, args.out, args.expected)
    for name, count in summary["shards"].items():
        print(f"{name}: {count} records")
    print(f"merged {summary['records']} records ({summary['duplicates_dropped']} duplicates dropped) -> {summary['out']}")
    if "missing" in summary:
        missing = summary["missing"]
        print(f"missing {len(missing)} of {args.expected}: {missing[:50]}{' ...' if len(missing) > 50 else ''}")
    return 0
