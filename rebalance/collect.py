"""The collection run (docs/method.md §3): generate greedily, and in the same pass record step confidences
and the hidden state of every layer at the first token of each step."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Iterable, Iterator, Sequence

import torch

from .calibset import HiddenFiles
from .capture import HiddenCapture, hidden_dict
from .data import Example
from .engine import Engine
from .generation import eos_token_ids
from .models import num_residual_sites, text_config
from .shards import atomic_torch_save
from .steps import StepSplit, TokenTable, split_steps, step_confidence, thinking_at_start


@dataclass
class Collected:
    record: dict[str, Any]
    hidden: dict | None
    tokens: list[int]  # generated ids, EOS included when the row stopped on it


def collect_stream(model, tokenizer, table: TokenTable, examples: Iterable[Example], max_new_tokens: int,
                   policy: str = "avg2", processors: Sequence = (), rows_device: str | torch.device = "cpu",
                   width: int = 1) -> Iterator[Collected]:
    """Generate greedily, `width` examples in flight, and yield each example's record and
    hidden-state dict (docs/method.md §3 formats) as soon as it ends. Captured rows wait on
    `rows_device` until then (`--hs_device`)."""
    engine = Engine(model, tokenizer, table, width=width, max_new_tokens=max_new_tokens, processors=processors,
                    capture=HiddenCapture(model, rows_device))
    hidden_size = text_config(model).hidden_size
    dtype = next(model.parameters()).dtype
    n_sites = num_residual_sites(model)
    for done in engine.run(examples):
        split = split_steps(done.tokens, table, thinking_at_start(done.prompt, table))
        if len(done.hidden_rows) != len(split.capture_positions):
            raise RuntimeError(f"example {done.example.idx}: captured {len(done.hidden_rows)} rows, expected "
                               f"{len(split.capture_positions)} (online and offline step rules disagree)")
        record = build_record(tokenizer, done.example, done.tokens, done.logprobs, split, done.hit_eos, policy)
        yield Collected(record, hidden_dict(done.hidden_rows, n_sites, hidden_size, dtype), done.tokens)


def collect_batch(model, tokenizer, table: TokenTable, examples: Sequence[Example], max_new_tokens: int,
                  policy: str = "avg2", processors: Sequence = (), rows_device: str | torch.device = "cpu"
                  ) -> list[Collected]:
    """All of `examples` in flight at once, results in their order."""
    return in_order(examples, collect_stream(model, tokenizer, table, examples, max_new_tokens, policy, processors,
                                             rows_device, width=max(len(examples), 1)))


def in_order(examples: Sequence[Example], results: Iterable[Collected]) -> list[Collected]:
    by_idx = {res.record["idx"]: res for res in results}
    return [by_idx[ex.idx] for ex in examples]


def response_text(tokenizer, tokens: Sequence[int], hit_eos: bool) -> str:
    return tokenizer.decode(list(tokens[:-1] if hit_eos else tokens), skip_special_tokens=False)


def build_record(tokenizer, ex: Example, tokens: Sequence[int], logprobs: Sequence[float], split: StepSplit,
                 hit_eos: bool, policy: str = "avg2") -> dict[str, Any]:
    return {
        "idx": ex.idx,
        "question": ex.problem,
        "generated_responses": [response_text(tokenizer, tokens, hit_eos)],
        "gold_answer": ex.answer,
        "sentence_confidences": [step_confidence(logprobs[s:e], policy) for s, e in split.steps],
        "step_texts": [tokenizer.decode(list(tokens[s:e]), skip_special_tokens=False) for s, e in split.steps],
        "num_tokens": len(tokens),
        "finish_reason": "eos" if hit_eos else "length",
        "think_closed": split.think_closed,
    }


def hidden_path(hidden_dir: str, idx: int) -> str:
    return HiddenFiles(hidden_dir).path(idx)


def save_hidden(hidden: dict, hidden_dir: str, idx: int) -> None:
    os.makedirs(hidden_dir, exist_ok=True)
    atomic_torch_save(hidden, hidden_path(hidden_dir, idx))


def make_table(model, tokenizer) -> TokenTable:
    return TokenTable.from_tokenizer(tokenizer, text_config(model).vocab_size, eos_token_ids(model, tokenizer))
