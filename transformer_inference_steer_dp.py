#!/usr/bin/env python
"""Stage 4, steered inference: ReBalance's dynamic steering at every reasoning-step boundary,
the vector added to the input of block --steer_layer (docs/method.md §8)."""

import sys

from rebalance.stages.steer import main as stage_main


def main(argv=None):
    return stage_main(argv, variant="default", description=__doc__)


if __name__ == "__main__":
    sys.exit(main())
