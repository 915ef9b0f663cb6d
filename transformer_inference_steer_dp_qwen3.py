#!/usr/bin/env python
"""Stage 4 for Qwen3: as transformer_inference_steer_dp.py, with the Qwen3 release's defaults: the
vector added to the output of block --steer_layer, repetition penalty 1.18, Qwen3-14B constants."""

import sys

from rebalance.commands.steer import main as steer_main
from rebalance.errors import cli_entry


@cli_entry
def main(argv=None):
    return steer_main(argv, "qwen3", __doc__)


if __name__ == "__main__":
    sys.exit(main())
