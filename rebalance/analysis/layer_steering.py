"""A second layer criterion, for when R^2 cannot tell layers apart: the layer whose own vector steers.

R^2 asks where step confidence is readable. On a model whose kinds of step (re-check, sum, answer)
are told apart by their first token, it is readable at every depth (the organism: R^2
0.955-0.964 from layer 1 to 29 on seed 0), and the pick is noise. What matters for steering is what the push does, so
this criterion measures it on the collection run itself, with no held-out data: the seen
responses are fed back with the calibrated push for the mean overthinking step (low_val_1 x S_L,
from layer L's own vector and LDA) added at every step boundary of layer L, and the shift of the
log-probability of the next step's first token is read at each boundary. The push should make
overthinking steps less likely and confident steps no less likely:

    score_L = mean shift before confident steps - mean shift before overthinking steps  (nats)

The layer with the highest score wins. At a layer where the push scrambles the state instead (the
organism's early layers: more loops, not fewer), both shifts fall together and the score stays low.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch

from .labels import NEGATIVE, POSITIVE


@dataclass(frozen=True)
class FedBack:
    """One collected response behind its prompt, cut after its last kept boundary's next token."""
    ids: list[int]
    boundaries: list[int]   # position of the token before a labelled step's first token
    labels: list[int]       # POSITIVE or NEGATIVE: the label of that next step


def fed_back(prompt: list[int], response: list[int], token_starts: Sequence[int], step_lengths: Sequence[int],
             labels: Sequence[int], offset: int = 1, most: int = 4) -> FedBack | None:
    """The response is tokenized whole, as the model wrote and was trained on it (a step tokenized
    alone ends in a merged blank-line token the model never saw before a step), so a step's first
    token is the token starting at the step's first character. `labels[j]` labels step j + offset
    (the rows' pairing); the first `most` labelled steps whose first token starts exactly there
    are kept. None when there are none."""
    if offset < 1:
        raise ValueError("the boundary before a step exists only for offset >= 1")
    first_token = {start: t for t, start in reversed(list(enumerate(token_starts)))}
    kept = []
    for j, label in enumerate(labels):
        step = j + offset
        if label not in (POSITIVE, NEGATIVE) or step >= len(step_lengths):
            continue
        t = first_token.get(sum(step_lengths[:step]))
        if t:  # the step's text starts a token that is not the response's first
            kept.append((len(prompt) + t - 1, label))
        if len(kept) == most:
            break
    if not kept:
        return None
    end = kept[-1][0] + 2  # through the last boundary's next token
    return FedBack((list(prompt) + list(response))[:end], [p for p, _ in kept], [label for _, label in kept])


def steer_score(base: np.ndarray, steered: np.ndarray, labels: np.ndarray) -> tuple[float, float, float]:
    """(shift before confident steps, shift before overthinking steps, score): mean log-probability
    shifts of the next token at the boundaries, and their difference (nan when a class is absent)."""
    shift = np.asarray(steered, dtype=np.float64) - np.asarray(base, dtype=np.float64)
    labels = np.asarray(labels)
    confident = float(shift[labels == NEGATIVE].mean()) if (labels == NEGATIVE).any() else float("nan")
    overthinking = float(shift[labels == POSITIVE].mean()) if (labels == POSITIVE).any() else float("nan")
    return confident, overthinking, confident - overthinking


def best_steering_layer(scores: dict[int, tuple[float, float, float]]) -> int:
    """Highest score; the lowest layer wins a tie, and a nan score never wins."""
    usable = {layer: s[2] for layer, s in scores.items() if not np.isnan(s[2])}
    if not usable:
        raise ValueError("no layer has a score: the fed-back responses need both kinds of labelled step")
    return max(sorted(usable), key=lambda layer: usable[layer])


@dataclass
class _Batch:
    items: list[FedBack]
    ids: torch.Tensor      # [B, W] right-padded
    mask: torch.Tensor     # [B, W]
    at: torch.Tensor       # [B, W] True at a boundary
    shared: int            # columns before every row's first boundary: the same with or without a push
    cache: Any             # the model's key/value cache over those columns, computed once


class FedBackRuns:
    """The fed-back responses in batches, each with the key/value cache of its columns before the
    first boundary. A push changes nothing before a boundary, so each run (plain, then one per
    layer) computes only the rest: the prompt and first step are about two thirds of the tokens."""

    def __init__(self, model, items: list[FedBack], pad_id: int, batch_size: int = 8):
        from ..decoding.cache import cache_keyword

        self.model = model
        self.device = next(model.parameters()).device
        self.cache_keyword = cache_keyword(model)
        self.batches = [self._batch(items[start:start + batch_size], pad_id)
                        for start in range(0, len(items), batch_size)]

    @torch.no_grad()
    def _batch(self, chunk: list[FedBack], pad_id: int) -> _Batch:
        width = max(len(item.ids) for item in chunk)
        ids = torch.full((len(chunk), width), pad_id, dtype=torch.long)
        mask = torch.zeros((len(chunk), width), dtype=torch.long)
        at = torch.zeros((len(chunk), width), dtype=torch.bool)
        for row, item in enumerate(chunk):
            ids[row, :len(item.ids)] = torch.tensor(item.ids)
            mask[row, :len(item.ids)] = 1
            at[row, item.boundaries] = True
        shared = min(item.boundaries[0] for item in chunk)  # >= 1: a boundary follows the prompt
        from transformers import DynamicCache

        cache = DynamicCache(config=self.model.config)  # filled in place by the forward
        self.model(input_ids=ids[:, :shared].to(self.device), attention_mask=mask[:, :shared].to(self.device),
                   use_cache=True, logits_to_keep=1, **{self.cache_keyword: cache})
        return _Batch(chunk, ids, mask, at, shared, cache)

    @torch.no_grad()
    def logprobs(self, push=None) -> np.ndarray:
        """log p(next token) at every boundary of every item, in order. `push`, when given, is
        `(site index, vector)`: the vector is added at the boundary positions of that residual site."""
        from ..decoding.hooks import residual_hook

        out: list[float] = []
        for batch in self.batches:
            rest = batch.at[:, batch.shared:]
            keep = torch.nonzero(rest.any(dim=0)).flatten()  # logits only where some row has a boundary
            column = {int(c): k for k, c in enumerate(keep)}
            inputs = {"input_ids": batch.ids[:, batch.shared:].to(self.device),
                      "attention_mask": batch.mask.to(self.device), "use_cache": True,
                      self.cache_keyword: copy.deepcopy(batch.cache),  # the forward appends to it
                      "logits_to_keep": keep.to(self.device)}
            if push is None:
                logits = self.model(**inputs).logits
            else:
                vector = push[1].to(self.device)

                def add(hidden: torch.Tensor) -> torch.Tensor:
                    return hidden + rest[:, :, None].to(hidden.device) * vector.to(hidden.dtype)

                with residual_hook(self.model, push[0], add):
                    logits = self.model(**inputs).logits
            logp = torch.log_softmax(logits.float(), dim=-1)
            for row, item in enumerate(batch.items):
                out.extend(float(logp[row, column[b - batch.shared], batch.ids[row, b + 1]]) for b in item.boundaries)
        return np.asarray(out)


def next_token_logprobs(model, items: list[FedBack], pad_id: int, push=None, batch_size: int = 8) -> np.ndarray:
    """One run of `FedBackRuns` (for a single push; several pushes share one `FedBackRuns`)."""
    return FedBackRuns(model, items, pad_id, batch_size).logprobs(push)
