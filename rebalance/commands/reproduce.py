"""Reproduce the paper's table for one model: per benchmark the unsteered baseline and the ReBalance
run with the paper's evaluation settings, each merged and graded, then the report.

  bash scripts/reproduce.sh --model_name_or_path DeepSeek-R1-Distill-Qwen-1.5B [--limit 20]

Every stage is a call of this suite's own scripts, printed before it runs. A stage whose output is
complete is skipped (a merged file holding every expected idx with no shard newer than it; a
metrics file newer than its merged file), and an interrupted run resumes from its shards, so
running the command again after any interruption continues where it stopped.
"""

from __future__ import annotations

import argparse
import glob
import os
import shlex
import subprocess
import sys
from dataclasses import dataclass

from ..benchmarks.sources import SOURCES
from ..errors import UsageError, cli_entry
from ..examples import load_examples
from ..files.names import merged_path, metrics_path, shard_files, steered_stem, vector_file_name
from ..files.shards import read_records
from ..models import model_basename

BENCHMARKS = tuple(name for name in SOURCES if name != "Math_Train")
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the repository


@dataclass(frozen=True)
class Mode:
    label: str        # as printed
    base: str         # output name stem
    flags: tuple[str, ...]


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
    found = sorted(glob.glob(os.path.join(ROOT, "vectors", model_name, vector_file_name("*"))))
    if len(found) != 1:
        why = "none" if not found else f"{len(found)} ({', '.join(found)})"
        raise UsageError(f"--steer_vector_path is needed: vectors/{model_name}/ holds {why} "
                         "steer_vector_layer*_conf_mixed.pt (fetch the released ones with "
                         "`python -m rebalance.benchmarks.fetch vectors --out .`, or extract your own)")
    return found[0]


def run_is_complete(folder: str, base: str, expected: set[int]) -> bool:
    """The merged file holds every expected idx and no shard was written after it."""
    merged = merged_path(folder, base)
    if not os.path.isfile(merged):
        return False
    if any(os.path.getmtime(s) > os.path.getmtime(merged) for s in shard_files(folder, base)):
        return False
    return expected <= {record["idx"] for record in read_records(merged)}


def is_newer(path: str, than: str) -> bool:
    return os.path.isfile(path) and os.path.getmtime(path) >= os.path.getmtime(than)


def call(argv: list[str]) -> None:
    """Run one of this suite's scripts (or `-m module`) from the caller's folder, so relative paths
    in the flags mean what they meant on the command line."""
    print("$ python " + " ".join(shlex.quote(a) for a in argv), flush=True)
    target = argv if argv[0] == "-m" else [os.path.join(ROOT, argv[0]), *argv[1:]]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (ROOT, os.environ.get("PYTHONPATH")) if p))
    status = subprocess.call([sys.executable, *target], env=env)
    if status != 0:
        raise SystemExit(status)


def reproduce(args) -> str:
    model = args.model_name_or_path
    name = model_basename(model)
    script = args.script or ("transformer_inference_steer_dp_qwen3.py" if "qwen3" in name.lower()
                             else "transformer_inference_steer_dp.py")
    vector = args.steer_vector_path or default_vector(name)
    benchmarks = [b for b in args.benchmarks.split(",") if b]
    expected = {b: {ex.idx for ex in load_examples(args.dataset_dir, b, args.limit)} for b in benchmarks}
    steer_flags = ("--steer_mode", "dynamic", "--steer_vector_path", vector)
    if args.steer_layer is not None:
        steer_flags += ("--steer_layer", str(args.steer_layer))
    stem = lambda mode: steered_stem(args.temperature, args.max_generated_tokens, mode)  # noqa: E731
    modes = [Mode("baseline", stem("off"), ("--steer_mode", "off")), Mode("ReBalance", stem("dynamic"), steer_flags)]
    common = ["--model_name_or_path", model, "--dataset_dir", args.dataset_dir, "--output_path", args.output_path,
              "--max_generated_tokens", str(args.max_generated_tokens), "--temperature", str(args.temperature),
              "--top_p", str(args.top_p), "--seed", str(args.seed), "--num_gpus", str(args.num_gpus),
              "--batch_size", str(args.batch_size), "--dtype", args.dtype]
    if args.limit:
        common += ["--limit", str(args.limit)]
    print(f"reproducing {name}: {len(benchmarks)} benchmarks x (baseline, ReBalance), temperature "
          f"{args.temperature}, top-p {args.top_p}, seed {args.seed}, {args.max_generated_tokens} new tokens"
          + (f", first {args.limit} examples each" if args.limit else ""), flush=True)
    ran = 0
    for bench in benchmarks:
        folder = os.path.join(args.output_path, name, bench)
        for mode in modes:
            merged = merged_path(folder, mode.base)
            if run_is_complete(folder, mode.base, expected[bench]):
                print(f"skip {bench} {mode.label} run: {merged} holds all {len(expected[bench])} examples")
            else:
                print(f"== {bench}: {mode.label} run", flush=True)
                call([script, *common, "--dataset", bench, *mode.flags])
                call(["merge_shards.py", "--dir", folder, "--base", mode.base, "--expected", str(len(expected[bench]))])
                ran += 1
            metrics = metrics_path(merged)
            if is_newer(metrics, merged):
                print(f"skip {bench} {mode.label} grading: {metrics} is up to date")
            else:
                print(f"== {bench}: grading the {mode.label} run", flush=True)
                call(["check.py", "--model_name_or_path", model, "--data_name", bench, "--data_dir", args.dataset_dir,
                      "--generation_path", merged, "--grader", args.grader])
                ran += 1
    if not ran:
        print("nothing to do: every run is complete and graded")
    model_dir = os.path.join(args.output_path, name)
    print(f"== report: {model_dir}", flush=True)
    call(["-m", "rebalance.reports.report", model_dir])
    return model_dir


@cli_entry
def main(argv: list[str] | None = None) -> int:
    reproduce(build_parser().parse_args(argv))
    return 0


if __name__ == "__main__":
    sys.exit(main())
