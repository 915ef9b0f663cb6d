"""Decoding examples into records with the suite's prompt: the collection run (greedy, hidden
states captured at every step start) and the steered run (any `--steer_mode`) are one engine with
different plugins (docs/method.md §3, §8, §14).

`engine_for` builds the engine, `records` maps what it finishes to records; the caller registers
the hooks by entering the engine:

    with engine_for(model, tokenizer, table, width=8, max_new_tokens=512, steering=setup) as engine:
        for result in records(engine, examples):
            ...

`collect_stream` / `steer_stream` (finish order) and `collect_batch` / `steer_batch` (input order)
do that for a list of examples and return lists.
"""

from __future__ import annotations

from typing import Iterable, Iterator, Sequence

import torch

from ..examples import Example, prompt_ids
from .capture import HiddenCapture
from .engine import Engine
from .records import Decoded, decoded, in_order
from .sampling import GREEDY, Sampling
from .steering import Mode, Steerer, SteeringSetup
from .steps import TokenTable


def engine_for(model, tokenizer, table: TokenTable, *, width: int, max_new_tokens: int,
               steering: SteeringSetup | None = None, capture_on: str | torch.device | None = None,
               processors: Sequence = (), sampling: Sampling = GREEDY) -> Engine:
    """An engine with the suite's prompt; a steering setup (mode other than off) adds the steerer,
    `capture_on` (where captured rows wait) adds hidden-state capture."""
    plugins = []
    if steering is not None and steering.mode != Mode.OFF:
        plugins.append(Steerer(model, steering))
    if capture_on is not None:
        plugins.append(HiddenCapture(model, capture_on))
    return Engine(model, tokenizer, table, prompt=lambda ex: prompt_ids(tokenizer, ex.problem), width=width,
                  max_new_tokens=max_new_tokens, processors=processors, sampling=sampling, plugins=plugins)


def records(engine: Engine, examples: Iterable[Example], steered: bool = False) -> Iterator[Decoded]:
    """Each example's record as soon as it ends (inside the caller's `with engine:`). A steered
    run's records carry `steer_coefs`, empty in an unsteered baseline."""
    for done in engine.run(examples):
        result = decoded(done, engine.model, engine.tokenizer, engine.record_fields)
        if steered:
            result.record.setdefault("steer_coefs", [])
        yield result


def collect_stream(model, tokenizer, table: TokenTable, examples: Sequence[Example], max_new_tokens: int,
                   processors: Sequence = (), rows_device: str | torch.device = "cpu", width: int = 1) -> list[Decoded]:
    """Greedy collection, `width` in flight, results in the order examples ended."""
    with engine_for(model, tokenizer, table, width=width, max_new_tokens=max_new_tokens, capture_on=rows_device,
                    processors=processors) as engine:
        return list(records(engine, examples))


def collect_batch(model, tokenizer, table: TokenTable, examples: Sequence[Example], max_new_tokens: int,
                  processors: Sequence = (), rows_device: str | torch.device = "cpu") -> list[Decoded]:
    """All of `examples` in flight at once, results in their order."""
    return in_order(examples, collect_stream(model, tokenizer, table, examples, max_new_tokens, processors,
                                             rows_device, width=max(len(examples), 1)))


def steer_stream(model, tokenizer, table: TokenTable, examples: Sequence[Example], setup: SteeringSetup,
                 max_new_tokens: int, sampling: Sampling = GREEDY, processors: Sequence = (),
                 width: int = 1) -> list[Decoded]:
    """Steered generation, `width` in flight; records carry `steer_coefs`; in the order examples ended."""
    with engine_for(model, tokenizer, table, width=width, max_new_tokens=max_new_tokens, steering=setup,
                    processors=processors, sampling=sampling) as engine:
        return list(records(engine, examples, steered=True))


def steer_batch(model, tokenizer, table: TokenTable, examples: Sequence[Example], setup: SteeringSetup,
                max_new_tokens: int, sampling: Sampling = GREEDY, processors: Sequence = ()) -> list[Decoded]:
    """All of `examples` in flight at once, results in their order."""
    results = steer_stream(model, tokenizer, table, examples, setup, max_new_tokens, sampling, processors,
                           width=max(len(examples), 1))
    return in_order(examples, results)
