"""`python -m rebalance.organism data|train|compare`: the organism's command line (see __init__)."""

from __future__ import annotations

import argparse
import sys

from ..commands.flags import positive_int
from ..errors import cli_entry
from ..files.names import RunName
from . import __doc__ as ORGANISM_DOC
from .recipe import HELDOUT_SIZE, SEEN_SIZE, write_sets
from .sweep import compare_runs
from .train import Recipe, organism_model_dir


@cli_entry
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m rebalance.organism", description=ORGANISM_DOC,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    data = commands.add_parser("data", help="write Organism_Seen and Organism_Heldout")
    data.add_argument("--out", default="Data")
    data.add_argument("--seen", type=positive_int, default=SEEN_SIZE)
    data.add_argument("--heldout", type=positive_int, default=HELDOUT_SIZE)
    train_cmd = commands.add_parser("train", help="train the organism into the model cache (reused when there)")
    train_cmd.add_argument("--seed", type=int, default=Recipe.seed,
                           help="another training seed (a separate cached model; `organism` is always seed 0)")
    compare = commands.add_parser("compare", help="baseline, dynamic and static runs of a folder: table + PNG")
    compare.add_argument("folder")
    compare.add_argument("--temperature", type=float, default=0.0)
    compare.add_argument("--maxlen", type=positive_int, required=True)
    args = parser.parse_args(argv)
    if args.command == "data":
        for path in write_sets(args.out, args.seen, args.heldout):
            print(f"wrote {path}")
    elif args.command == "train":
        print(organism_model_dir(Recipe(seed=args.seed)))
    else:
        compare_runs(args.folder, RunName("off", args.temperature, args.maxlen).suffix)
    return 0


if __name__ == "__main__":
    sys.exit(main())
