#!/usr/bin/env python
"""Stage 2, layer selection: how well each layer's hidden state at a step start predicts the
step's confidence (PCA + Ridge, held-out R^2), or, with --criterion steer, which layer's own push
moves the model's next step from overthinking to confident. Prints a table; the last line is the
chosen layer id alone, so a shell script can capture it with `| tail -n 1` (docs/method.md §4)."""

import argparse
import sys

from rebalance.analysis.collected import DEFAULT_PATTERN
from rebalance.analysis.layer_scoring import RidgeSettings
from rebalance.analysis.stages import CRITERIA, select_layer
from rebalance.commands.flags import add_calibration_input_flags, fraction, positive_int
from rebalance.errors import cli_entry


@cli_entry
def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    add_calibration_input_flags(parser)
    parser.add_argument("--layers", default="all", help="'all', a range '0-28' or a list '0,3,7-10'")
    parser.add_argument("--alpha", type=float, default=1.0, help="Ridge regularisation")
    parser.add_argument("--pca_components", type=positive_int, default=64)
    parser.add_argument("--test_size", type=fraction, default=0.2, help="held-out share of the rows")
    parser.add_argument("--random_state", type=int, default=42)
    parser.add_argument("--no_plot", action="store_true", help="skip the PNG and CSV beside the jsonl")
    parser.add_argument("--tmp_dir", default=None, help="where the per-layer row arrays are kept while scoring")
    parser.add_argument("--file_pattern", default=DEFAULT_PATTERN, help="name of each hidden file, with {idx}")
    parser.add_argument("--criterion", choices=CRITERIA, default="ridge",
                        help="ridge: the layer that best predicts step confidence (the paper's rule). steer: the "
                             "layer whose own calibrated push, added at the boundaries of the collected responses, "
                             "most lowers the next overthinking step's probability against the confident ones' "
                             "(for models where R^2 is flat over layers; needs --model_name_or_path)")
    parser.add_argument("--model_name_or_path", default=None, help="the collection's model (--criterion steer)")
    parser.add_argument("--trust_remote_code", action="store_true",
                        help="allow the model's own code (--criterion steer; off by default)")
    parser.add_argument("--steer_records", type=positive_int, default=16,
                        help="records fed back per layer by --criterion steer (the first N usable, "
                             "up to 4 boundaries each)")
    args = parser.parse_args(argv)
    settings = RidgeSettings(args.alpha, args.pca_components, args.test_size, args.random_state)
    select_layer(args.jsonl_path, args.hidden_dir, args.layers, args.max_files, args.expected_offset, settings,
                 plot=not args.no_plot, verbose=args.verbose, tmp_dir=args.tmp_dir,
                 pattern=args.file_pattern, criterion=args.criterion, model_name=args.model_name_or_path,
                 steer_records=args.steer_records, trust_remote_code=args.trust_remote_code)


if __name__ == "__main__":
    sys.exit(main())
