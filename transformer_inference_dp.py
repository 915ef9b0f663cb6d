#!/usr/bin/env python
"""Stage 1, collection: greedy generation on a seen set, recording step confidences and the
hidden state of every layer at each reasoning step, in one pass (docs/method.md §3)."""

import sys

from rebalance.stages.collect import main as stage_main


def main(argv=None):
    return stage_main(argv, description=__doc__)


if __name__ == "__main__":
    sys.exit(main())
