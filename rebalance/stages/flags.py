"""Flags shared by the scripts, with types that reject bad values by naming the flag, and the
flags of the authors' scripts that have no meaning here (accepted, with a note)."""

from __future__ import annotations

import argparse
import sys


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def fraction(text: str) -> float:
    """A number strictly between 0 and 1 (a test share, a probability)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {value}")
    return value


class IgnoredFlag(argparse.Action):
    """A flag of the authors' scripts with no meaning in this suite: parsing it prints one line on
    stderr saying so and why, and the run goes on, so their command lines work unchanged."""

    def __init__(self, option_strings, dest, why: str = "", **kwargs):
        self.why = why
        kwargs.setdefault("help", f"accepted and ignored: {why}")
        super().__init__(option_strings, dest, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None):
        print(f"note: {option_string} is ignored: {self.why}", file=sys.stderr)
        setattr(namespace, self.dest, values)


def add_ignored_flag(parser: argparse.ArgumentParser, flag: str, why: str, **kwargs) -> None:
    parser.add_argument(flag, action=IgnoredFlag, why=why, default=None, **kwargs)


def add_model_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model_name_or_path", default="embedded",
                        help="local HF folder, .gguf file, hub id, or 'embedded' (SmolLM2-135M-Instruct)")
    parser.add_argument("--trust_remote_code", action="store_true", help="allow the model's own code (off by default)")
    parser.add_argument("--dtype", default="auto", help="auto (fp32 on CPU, bf16 on CUDA), float32, bfloat16, float16")


def add_run_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dataset_dir", default="./Data")
    parser.add_argument("--dataset", required=True, help="folder under --dataset_dir holding test.jsonl")
    parser.add_argument("--output_path", default="./outputs")
    parser.add_argument("--max_generated_tokens", type=positive_int, default=16384,
                        help="new tokens per response (the authors' scripts default to 512, which cuts most "
                             "reasoning traces short)")
    parser.add_argument("--num_gpus", type=positive_int, default=1,
                        help="data-parallel workers, one per GPU (CPU workers without CUDA)")
    parser.add_argument("--batch_size", type=positive_int, default=1)
    parser.add_argument("--fit_batch", action="store_true",
                        help="when --batch_size rows at full length would not fit in memory beside the weights, "
                             "run with the widest batch that does (without it the run stops, naming the numbers)")
    parser.add_argument("--limit", type=positive_int, default=None, help="only the first N examples")
    parser.add_argument("--compile", action="store_true",
                        help="decode with a compiled step (torch.compile; CUDA graphs on a GPU): the same tokens, "
                             "faster once compiled; the first steps of each shape pay for compiling")


def add_collection_input_flags(parser: argparse.ArgumentParser) -> None:
    """The inputs of both analysis stages: one collection run (docs/method.md §4)."""
    parser.add_argument("--jsonl_path", required=True, help="records of the collection run (merged or a shard)")
    parser.add_argument("--hidden_dir", required=True,
                        help="folder of the run's hidden_{idx}.pt files: its dataset folder, beside the shards")
    parser.add_argument("--max_files", type=positive_int, default=None,
                        help="only the first N records (default: all of them; the authors' scripts default to "
                             "150 and 100)")
    parser.add_argument("--expected_offset", type=int, default=1, help="row j pairs with confidence j + offset")
    parser.add_argument("--verbose", action="store_true", help="name every skipped record and why")
