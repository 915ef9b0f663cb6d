#!/usr/bin/env python
"""Stage 3, the steering vector and its calibration: label steps as overthinking or confident,
take the difference of the mean hidden states at the chosen layer, and derive the control
function's constants; writes the vector and `<save_path stem>.json` beside it (docs/method.md §5-§6)."""

import argparse
import sys

from rebalance.analysis.labels import LABEL_RULES
from rebalance.analysis.stages import extract_vector
from rebalance.commands.flags import add_calibration_input_flags, add_ignored_flag
from rebalance.errors import cli_entry


@cli_entry
def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    add_calibration_input_flags(parser)
    parser.add_argument("--layer_id", type=int, required=True, help="HF hidden_states index (hidden_config_ridge.py's pick)")
    parser.add_argument("--save_path", required=True, help="e.g. vectors/MODEL/steer_vector_layer19_conf_mixed.pt")
    parser.add_argument("--labels", choices=LABEL_RULES, default="conf_mixed",
                        help="conf_mixed: the release (lexicon or confidence); paper: confidence and variance")
    parser.add_argument("--normalize", action="store_true", help="save S/||S|| (the paper's variant)")
    parser.add_argument("--model_name", default=None, help="recorded in the calibration (default: from the path)")
    add_ignored_flag(parser, "--threshold", type=float,
                     why="the labels use the q25 and q75 confidence quantiles of the run (the authors' script "
                         "marks it deprecated and ignores it too)")
    args = parser.parse_args(argv)
    extract_vector(args.jsonl_path, args.hidden_dir, args.layer_id, args.save_path, args.max_files,
                   args.expected_offset, args.labels, args.normalize, args.model_name, args.verbose)


if __name__ == "__main__":
    sys.exit(main())
