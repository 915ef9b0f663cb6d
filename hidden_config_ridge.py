#!/usr/bin/env python
"""Stage 2, layer selection: how well each layer's hidden state at a step start predicts the
step's confidence (PCA + Ridge, held-out R^2), or, with --criterion steer, which layer's own push
moves the model's next step from overthinking to confident. Prints a table; the last line is the
chosen layer id alone, so a shell script can capture it with `| tail -n 1` (docs/method.md §4)."""

import sys

from rebalance.stages.select_layer import main as stage_main


def main(argv=None):
    return stage_main(argv, description=__doc__)


if __name__ == "__main__":
    sys.exit(main())
