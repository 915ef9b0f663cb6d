"""One rank's pass over its examples, shared by the collection and the steered runs: resume from
the shard, decode in flight, show progress, write each result as soon as its example ends."""

from __future__ import annotations

import os
import sys
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Iterator, Sequence

import torch
from tqdm.auto import tqdm

from .analysis.collected import read_run_tag
from .control import ControlFunction
from .decode import engine_for, records
from .decoding.engine import Engine
from .decoding.memory import MemoryPlan, available_bytes, check_plan, kv_bytes_per_token, parameter_count
from .decoding.records import Decoded, make_table
from .decoding.sampling import SAMPLER
from .decoding.sites import num_residual_sites, text_config
from .decoding.steps import STEP_RULE
from .errors import UsageError
from .examples import Example, dataset_file, load_examples, prompt_fingerprint, prompt_ids
from .files.atomic import atomic_torch_save
from .files.cards import RunCard, describe, differences, model_files_hash, provenance, sha256_file
from .files.names import card_files, collection_stem, hidden_files, hidden_path, shard_path
from .files.shards import ShardWriter, hold_run
from .models import (
    DTYPES,
    load_error,
    load_model,
    load_tokenizer,
    model_basename,
    model_config,
    model_shape,
    resolve_dtype,
    resolve_model_path,
)
from .parallel import Rank, launched_rank, run_data_parallel
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
    fit_batch: bool = field(default=False, kw_only=True)  # narrow --batch_size to what memory holds


@dataclass(frozen=True)
class CollectJob(RunJob):
    hs_device: str = "auto"
    run_tag: dict | None = None  # stem and card fingerprint, stored in every hidden file

    @property
    def hidden_dir(self) -> str:
        """Beside the shards, as the authors' script writes them (their README's --hidden_dir)."""
        return self.out_dir


def tagged(hidden: dict, run_tag: dict | None) -> dict:
    """A hidden-state dict with the run that wrote it (`"run"`: stem and card fingerprint), so the
    analysis can tell a file of another run in the same folder."""
    return {**hidden, "run": run_tag} if run_tag else hidden


def collect_rank(rank: Rank, job: CollectJob) -> None:
    examples = load_examples(job.dataset_dir, job.dataset, job.limit)
    model, tokenizer = load_model(job.model, rank.device, job.dtype, job.trust_remote_code)
    table = make_table(model, tokenizer)
    keep_on = rank.device if job.hs_device == "cuda" else "cpu"
    engine = engine_for(model, tokenizer, table, width=job.batch_size, max_new_tokens=job.max_new_tokens,
                        capture_on=keep_on)
    run_rank(rank, examples, shard_path(job.out_dir, job.base, rank.rank), engine,
             before_append=lambda res: save_hidden(tagged(res.hidden, job.run_tag), job.hidden_dir, res.record["idx"]),
             desc=f"collect {job.dataset}")


def collection_job(model_name_or_path: str, dataset_dir: str, dataset: str, output_path: str,
                   max_new_tokens: int, temperature: float, batch_size: int, limit: int | None,
                   dtype: str | None, trust_remote_code: bool, hs_device: str = "auto",
                   fit_batch: bool = False) -> CollectJob:
    """Check the inputs up front (before any worker starts) and name the outputs (docs/method.md §3)."""
    load_examples(dataset_dir, dataset, limit)  # fails early, with file:line, on bad data
    model = resolve_model_path(model_name_or_path)
    model_shape(model, trust_remote_code)  # an unreadable config fails here, not in every worker
    name = model_basename(model_name_or_path)
    out_dir = os.path.join(output_path, name, dataset)
    base = collection_stem(temperature, max_new_tokens)
    return CollectJob(model, name, dataset_dir, dataset, out_dir, base, max_new_tokens, batch_size, limit,
                      dtype, trust_remote_code, hs_device=hs_device, fit_batch=fit_batch)


