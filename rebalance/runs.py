"""One rank's pass over its examples, shared by the collection and the steered runs: resume from
the shard, decode in flight, show progress, write each result as soon as its example ends."""

from __future__ import annotations

import os
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator, Sequence

from tqdm.auto import tqdm

from .collect import Collected, collect_stream, make_table, save_hidden
from .control import ControlFunction
from .data import Example, load_examples
from .models import load_model, model_basename, model_shape, num_residual_sites, resolve_model_path, text_config
from .steering import SteeringSetup, load_vector, site_index, steer_stream
from .parallel import Rank, run_data_parallel
from .shards import ShardWriter, hold_shards, shard_path


def run_rank(rank: Rank, examples: Sequence[Example], shard_file: str,
             process: Callable[[Sequence[Example]], Iterable[Collected]],
             before_append: Callable[[Collected], None] | None = None, desc: str = "") -> ShardWriter:
    """Run this rank's examples not yet in its shard; `process` streams results as examples end
    (in-flight batching), and each is written at once."""
    writer = ShardWriter(shard_file)
    mine = [ex for ex in examples if rank.owns(ex.idx)]
    todo = [ex for ex in mine if ex.idx not in writer.done]
    with tqdm(total=len(mine), initial=len(mine) - len(todo), position=rank.rank, desc=f"{desc} rank {rank.rank}",
              unit="ex", dynamic_ncols=True) as bar:
        for result in process(todo):
            if before_append is not None:
                before_append(result)  # e.g. the hidden file, renamed into place first
            writer.append(result.record)
            bar.update(1)
    return writer


@dataclass(frozen=True)
class RunJob:
    """What every run needs, checked in the parent and handed (pickled) to each rank."""

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


@dataclass(frozen=True)
class CollectJob(RunJob):
    policy: str = "avg2"
    hs_device: str = "auto"

    @property
    def hidden_dir(self) -> str:
        """Beside the shards, as the authors' script writes them (their README's --hidden_dir)."""
        return self.out_dir


def collect_rank(rank: Rank, job: CollectJob) -> None:
    examples = load_examples(job.dataset_dir, job.dataset, job.limit)
    model, tokenizer = load_model(job.model, rank.device, job.dtype, job.trust_remote_code)
    table = make_table(model, tokenizer)
    keep_on = rank.device if job.hs_device == "cuda" else "cpu"
    run_rank(rank, examples, shard_path(job.out_dir, job.base, rank.rank),
             lambda todo: collect_stream(model, tokenizer, table, todo, job.max_new_tokens, job.policy,
                                         rows_device=keep_on, width=job.batch_size),
             before_append=lambda res: save_hidden(res.hidden, job.hidden_dir, res.record["idx"]),
             desc=f"collect {job.dataset}")


def collection_job(model_name_or_path: str, dataset_dir: str, dataset: str, output_path: str,
                   max_new_tokens: int, temperature: float, batch_size: int, limit: int | None,
                   dtype: str | None, trust_remote_code: bool, hs_device: str = "auto") -> CollectJob:
    """Check the inputs up front (before any worker starts) and name the outputs (docs/method.md §3)."""
    load_examples(dataset_dir, dataset, limit)  # fails early, with file:line, on bad data
    model = resolve_model_path(model_name_or_path)
    model_shape(model, trust_remote_code)  # an unreadable config fails here, not in every worker
    name = model_basename(model_name_or_path)
    out_dir = os.path.join(output_path, name, dataset)
    base = f"origin_temp{temperature}_maxlen{max_new_tokens}"
    return CollectJob(model, name, dataset_dir, dataset, out_dir, base, max_new_tokens, batch_size, limit,
                      dtype, trust_remote_code, hs_device=hs_device)


def shard_locks(job: RunJob) -> Callable[[Sequence[int]], Any]:
    """Hold the lock of every shard the given ranks write, and say so (a second run on the same
    output stops with the holder's pid instead of interleaving records)."""
    @contextmanager
    def hold(ranks: Sequence[int]) -> Iterator[None]:
        paths = [shard_path(job.out_dir, job.base, rank) for rank in ranks]
        with hold_shards(paths):
            print(f"writing {', '.join(os.path.basename(p) for p in paths)} in {job.out_dir} (pid {os.getpid()})",
                  flush=True)
            yield
    return hold


def run_collection(job: CollectJob, num_gpus: int) -> None:
    run_data_parallel(collect_rank, job, num_gpus, shard_locks(job))


@dataclass(frozen=True)
class SteerJob(RunJob):
    vector_path: str | None
    steer_layer: int
    inject_at: str
    mode: str
    coef: float
    constants: dict
    temperature: float
    top_p: float
    repetition_penalty: float
    seed: int


def steer_rank(rank: Rank, job: SteerJob) -> None:
    examples = load_examples(job.dataset_dir, job.dataset, job.limit)
    model, tokenizer = load_model(job.model, rank.device, job.dtype, job.trust_remote_code)
    hidden_size = text_config(model).hidden_size
    steering = job.mode != "off"
    setup = SteeringSetup(vector=load_vector(job.vector_path, hidden_size) if steering else None,
                          site=site_index(num_residual_sites(model), job.steer_layer, job.inject_at) if steering else -1,
                          mode=job.mode, coef=job.coef,
                          control=ControlFunction(**job.constants) if job.mode == "dynamic" else None)
    table = make_table(model, tokenizer)
    run_rank(rank, examples, shard_path(job.out_dir, job.base, rank.rank),
             lambda todo: steer_stream(model, tokenizer, table, todo, setup, job.max_new_tokens, job.temperature,
                                       job.top_p, job.repetition_penalty, seed=job.seed, width=job.batch_size),
             desc=f"{job.mode} {job.dataset}")


def run_steering(job: SteerJob, num_gpus: int) -> None:
    run_data_parallel(steer_rank, job, num_gpus, shard_locks(job))
