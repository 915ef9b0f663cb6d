"""`python -m rebalance.organism data|train|demo|compare|study`: the organism's command line (see __init__)."""

from __future__ import annotations

import argparse
import sys

from ..errors import cli_entry
from ..files.names import RunName
from ..stages.flags import positive_int
from . import __doc__ as ORGANISM_DOC
from .demo import DemoConfig, run_demo
from .recipe import HELDOUT_MAX, HELDOUT_SIZE, SEEN_SIZE, write_sets
from .study import StudyConfig, run_study
from .sweep import compare_runs
from .train import Recipe, organism_model_dir


def seed_list(text: str) -> list[int]:
    try:
        seeds = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of integers") from None
    if not seeds or len(set(seeds)) != len(seeds):
        raise argparse.ArgumentTypeError(f"{text!r}: give distinct seeds, e.g. 0,1,2,3,4")
    return seeds


def coefficients(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(part) for part in text.replace(",", " ").split())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected numbers separated by commas or spaces, got {text!r}") from None


def heldout_size(text: str) -> int:
    size = positive_int(text)
    if size > HELDOUT_MAX:
        raise argparse.ArgumentTypeError(f"at most {HELDOUT_MAX}: only the first {HELDOUT_MAX} held-out problems are "
                                         "kept out of the organism's training")
    return size


@cli_entry
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m rebalance.organism", description=ORGANISM_DOC,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    data = commands.add_parser("data", help="write Organism_Seen and Organism_Heldout")
    data.add_argument("--out", default="Data")
    data.add_argument("--seen", type=positive_int, default=SEEN_SIZE)
    data.add_argument("--heldout", type=heldout_size, default=HELDOUT_SIZE)
    train_cmd = commands.add_parser("train", help="train the organism into the model cache (reused when there)")
    train_cmd.add_argument("--seed", type=int, default=Recipe.seed,
                           help="another training seed (a separate cached model; `organism` is always seed 0)")
    compare = commands.add_parser("compare", help="baseline, dynamic and static runs of a folder: table + PNG")
    compare.add_argument("folder")
    compare.add_argument("--temperature", type=float, default=0.0)
    compare.add_argument("--maxlen", type=positive_int, required=True)
    demo = commands.add_parser("demo", help="the whole pipeline on the organism (make demo)")
    demo.add_argument("--model", default=DemoConfig.model, help="organism, embedded, or any model name")
    demo.add_argument("--out", default=DemoConfig.out)
    demo.add_argument("--data", default=DemoConfig.data)
    demo.add_argument("--seen", type=positive_int, default=DemoConfig.seen)
    demo.add_argument("--heldout", type=heldout_size, default=DemoConfig.heldout)
    demo.add_argument("--maxlen", type=positive_int, default=DemoConfig.maxlen)
    demo.add_argument("--workers", type=positive_int, default=DemoConfig.workers)
    demo.add_argument("--batch_size", type=positive_int, default=DemoConfig.batch_size)
    demo.add_argument("--sweep", type=coefficients, default=DemoConfig.sweep,
                      help="static coefficients, e.g. --sweep=-0.25,-0.5 (commas or spaces)")
    demo.add_argument("--criterion", choices=("steer", "ridge"), default=DemoConfig.criterion)
    study = commands.add_parser("study", help="train each seed, run the pipeline, compare dynamic with a static sweep")
    study.add_argument("--seeds", type=seed_list, default=[0, 1, 2, 3, 4], help="training seeds, e.g. 0,1,2,3,4")
    study.add_argument("--out", default=StudyConfig.out)
    study.add_argument("--heldout", type=heldout_size, default=StudyConfig.heldout)
    study.add_argument("--batch_size", type=positive_int, default=StudyConfig.batch_size)
    study.add_argument("--workers", type=positive_int, default=StudyConfig.workers)
    args = parser.parse_args(argv)
    if args.command == "data":
        for path in write_sets(args.out, args.seen, args.heldout):
            print(f"wrote {path}")
    elif args.command == "train":
        print(organism_model_dir(Recipe(seed=args.seed)))
    elif args.command == "demo":
        run_demo(DemoConfig(args.model, args.out, args.data, args.seen, args.heldout, args.maxlen, args.workers,
                            args.batch_size, args.sweep, args.criterion))
    elif args.command == "study":
        run_study(args.seeds, StudyConfig(out=args.out, heldout=args.heldout, batch_size=args.batch_size,
                                          workers=args.workers))
    else:
        compare_runs(args.folder, RunName("off", args.temperature, args.maxlen).suffix)
    return 0


if __name__ == "__main__":
    sys.exit(main())
