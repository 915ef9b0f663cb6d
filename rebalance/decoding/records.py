"""What a decoded example becomes: the record written to the shard (docs/method.md §3 and §8
formats) and, when hidden states were captured, the example's hidden-state dict."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Sequence

from ..examples import Example
from .capture import HiddenCapture, hidden_dict
from .engine import Finished
from .sampling import eos_token_ids
from .sites import num_residual_sites, text_config
from .steps import StepSplit, TokenTable, step_confidence, steps_from_flags


@dataclass
class Decoded:
    record: dict[str, Any]
    hidden: dict | None
    tokens: list[int]  # generated ids, EOS included when the row stopped on it


def make_table(model, tokenizer) -> TokenTable:
    return TokenTable.from_tokenizer(tokenizer, text_config(model).vocab_size, eos_token_ids(model, tokenizer))


def response_text(tokenizer, tokens: Sequence[int], hit_eos: bool) -> str:
    return tokenizer.decode(list(tokens[:-1] if hit_eos else tokens), skip_special_tokens=False)


def build_record(tokenizer, ex: Example, tokens: Sequence[int], logprobs: Sequence[float], split: StepSplit,
                 hit_eos: bool) -> dict[str, Any]:
    return {
        "idx": ex.idx,
        "question": ex.problem,
        "generated_responses": [response_text(tokenizer, tokens, hit_eos)],
        "gold_answer": ex.answer,
        "sentence_confidences": [step_confidence(logprobs[s:e]) for s, e in split.steps],
        "step_texts": [tokenizer.decode(list(tokens[s:e]), skip_special_tokens=False) for s, e in split.steps],
        "num_tokens": len(tokens),
        "finish_reason": "eos" if hit_eos else "length",
        "think_closed": split.think_closed,
    }


def decoded(done: Finished, model, tokenizer, record_fields: Iterable[str] = ()) -> Decoded:
    """The record of one finished row, with the plugin values named in `record_fields` (the
    steerer's `steer_coefs`), and its hidden-state dict when it was captured. The captured rows must
    be exactly the steps' first tokens. The steps are the ones the tracker found while decoding."""
    split = steps_from_flags(done.flags)
    record = build_record(tokenizer, done.example, done.tokens, done.logprobs, split, done.hit_eos)
    record.update({name: done.values[name] for name in record_fields})
    hidden = None
    if HiddenCapture.name in done.values:
        rows = done.values[HiddenCapture.name]
        if len(rows) != len(split.capture_positions):
            raise RuntimeError(f"example {done.example.idx}: captured {len(rows)} rows, expected "
                               f"{len(split.capture_positions)} (online and offline step rules disagree)")
        params = next(model.parameters())
        hidden = hidden_dict(rows, num_residual_sites(model), text_config(model).hidden_size, params.dtype)
    return Decoded(record, hidden, done.tokens)


def in_order(examples: Sequence[Example], results: Iterable[Decoded]) -> list[Decoded]:
    by_idx = {res.record["idx"]: res for res in results}
    return [by_idx[ex.idx] for ex in examples]
