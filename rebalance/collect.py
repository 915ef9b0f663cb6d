"""The collection run (docs/method.md §3): generate greedily, and in the same pass record step confidences
and the hidden state of every layer at the first token of each step."""

from __future__ import annotations

import inspect
import os
from dataclasses import dataclass
from typing import Any, Sequence

import torch

from .calibset import HiddenFiles
from .capture import HiddenCapture
from .data import Example, prompt_ids
from .generation import Generation, eos_token_ids, generate
from .hooks import decoding_steps, model_call_hooks
from .models import text_config
from .shards import atomic_torch_save
from .steps import StepSplit, StepTracker, TokenTable, split_steps, step_confidence, thinking_at_start


@dataclass
class Collected:
    record: dict[str, Any]
    hidden: dict | None
    tokens: list[int]  # generated ids, EOS included when the row stopped on it


def _capture_last_token(model, gen: Generation, need: Sequence[bool], capture: HiddenCapture) -> None:
    """The final generated token is never fed back during generation; one cached decoding step gives
    its hidden states for the rows whose last step starts there."""
    device = gen.sequences.device
    steps = gen.sequences.shape[1] - gen.attention_mask.shape[1]
    mask = torch.cat([gen.attention_mask, gen.attention_mask.new_ones(len(need), steps)], dim=1)
    position_ids = mask.sum(dim=1, keepdim=True) - 1
    capture.arm(torch.tensor(list(need), device=device))
    # transformers 5 renamed `past_key_values` to `cache`; pass whichever this model's forward takes
    cache_kw = "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"
    with torch.inference_mode():
        model(input_ids=gen.sequences[:, -1:], attention_mask=mask, position_ids=position_ids,
              use_cache=True, **{cache_kw: gen.cache})
    capture.collect()


def collect_batch(model, tokenizer, table: TokenTable, examples: Sequence[Example], max_new_tokens: int,
                  policy: str = "avg2", processors: Sequence = (), rows_device: str | torch.device = "cpu"
                  ) -> list[Collected]:
    """Generate one batch and return its records and hidden-state dicts (docs/method.md §3 formats).
    Captured rows wait on `rows_device` until the batch ends (`--hs_device`)."""
    device = next(model.parameters()).device
    prompts = [prompt_ids(tokenizer, ex.problem) for ex in examples]
    tracker = StepTracker(table, prompts, device)
    capture = HiddenCapture(model, len(prompts), rows_device)

    def on_step(tokens: torch.Tensor) -> None:
        tracker.advance(tokens)
        capture.arm(tracker.capture)

    with capture.hooks():
        with model_call_hooks(model, before=decoding_steps(on_step), after=capture.collect):
            gen = generate(model, prompts, max_new_tokens=max_new_tokens, eos_ids=table.eos_ids,
                           pad_id=tokenizer.pad_token_id, processors=processors, keep_cache=True)
        splits = [split_steps(tokens, table, thinking_at_start(p, table)) for p, tokens in zip(prompts, gen.tokens)]
        need = [bool(s.capture_positions) and s.capture_positions[-1] == len(t) - 1
                for s, t in zip(splits, gen.tokens)]
        if any(need):
            _capture_last_token(model, gen, need, capture)

    hidden_size = text_config(model).hidden_size
    dtype = next(model.parameters()).dtype
    results = []
    for row, (ex, split) in enumerate(zip(examples, splits)):
        if len(capture.rows[row]) != len(split.capture_positions):
            raise RuntimeError(f"example {ex.idx}: captured {len(capture.rows[row])} rows, expected "
                               f"{len(split.capture_positions)} (online and offline step rules disagree)")
        record = build_record(tokenizer, ex, gen.tokens[row], gen.logprobs[row], split, gen.hit_eos[row], policy)
        results.append(Collected(record, capture.hidden_dict(row, hidden_size, dtype), gen.tokens[row]))
    return results


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
