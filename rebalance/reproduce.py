"""Reproduce the paper's table for one model: per benchmark the unsteered baseline and the ReBalance
run with the paper's evaluation settings, each merged and graded, then the report.

  bash scripts/reproduce.sh --model_name_or_path DeepSeek-R1-Distill-Qwen-1.5B [--limit 20]

Every stage is a call of this suite's own scripts through `pipeline.py`, printed before it runs; a
stage whose output is complete is skipped and an interrupted run resumes from its shards, so running
the command again after any interruption continues where it stopped.
"""

from __future__ import annotations

import argparse
import dataclasses
import glob
import os
import sys

from .datasets.sources import SOURCES
from .decoding.steering import Mode
from .errors import UsageError, cli_entry
from .examples import load_examples
from .files.names import RunName, vector_file_name
from .pipeline import Pipeline
from .version import REPO_ROOT

BENCHMARKS = tuple(name for name in SOURCES if name != "Math_Train")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="scripts/reproduce.sh", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model_name_or_path", required=True)
    parser.add_argument("--steer_vector_path", default=None,
                        help="default: the one vectors/MODEL/steer_vector_layer*_conf_mixed.pt (released or extracted)")
    parser.add_argument("--benchmarks", default=",".join(BENCHMARKS), help="comma-separated dataset folder names")
    parser.add_argument("--dataset_dir", default="./Data")
    parser.add_argument("--output_path", default="./outputs")
    parser.add_argument("--temperature", type=float, default=0.7)
    parser.add_argument("--top_p", type=float, default=0.95)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--max_generated_tokens", type=int, default=16000)
    parser.add_argument("--limit", type=int, default=None, help="only the first N examples of each benchmark")
    parser.add_argument("--num_gpus", type=int, default=1)
    parser.add_argument("--batch_size", type=int, default=16, help="rows decoding at once per GPU")
    parser.add_argument("--grader", default="strict", help="check.py --grader")
    parser.add_argument("--script", default=None, help="steered script; default: the _qwen3 one for Qwen3 models")
    parser.add_argument("--dtype", default="auto")
    parser.add_argument("--steer_layer", type=int, default=None, help="passed on when given")
    return parser


def default_vector(model_name: str) -> str:
    found = sorted(glob.glob(os.path.join(REPO_ROOT, "vectors", model_name, vector_file_name("*"))))
    if len(found) != 1:
        why = "none" if not found else f"{len(found)} ({', '.join(found)})"
        raise UsageError(f"--steer_vector_path is needed: vectors/{model_name}/ holds {why} "
                         "steer_vector_layer*_conf_mixed.pt (fetch the released ones with "
                         "`python -m rebalance.datasets.fetch vectors --out .`, or extract your own)")
    return found[0]


def reproduce(args) -> str:
    pipeline = Pipeline(args.model_name_or_path, args.dataset_dir, args.output_path, args.max_generated_tokens,
                        args.batch_size, args.num_gpus,
                        extra=("--dtype", args.dtype, *(("--limit", str(args.limit)) if args.limit else ())),
                        say=lambda line: print(line, flush=True))
    name = pipeline.name
    script = args.script or ("transformer_inference_steer_dp_qwen3.py" if "qwen3" in name.lower()
                             else "transformer_inference_steer_dp.py")
    vector = args.steer_vector_path or default_vector(name)
    benchmarks = [b for b in args.benchmarks.split(",") if b]
    expected = {b: {ex.idx for ex in load_examples(args.dataset_dir, b, args.limit)} for b in benchmarks}
    sampling = ("--temperature", str(args.temperature), "--top_p", str(args.top_p), "--seed", str(args.seed))
    dynamic = ("--steer_mode", "dynamic", "--steer_vector_path", vector)
    if args.steer_layer is not None:
        dynamic += ("--steer_layer", str(args.steer_layer))
    modes = [("baseline", RunName(Mode.OFF, args.temperature, args.max_generated_tokens), ("--steer_mode", "off")),
             ("ReBalance", RunName(Mode.DYNAMIC, args.temperature, args.max_generated_tokens), dynamic)]
    print(f"reproducing {name}: {len(benchmarks)} benchmarks x (baseline, ReBalance), temperature "
          f"{args.temperature}, top-p {args.top_p}, seed {args.seed}, {args.max_generated_tokens} new tokens"
          + (f", first {args.limit} examples each" if args.limit else ""), flush=True)
    ran = []  # the commands the pipeline ran, to say so when every stage was complete already
    counting = dataclasses.replace(pipeline, run=lambda argv, **kw: ran.append(argv) or pipeline.run(argv, **kw))
    for bench in benchmarks:
        for label, run_name, flags in modes:
            merged = counting.steered(bench, expected[bench], run_name, [*sampling, *flags], label, script)
            counting.grade(merged, bench, label, ["--grader", args.grader])
    if not ran:
        print("nothing to do: every run is complete and graded")
    pipeline.report()
    return pipeline.model_dir


@cli_entry
def main(argv: list[str] | None = None) -> int:
    reproduce(build_parser().parse_args(argv))
    return 0


if __name__ == "__main__":
    sys.exit(main())
