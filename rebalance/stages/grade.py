"""Stage 5, grading (`check.py`): accuracy (pass@1, pass@k) and average response / thinking tokens of
a merged generation file, joined to the gold answers by idx; writes `<name>.graded.jsonl` and
`<name>.metrics.json` beside it, and with `--baseline` compares two runs of the same dataset side by
side (docs/method.md §11)."""

from __future__ import annotations

import argparse
import json
import os
from typing import Any

from ..errors import UsageError, cli_entry, first_line, writable
from ..examples import load_examples
from ..files.atomic import atomic_write_text
from ..files.cards import read_card_beside
from ..files.names import graded_path, lengths_png_path, metrics_path, stem_of
from ..grading.answers import FAMILIES
from ..grading.equivalence import GRADERS
from ..grading.families import family_of
from ..grading.grade import Graded, grade, metrics
from ..models import load_tokenizer, resolve_model_path
from .flags import add_ignored_flag, add_model_flags, positive_int


def build_parser(description: str = __doc__) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=description)
    add_model_flags(parser)
    parser.add_argument("--data_name", required=True, help="benchmark folder name, e.g. Math_Math500")
    parser.add_argument("--generation_path", required=True, help="merged jsonl of a run")
    parser.add_argument("--data_dir", default="./Data", help="holds {data_name}/{split}.jsonl (the gold answers)")
    parser.add_argument("--split", default="test", help="which file of the dataset folder holds the gold answers")
    add_ignored_flag(parser, "--prompt_type",
                     why="grading reads the answers from the responses; the prompt was fixed when they were generated")
    parser.add_argument("--k", type=positive_int, default=1, help="pass@k")
    parser.add_argument("--n_sampling", type=positive_int, default=None,
                        help="grade only the first N responses of each record (default: all)")
    parser.add_argument("--baseline", default=None, help="a second merged jsonl of the same dataset to compare with")
    parser.add_argument("--grader", choices=GRADERS, default="strict",
                        help="strict: per-benchmark extraction and math-verify; paper: the authors' grading rules, "
                             "blind spots included, to set numbers beside the paper's tables")
    parser.add_argument("--family", choices=FAMILIES, default=None, help="answer family for a dataset not in the table")
    parser.add_argument("--workers", type=positive_int, default=None, help="math-verify processes (default: CPU count)")
    return parser


def grade_run(path: str, args, examples, family: str, tokenizer, thinking: bool) -> tuple[Graded, dict[str, Any]]:
    graded = grade(path, examples, family, tokenizer, thinking, args.grader, args.n_sampling, args.workers)
    result = metrics(graded, args.k)
    result.update({"data_name": args.data_name, "family": family, "grader": args.grader, "k": args.k,
                   "generation_path": os.path.abspath(path), "model": args.model_name_or_path})
    card = read_card_beside(path)
    result["run_card"] = card.as_json() if card else None  # how the records were made, when known
    with writable(graded_path(path), "the outputs go beside --generation_path"):
        atomic_write_text("".join(json.dumps(r.as_json(), ensure_ascii=False) + "\n" for r in graded.records),
                          graded_path(path))
        atomic_write_text(json.dumps(result, indent=2) + "\n", metrics_path(path))
    return graded, result


COLUMNS = ("accuracy", "avg tokens", "think tokens", "truncated", "missing")


def _cells(m: dict[str, Any], k: int) -> list[str]:
    cells = [f"{m['accuracy']:.2f}"] + ([f"{m['pass_at_k'][str(k)]:.2f}"] if k > 1 else [])
    return cells + [f"{m['avg_tokens']:.1f}", f"{m['avg_think_tokens']:.1f}", f"{100 * m['truncated']:.1f}%",
                    str(len(m["missing"]))]


def format_table(runs: list[tuple[str, dict[str, Any]]], k: int) -> str:
    """One row per run; with two runs a delta row (accuracy points, token change %)."""
    header = ["run", COLUMNS[0]] + ([f"pass@{k}"] if k > 1 else []) + list(COLUMNS[1:])
    rows = [[label] + _cells(m, k) for label, m in runs]
    if len(runs) == 2:
        (_, run), (_, base) = runs
        change = lambda a, b: f"{100 * (a - b) / b:+.1f}%" if b else "n/a"  # noqa: E731
        delta = [f"{run['accuracy'] - base['accuracy']:+.2f} pts"]
        if k > 1:
            delta.append(f"{run['pass_at_k'][str(k)] - base['pass_at_k'][str(k)]:+.2f} pts")
        rows.append(["delta"] + delta + [change(run["avg_tokens"], base["avg_tokens"]),
                                         change(run["avg_think_tokens"], base["avg_think_tokens"]), "", ""])
    widths = [max(len(str(row[i])) for row in [header] + rows) for i in range(len(header))]
    line = lambda row: "  ".join(str(c).ljust(w) if i == 0 else str(c).rjust(w)  # noqa: E731
                                 for i, (c, w) in enumerate(zip(row, widths)))
    return "\n".join(line(row) for row in [header] + rows)


def run(args) -> dict[str, Any]:
    family = family_of(args.data_name, args.family)
    examples = load_examples(args.data_dir, args.data_name, split=args.split)
    for flag, path in (("--generation_path", args.generation_path), ("--baseline", args.baseline)):
        if path is not None and not os.path.isfile(path):
            raise UsageError(f"{flag}: no such file: {path}")
    try:
        tokenizer = load_tokenizer(resolve_model_path(args.model_name_or_path), args.trust_remote_code)
    except (OSError, ValueError) as err:
        raise UsageError(f"--model_name_or_path: cannot load the tokenizer of {args.model_name_or_path} "
                         f"(token counts need it): {first_line(err)}") from None
    thinking = "</think>" in tokenizer.get_vocab()
    graded, result = grade_run(args.generation_path, args, examples, family, tokenizer, thinking)
    runs = [(stem_of(args.generation_path), result)]
    report: dict[str, Any] = {"run": result}
    if args.baseline:
        base_graded, base = grade_run(args.baseline, args, examples, family, tokenizer, thinking)
        base_label = stem_of(args.baseline)
        base_label = base_label if base_label != runs[0][0] else f"{base_label} (baseline)"
        runs.append((base_label, base))
        report["baseline"] = base
        from ..reports.plots import plot_length_distributions

        png_path = lengths_png_path(args.generation_path)
        with writable(png_path, "the outputs go beside --generation_path"):
            png = plot_length_distributions({base_label: base_graded, runs[0][0]: graded}, png_path, args.data_name)
        report["lengths_png"] = png
    print(f"{args.data_name}: {len(examples)} examples, {family} answers, {args.grader} grader, "
          f"tokens counted with {args.model_name_or_path}'s tokenizer")
    print(format_table(runs, args.k))
    for label, m in runs:
        if m["missing"]:
            print(f"{label}: missing idx (counted wrong): {m['missing'][:30]}{' ...' if len(m['missing']) > 30 else ''}")
        if m["unknown_idx"]:
            print(f"{label}: idx not in the dataset (ignored): {m['unknown_idx'][:30]}")
        if m["timed_out"]:
            print(f"{label}: {m['timed_out']} comparisons timed out (judged wrong)")
    print(f"metrics: {metrics_path(args.generation_path)}")
    if "lengths_png" in report:
        print(f"length distributions: {report['lengths_png']}")
    return report


@cli_entry
def main(argv: list[str] | None = None, description: str = __doc__) -> int:
    run(build_parser(description).parse_args(argv))
    return 0
