#!/usr/bin/env python
"""Merge the per-rank shards of a run into one file sorted by idx (docs/method.md §10)."""

import sys

from rebalance.stages.merge import main as stage_main


def main(argv=None):
    return stage_main(argv, description=__doc__)


if __name__ == "__main__":
    sys.exit(main())