def run_card(job: RunJob, num_gpus: int, compared: dict, recorded: dict) -> RunCard:
    """The card of a run: what both kinds of run compare, then what each adds."""
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    common = {"model": job.model_name, "model_files": model_files_hash(job.model), "dataset": job.dataset,
              "dataset_sha256": sha256_file(dataset_file(job.dataset_dir, job.dataset)),
              "max_new_tokens": job.max_new_tokens, "dtype": str(resolve_dtype(job.dtype, device)).replace("torch.", ""),
              "step_rule": STEP_RULE, "prompt_sha256": prompt_fingerprint(job.model)}
    where = {"model_path": job.model, "dataset_file": os.path.abspath(dataset_file(job.dataset_dir, job.dataset)),
             "batch_size": job.batch_size, "num_gpus": num_gpus, "limit": job.limit}
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


def check_hidden_owner(job: CollectJob, card: RunCard) -> None:
    """Refuse to write hidden files over those of another collection run in the same folder (they
    share the release's names, hidden_{idx}.pt, whatever the run)."""
    files = hidden_files(job.hidden_dir)
    if not files:
        return
    tag = read_run_tag(files[0])
    if tag is None:
        print(f"warning: {job.hidden_dir} holds hidden files without a run tag (an earlier version wrote them); "
              "this run overwrites those of the examples it decodes", file=sys.stderr)
    elif tag.get("fingerprint") != card.fingerprint:
        owner = str(tag.get("stem"))
        cards = card_files(job.out_dir, owner)
        why = describe(differences(RunCard.read(cards[0]).compared, card.compared), f"in {owner}", "now") \
            if cards else f"  (no card of {owner} here)"
        raise UsageError(f"{job.hidden_dir} holds the hidden files of another collection run ({owner}), which this "
                         f"run would overwrite:\n{why}\nCollect into another --output_path.")


def plan_memory(job: RunJob, num_gpus: int) -> RunJob:
    """The job with the width its workers can hold (docs/method.md §14): the cache of every row at
    full length beside the weights, checked before any worker loads anything."""
    device = "cuda:0" if torch.cuda.is_available() else "cpu"
    available = available_bytes(device)
    if available is None:  # nothing to measure against: the run goes on as asked
        return job
    workers = 1 if launched_rank() is not None else num_gpus
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
    width = check_plan(plan, where, job.fit_batch)
    return job if width == rows else replace(job, batch_size=width)


def run_collection(job: CollectJob, num_gpus: int) -> None:
    card = run_card(job, num_gpus, {"kind": "collection", "decoding": "greedy"}, {"hs_device": job.hs_device})
    check_hidden_owner(job, card)
    job = replace(plan_memory(job, num_gpus), run_tag={"stem": job.base, "fingerprint": card.fingerprint})
    run_data_parallel(collect_rank, job, num_gpus, claim(job, card))


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


def steering_fields(job: SteerJob) -> dict:
    """What a steered run compares beside the common fields: only what its mode uses (a baseline is
    not refused for another vector, a greedy run not for another seed)."""
    steered, dynamic, sampled = job.mode != "off", job.mode == "dynamic", job.temperature > 0
    return {"kind": "steered", "mode": job.mode,
            "vector_sha256": sha256_file(job.vector_path) if steered else None,
            "steer_layer": job.steer_layer if steered else None, "inject_at": job.inject_at if steered else None,
            "constants": dict(job.constants) if dynamic else None, "coef": job.coef if steered else None,
            "temperature": job.temperature, "top_p": job.top_p if sampled else None,
            "seed": job.seed if sampled else None, "sampler": SAMPLER if sampled else None,
            "repetition_penalty": job.repetition_penalty}


def steering_card(job: SteerJob, num_gpus: int) -> RunCard:
    return run_card(job, num_gpus, steering_fields(job), {"vector_path": job.vector_path and
                                                          os.path.abspath(job.vector_path)})


def run_steering(job: SteerJob, num_gpus: int, card: RunCard | None = None) -> None:
    card = card or steering_card(job, num_gpus)
    run_data_parallel(steer_rank, plan_memory(job, num_gpus), num_gpus, claim(job, card))
