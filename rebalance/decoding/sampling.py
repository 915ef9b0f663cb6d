"""Pieces of generation the engine (`engine.py`) and the benchmarks share: the release's sampling
rule, the repetition penalty, EOS handling and left padding."""

from __future__ import annotations

from typing import Sequence

import torch
from transformers import LogitsProcessor


class ReleasedTopP(LogitsProcessor):
    """Temperature then the release's top-p rule (docs/method.md §9): keep tokens whose inclusive cumulative
    mass stays within top_p, and always the most likely one (HF also keeps the crossing token)."""

    def __init__(self, temperature: float, top_p: float):
        self.temperature = temperature
        self.top_p = top_p

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        scores = scores / self.temperature
        if self.top_p >= 1.0:
            return scores
        sorted_scores, order = torch.sort(scores, dim=-1, descending=True)
        cumulative = torch.softmax(sorted_scores, dim=-1).cumsum(dim=-1)
        drop_sorted = cumulative > self.top_p
        drop_sorted[:, 0] = False
        drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
        return scores.masked_fill(drop, float("-inf"))


def penalise_repeats(scores: torch.Tensor, seen: torch.Tensor, penalty: float) -> torch.Tensor:
    """The CTRL repetition penalty (HF's rule) on the tokens each row has seen, prompt included;
    the left padding is not part of any row, so it is not penalised."""
    return torch.where(seen, torch.where(scores < 0, scores * penalty, scores / penalty), scores)


class SuppressTokens(LogitsProcessor):
    """Forbid some ids (EOS in benchmarks, so every row decodes the same number of tokens)."""

    def __init__(self, token_ids: Sequence[int]):
        self.token_ids = list(token_ids)

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        scores[:, self.token_ids] = float("-inf")
        return scores


def eos_token_ids(model, tokenizer) -> list[int]:
    """Every id that ends a response: the generation config's (often several) and the tokenizer's."""
    ids = model.generation_config.eos_token_id
    ids = [] if ids is None else ([ids] if isinstance(ids, int) else list(ids))
    if tokenizer.eos_token_id is not None and tokenizer.eos_token_id not in ids:
        ids.append(tokenizer.eos_token_id)
    return ids


def left_pad(prompts: Sequence[Sequence[int]], pad_id: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(prompts), width), dtype=torch.long)
    for row, prompt in enumerate(prompts):
        ids[row, width - len(prompt):] = torch.tensor(prompt, dtype=torch.long)
        mask[row, width - len(prompt):] = 1
    return ids.to(device), mask.to(device)
