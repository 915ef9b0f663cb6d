#!/usr/bin/env python
"""Stage 5, grading: accuracy (pass@1, pass@k) and average response / thinking tokens of a merged
generation file, joined to the gold answers by idx; `--baseline` compares two runs (docs/method.md §11)."""

import sys

from rebalance.stages.grade import main as stage_main


def main(argv=None):
    return stage_main(argv, description=__doc__)


if __name__ == "__main__":
    sys.exit(main())
