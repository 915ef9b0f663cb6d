"""Pieces of generation the engine (`engine.py`) and the benchmarks share: the release's sampling
rule, the draw of every row's token at once, the repetition penalty, EOS handling and left padding."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
from transformers import LogitsProcessor


@dataclass(frozen=True)
class Sampling:
    """How the next token is chosen, as one value: greedy at temperature 0, else the release's
    temperature and top-p draw keyed by `seed`; the repetition penalty applies either way."""

    temperature: float = 0.0
    top_p: float = 1.0
    repetition_penalty: float = 1.0
    seed: int = 0

    @property
    def sampled(self) -> bool:
        return self.temperature > 0


GREEDY = Sampling()


def descending(scores: torch.Tensor) -> torch.Tensor:
    """Each row's values, largest first. Only the values: on the CPU numpy's vectorised sort of them
    takes a tenth of `torch.sort`, which also builds the permutation (3 vs 36 ms for 16 x 49k)."""
    if scores.device.type == "cpu" and scores.dtype in (torch.float32, torch.float64):
        ranked = np.negative(scores.numpy())  # the one copy: sorted ascending in place, negated back
        ranked.sort(axis=-1)
        return torch.from_numpy(np.negative(ranked, out=ranked))
    return torch.sort(scores, dim=-1, descending=True).values


class ReleasedTopP(LogitsProcessor):
    """Temperature then the release's top-p rule (docs/method.md §9): keep tokens whose inclusive cumulative
    mass stays within top_p, and always the most likely one (HF also keeps the crossing token).

    The cut is a score: a row keeps every token scoring at least its last kept rank's score, so
    tokens tied at the cut are kept together (a sort orders ties arbitrarily), and no permutation
    is needed."""

    def __init__(self, temperature: float, top_p: float):
        self.temperature = temperature
        self.top_p = top_p

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        scores = scores / self.temperature
        if self.top_p >= 1.0:
            return scores
        ranked = descending(scores)
        cumulative = torch.softmax(ranked, dim=-1).cumsum(dim=-1)  # non-decreasing: the kept ranks are a prefix
        kept = (cumulative <= self.top_p).sum(dim=-1, keepdim=True).clamp(min=1)
        cut = ranked.gather(-1, kept - 1)
        return scores.masked_fill(scores < cut, float("-inf"))


# ---- sampling in one draw -------------------------------------------------------------------------
# Each row's draw comes from a uniform number that is a hash of (seed, example idx, position), so a
# sample depends on its example only (not on its slot, the batch width or the neighbours), and all
# rows are drawn by one inverse-CDF lookup per step instead of one generator call per row.

# Named in the card of every sampled run: change it when a seed would draw other tokens, so a run
# is not resumed across the change.
SAMPLER = "inverse CDF at a hash of (seed, example idx, position), ties at the top-p cut kept (v3)"
_WORD = 0xFFFFFFFF


def _mul32(x: torch.Tensor, constant: int) -> torch.Tensor:
    """(x * constant) mod 2^32 for 32-bit x held in int64, in halves so no product overflows."""
    low, high = x & 0xFFFF, x >> 16
    return (low * constant + (((high * constant) & 0xFFFF) << 16)) & _WORD


def mix32(x: torch.Tensor) -> torch.Tensor:
    """A 32-bit integer hash (the "lowbias32" xorshift-multiply finaliser) on int64 tensors."""
    x = x & _WORD
    x = x ^ (x >> 16)
    x = _mul32(x, 0x7FEB352D)
    x = x ^ (x >> 15)
    x = _mul32(x, 0x846CA68B)
    return x ^ (x >> 16)


@functools.lru_cache(maxsize=16)
def _seed_keys(seed: int) -> tuple[int, int]:
    """Two 32-bit keys from a seed of any size, one per half of the uniform's 53 bits (worked out
    once per seed, not at every step)."""
    first = int(mix32(torch.tensor((seed & _WORD) ^ int(mix32(torch.tensor((seed >> 32) & _WORD))))))
    return first, int(mix32(torch.tensor(first ^ 0x9E3779B9)))


def draw_keys(seed: int, idx: torch.Tensor) -> torch.Tensor:
    """[rows, 2]: the half of the hash that depends on (seed, example idx) only, worked out once when
    a row is admitted instead of at every step."""
    return torch.stack([mix32(idx ^ key) for key in _seed_keys(seed)], dim=-1)


def keyed_uniform(keys: torch.Tensor, position: torch.Tensor) -> torch.Tensor:
    """A uniform number in [0, 1) (float64, 53 bits) per row from its `draw_keys` and position."""
    high, low = mix32(keys[..., 0] ^ position), mix32(keys[..., 1] ^ position)
    return ((high << 21) | (low >> 11)).double() / float(1 << 53)


def counter_uniform(seed: int, idx: torch.Tensor, position: torch.Tensor) -> torch.Tensor:
    """A uniform number in [0, 1) (float64, 53 bits) per row, a pure function of (seed, idx, position)."""
    return keyed_uniform(draw_keys(seed, idx), position)


def draw(probs: torch.Tensor, uniform: torch.Tensor) -> torch.Tensor:
    """One token per row from `probs` [rows, V] (not necessarily normalised), by inverse CDF at
    `uniform` [rows]: the first token whose cumulative mass exceeds uniform x total, so a token of
    probability zero is never drawn."""
    exact = torch.float32 if probs.device.type == "mps" else torch.float64
    cdf = probs.to(exact).cumsum(dim=-1)
    target = (uniform.to(exact) * cdf[:, -1])[:, None]
    return torch.searchsorted(cdf, target, right=True).squeeze(1).clamp(max=probs.shape[-1] - 1)


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
    """Every id that ends a response: the generation config's (often several) and the tokenizer's.
    A remote-code model that does not subclass transformers' GenerationMixin has no generation
    config; its model config names the EOS then."""
    ids = getattr(getattr(model, "generation_config", None) or model.config, "eos_token_id", None)
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
