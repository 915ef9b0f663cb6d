"""Stage 1, collection (`transformer_inference_dp.py`): greedy generation on the seen set, recording
each step's confidence and the hidden state of every layer at each step start, in one pass
(docs/method.md §3). Writes `origin_temp{T}_maxlen{N}.shard{r}.jsonl` with its run card and
`hidden_{idx}.pt` beside it."""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass, replace

from ..analysis.collected import read_run_tag
from ..decoding.decode import engine_for
from ..decoding.records import make_table
from ..errors import UsageError, cli_entry
from ..examples import load_examples
from ..files.atomic import atomic_torch_save
from ..files.cards import RunCard, describe, differences
from ..files.names import card_files, collection_stem, hidden_files, hidden_path, shard_path
from ..models import load_model
from ..parallel import Rank, run_data_parallel
from .flags import add_ignored_flag, add_model_flags, add_run_flags
from .shared import RunJob, claim, plan_memory, run_card, run_rank, target_fields


@dataclass(frozen=True)
class CollectJob(RunJob):
    hs_device: str = "auto"
    run_tag: dict | None = None  # stem and card fingerprint, stored in every hidden file

    @property
    def hidden_dir(self) -> str:
        """Beside the shards, as the authors' script writes them (their README's --hidden_dir)."""
        return self.out_dir


def build_parser(description: str = __doc__) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=description)
    add_model_flags(parser)
    add_run_flags(parser)
    parser.add_argument("--temperature", type=float, default=0.7,
                        help="only named in the output file (origin_temp{T}_...), as in the authors' script: "
                             "decoding is always greedy")
    parser.add_argument("--top_p", type=float, default=0.95, help="unused, as --temperature: decoding is greedy")
    parser.add_argument("--hs_device", choices=("auto", "cuda", "cpu"), default="auto",
                        help="where captured hidden rows wait until their example is written: cpu (and auto) "
                             "moves them off the GPU at every step, cuda keeps them on the GPU")
    add_ignored_flag(parser, "--score_dtype", choices=("bf16", "fp16", "fp32"),
                     why="confidences come from the logits generation already computes (softmax in float32); "
                         "there is no separate scoring pass whose precision could be chosen")
    return parser


def make_job(args: argparse.Namespace) -> CollectJob:
    """The inputs checked up front (before any worker starts) and the outputs named."""
    fields = target_fields(args, collection_stem(args.temperature, args.max_generated_tokens))
    return CollectJob(**fields, hs_device=args.hs_device)


def save_hidden(hidden: dict, hidden_dir: str, idx: int) -> None:
    os.makedirs(hidden_dir, exist_ok=True)
    atomic_torch_save(hidden, hidden_path(hidden_dir, idx))


def tagged(hidden: dict, run_tag: dict | None) -> dict:
    """A hidden-state dict with the run that wrote it (`"run"`: stem and card fingerprint), so the
    analysis can tell a file of another run in the same folder."""
    return {**hidden, "run": run_tag} if run_tag else hidden


def collect_rank(rank: Rank, job: CollectJob) -> None:
    examples = load_examples(job.dataset_dir, job.dataset, job.limit)
    model, tokenizer = load_model(job.model, rank.device, job.dtype, job.trust_remote_code)
    keep_on = rank.device if job.hs_device == "cuda" else "cpu"
    engine = engine_for(model, tokenizer, make_table(model, tokenizer), width=job.batch_size,
                        max_new_tokens=job.max_new_tokens, capture_on=keep_on)
    if job.compile:
        engine.compile()
    run_rank(rank, examples, shard_path(job.out_dir, job.base, rank.rank), engine,
             before_append=lambda res: save_hidden(tagged(res.hidden, job.run_tag), job.hidden_dir, res.record["idx"]),
             desc=f"collect {job.dataset}")


def check_hidden_owner(job: CollectJob, card: RunCard) -> None:
    """Refuse to write hidden files over those of another collection run in the same folder (they
    share the release's names, hidden_{idx}.pt, whatever the run)."""
    files = hidden_files(job.hidden_dir)
    if not files:
        return
    tag = read_run_tag(files[0])
    if tag is None:
        print(f"warning: {job.hidden_dir} holds hidden files without a run tag (not written by this suite); "
              "this run overwrites those of the examples it decodes", file=sys.stderr)
    elif tag.get("fingerprint") != card.fingerprint:
        owner = str(tag.get("stem"))
        cards = card_files(job.out_dir, owner)
        why = describe(differences(RunCard.read(cards[0]).compared, card.compared), f"in {owner}", "now") \
            if cards else f"  (no card of {owner} here)"
        raise UsageError(f"{job.hidden_dir} holds the hidden files of another collection run ({owner}), which this "
                         f"run would overwrite:\n{why}\nCollect into another --output_path.")


def run(job: CollectJob) -> None:
    card = run_card(job, {"kind": "collection", "decoding": "greedy"}, {"hs_device": job.hs_device})
    check_hidden_owner(job, card)
    job = replace(plan_memory(job), run_tag={"stem": job.base, "fingerprint": card.fingerprint})
    run_data_parallel(collect_rank, job, job.num_gpus, claim(job, card))


@cli_entry
def main(argv: list[str] | None = None, description: str = __doc__) -> int:
    job = make_job(build_parser(description).parse_args(argv))
    run(job)
    print(f"records: {job.out_dir}/{job.base}.shard*.jsonl\nhidden states: {job.hidden_dir}/hidden_{{idx}}.pt")
    return 0


if __name__ == "__main__":
    sys.exit(main())
