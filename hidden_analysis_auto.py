#!/usr/bin/env python
"""Stage 3, the steering vector and its calibration: label steps as overthinking or confident,
take the difference of the mean hidden states at the chosen layer, and derive the control
function's constants; writes the vector and `<save_path stem>.json` beside it (docs/method.md §5-§6)."""

import sys

from rebalance.stages.extract import main as stage_main


def main(argv=None):
    return stage_main(argv, description=__doc__)


if __name__ == "__main__":
    sys.exit(main())
