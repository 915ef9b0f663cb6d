"""What the two decoding stages (collect, steer) share: the job's common fields, one rank's pass
over its examples (resume from the shard, decode in flight, show progress, write each result as
soon as its example ends), the run card, the claim on the shards and the memory plan."""

from __future__ import annotations

import argparse
import os
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Iterator, Sequence

import torch
from tqdm.auto import tqdm

from ..decoding.decode import records
from ..decoding.engine import Engine
from ..decoding.memory import MemoryPlan, available_bytes, fit_plan, kv_bytes_per_token, parameter_count
from ..decoding.records import Decoded
from ..decoding.steps import STEP_RULE
from ..examples import Example, dataset_file, load_examples, prompt_fingerprint, prompt_ids
from ..files.cards import RunCard, model_files_hash, provenance, sha256_file
from ..files.names import shard_path
from ..files.shards import ShardWriter, hold_run
from ..models import (
    DTYPES,
    load_error,
    load_tokenizer,
    model_basename,
    model_config,
    model_shape,
    resolve_dtype,
    resolve_model_path,
)
from ..parallel import Rank, launched_rank


def run_rank(rank: Rank, examples: Sequence[Example], shard_file: str, engine: Engine, steered: bool = False,
             before_append: Callable[[Decoded], None] | None = None, desc: str = "") -> ShardWriter:
    """Run this rank's examples not yet in its shard on `engine` (in flight), writing each result
    as soon as its example ends. The engine's hooks live exactly as long as this call."""
    writer = ShardWriter(shard_file)
    mine = [ex for ex in examples if rank.owns(ex.idx)]
    todo = [ex for ex in mine if ex.idx not in writer.done]
    with engine, tqdm(total=len(mine), initial=len(mine) - len(todo), position=rank.rank,
                      desc=f"{desc} rank {rank.rank}", unit="ex", dynamic_ncols=True) as bar:
        for result in records(engine, todo, steered=steered):
            if before_append is not None:
                before_append(result)  # e.g. the hidden file, renamed into place first
            writer.append(result.record)
            bar.update(1)
    return writer


@dataclass(frozen=True)
class RunJob:
    """What every decoding run needs, checked in the parent and handed (pickled) to each rank."""

    model: str           # resolved local path or hub id
    model_name: str      # basename for output paths
    dataset_dir: str
    dataset: str
    out_dir: str
    base: str            # shard file name stem
    max_new_tokens: int
    batch_size: int
    limit: int | None
    dtype: str | None
    trust_remote_code: bool
    num_gpus: int = field(default=1, kw_only=True)        # data-parallel workers
    fit_batch: bool = field(default=False, kw_only=True)  # narrow --batch_size to what memory holds
    compile: bool = field(default=False, kw_only=True)    # decode with a compiled step


def target_fields(args: argparse.Namespace, base: str) -> dict[str, Any]:
    """The fields every decoding job takes from the flags of `add_model_flags` and `add_run_flags`,
    checked before any worker starts: bad data fails with file:line, an unreadable model config
    here rather than in every worker."""
    load_examples(args.dataset_dir, args.dataset, args.limit)
    model = resolve_model_path(args.model_name_or_path)
    model_shape(model, args.trust_remote_code)
    name = model_basename(args.model_name_or_path)
    return dict(model=model, model_name=name, dataset_dir=args.dataset_dir, dataset=args.dataset,
                out_dir=os.path.join(args.output_path, name, args.dataset), base=base,
                max_new_tokens=args.max_generated_tokens, batch_size=args.batch_size, limit=args.limit,
                dtype=args.dtype, trust_remote_code=args.trust_remote_code, num_gpus=args.num_gpus,
                fit_batch=args.fit_batch, compile=args.compile)


def run_card(job: RunJob, compared: dict, recorded: dict) -> RunCard:
    """The card of a run: what both kinds of run compare, then what each adds."""
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    common = {"model": job.model_name, "model_files": model_files_hash(job.model), "dataset": job.dataset,
              "dataset_sha256": sha256_file(dataset_file(job.dataset_dir, job.dataset)),
              "max_new_tokens": job.max_new_tokens, "dtype": str(resolve_dtype(job.dtype, device)).replace("torch.", ""),
              "step_rule": STEP_RULE, "prompt_sha256": prompt_fingerprint(job.model)}
    where = {"model_path": job.model, "dataset_file": os.path.abspath(dataset_file(job.dataset_dir, job.dataset)),
             "batch_size": job.batch_size, "num_gpus": job.num_gpus, "limit": job.limit, "compile": job.compile}
    return RunCard({**compared, **common}, {**where, **recorded}, provenance())


def claim(job: RunJob, card: RunCard) -> Callable[[Sequence[int]], Any]:
    """Compare the cards, lock the shards the given ranks write and write their cards, and say so
    (a second run on the same output stops with the holder's pid instead of interleaving records)."""
    @contextmanager
    def hold(ranks: Sequence[int]) -> Iterator[None]:
        with hold_run(job.out_dir, job.base, ranks, card):
            paths = [shard_path(job.out_dir, job.base, rank) for rank in ranks]
            print(f"writing {', '.join(os.path.basename(p) for p in paths)} in {job.out_dir} (pid {os.getpid()})",
                  flush=True)
            yield
    return hold


def plan_memory(job: RunJob) -> RunJob:
    """The job with the width its workers can hold (docs/method.md §14): the cache of every row at
    full length beside the weights, checked before any worker loads anything."""
    device = "cuda:0" if torch.cuda.is_available() else "cpu"
    available = available_bytes(device)
    if available is None:  # nothing to measure against: the run goes on as asked
        return job
    workers = 1 if launched_rank() is not None else job.num_gpus
    where = f"on {device}" if device != "cpu" else "in RAM" + (f" for each of {workers} workers" if workers > 1 else "")
    if device == "cpu":
        available //= workers  # CPU workers share the machine's memory, each with its own weights and cache
    text = model_config(job.model, job.trust_remote_code)
    itemsize = resolve_dtype(job.dtype, torch.device(device)).itemsize
    stored = str(getattr(text, "dtype", None) or getattr(text, "torch_dtype", None)).replace("torch.", "")
    params = parameter_count(job.model, DTYPES.get(stored, torch.float32).itemsize) or 0
    try:
        tokenizer = load_tokenizer(job.model, job.trust_remote_code)
    except (OSError, ValueError) as err:
        raise load_error(job.model_name, err) from None
    examples = load_examples(job.dataset_dir, job.dataset, job.limit)
    longest = max((len(prompt_ids(tokenizer, ex.problem)) for ex in examples), default=0)
    rows = max(1, min(job.batch_size, -(-len(examples) // workers)))  # no wider than a worker's share
    plan = MemoryPlan(rows, longest + job.max_new_tokens, kv_bytes_per_token(text, itemsize), text.vocab_size,
                      params * itemsize, available)
    width = fit_plan(plan, where, job.fit_batch)
    return job if width == rows else replace(job, batch_size=width)


