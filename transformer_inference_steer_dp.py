#!/usr/bin/env python
"""Stage 4, steered inference: ReBalance's dynamic steering at every reasoning-step boundary,
the vector added to the input of block --steer_layer (docs/method.md §8)."""

import sys

from rebalance.commands.steer import main as steer_main
from rebalance.errors import cli_entry


@cli_entry
def main(argv=None):
    return steer_main(argv, "default", __doc__)


if __name__ == "__main__":
    sys.exit(main())
