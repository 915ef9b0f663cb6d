"""One rank's pass over its examples, shared by the collection and the steered runs: resume from
the shard, decode in flight, show progress, write each result as soon as its example ends."""

from __future__ import annotations

import os
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Sequence

from tqdm.auto import tqdm

from .control import ControlFunction
from .decode import engine_for, records
from .decoding.engine import Engine
from .decoding.records import Decoded, make_table
from .decoding.sites import num_residual_sites, text_config
from .examples import Example, load_examples
from .files.atomic import atomic_torch_save
from .files.names import collection_stem, hidden_path, shard_path
from .files.shards import ShardWriter, hold_shards
from .models import load_model, model_basename, model_shape, resolve_model_path
from .parallel import Rank, run_data_parallel
from .steering import SteeringSetup, load_vector, site_index


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


def save_hidden(hidden: dict, hidden_dir: str, idx: int) -> None:
    os.makedirs(hidden_dir, exist_ok=True)
    atomic_torch_save(hidden, hidden_path(hidden_dir, idx))


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
    engine = engine_for(model, tokenizer, table, width=job.batch_size, max_new_tokens=job.max_new_tokens,
                        capture_on=keep_on)
    run_rank(rank, examples, shard_path(job.out_dir, job.base, rank.rank), engine,
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
    base = collection_stem(temperature, max_new_tokens)
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
    engine = engine_for(model, tokenizer, make_table(model, tokenizer), width=job.batch_size,
                        max_new_tokens=job.max_new_tokens, steering=setup, temperature=job.temperature,
                        top_p=job.top_p, repetition_penalty=job.repetition_penalty, seed=job.seed)
    run_rank(rank, examples, shard_path(job.out_dir, job.base, rank.rank), engine, steered=True,
             desc=f"{job.mode} {job.dataset}")


def run_steering(job: SteerJob, num_gpus: int) -> None:
    run_data_parallel(steer_rank, job, num_gpus, shard_locks(job))
