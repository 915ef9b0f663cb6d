#!/usr/bin/env python
"""Stage 4 for Qwen3: as transformer_inference_steer_dp.py, with the Qwen3 release's defaults: the
vector added to the output of block --steer_layer, repetition penalty 1.18, Qwen3-14B constants."""

import sys

from rebalance.stages.steer import main as stage_main


def main(argv=None):
    return stage_main(argv, variant="qwen3", description=__doc__)


if __name__ == "__main__":
    sys.exit(main())
