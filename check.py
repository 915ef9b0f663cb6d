#!/usr/bin/env python
"""Stage 5, grading: accuracy (pass@1, pass@k) and average response / thinking tokens of a merged
generation file, joined to the gold answers by idx; `--baseline` compares two runs (docs/method.md §11)."""

import sys

from rebalance.commands.check import build_parser, run_check
from rebalance.errors import cli_entry


@cli_entry
def main(argv=None):
    run_check(build_parser(__doc__).parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
