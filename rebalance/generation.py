"""Batched generation through HF `generate`, keeping only a few scalars per row and token.

Confidence comes from the logits `generate` already computes (no re-scoring pass), recorded by
the first logits processor, so it sees the raw logits before temperature, top-p or penalties.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import torch
from transformers import GenerationConfig, LogitsProcessor, LogitsProcessorList


class MaxLogProbRecorder(LogitsProcessor):
    """Stores max log-softmax of the raw logits per row and step; `on_step(logp)` sees it live."""

    def __init__(self, on_step: Callable[[torch.Tensor], None] | None = None):
        self.steps: list[torch.Tensor] = []
        self.on_step = on_step

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        logp = torch.log_softmax(scores.float(), dim=-1).amax(dim=-1)
        self.steps.append(logp)
        if self.on_step is not None:
            self.on_step(logp)
        return scores

    def as_tensor(self) -> torch.Tensor:
        """[rows, steps] on the CPU, one transfer for the whole generation."""
        return torch.stack(self.steps, dim=1).cpu() if self.steps else torch.zeros(0, 0)


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


@dataclass
class Generation:
    """One batch's result: generated ids cut after the first EOS, and max log-probs aligned with them."""

    tokens: list[list[int]]
    logprobs: list[list[float]]
    hit_eos: list[bool]
    sequences: torch.Tensor       # [rows, prompt width + steps], as `generate` returned it
    attention_mask: torch.Tensor  # the prompt's
    cache: object | None


def generate(model, prompts: Sequence[Sequence[int]], *, max_new_tokens: int, eos_ids: Sequence[int],
             pad_id: int, processors: Sequence[LogitsProcessor] = (), do_sample: bool = False,
             recorder: MaxLogProbRecorder | None = None, keep_cache: bool = False) -> Generation:
    """Left-padded batched `generate` with our processors only (the model's sampling defaults,
    repetition penalty and the like are switched off so that nothing acts behind our back)."""
    device = next(model.parameters()).device
    input_ids, attention_mask = left_pad(prompts, pad_id, device)
    recorder = recorder or MaxLogProbRecorder()
    # Explicit neutral values, so the model's own generation_config (R1's temperature 0.6, a
    # repetition penalty, ...) cannot fill them in; our processors do all the shaping.
    sampling = dict(temperature=1.0, top_k=0, top_p=1.0, min_p=None, typical_p=1.0) if do_sample else {}
    config = GenerationConfig(
        max_new_tokens=max_new_tokens, do_sample=do_sample, eos_token_id=list(eos_ids), pad_token_id=pad_id,
        repetition_penalty=1.0, no_repeat_ngram_size=0, num_beams=1, return_dict_in_generate=True,
        output_scores=False, output_logits=False, **sampling)
    with torch.inference_mode():
        out = model.generate(input_ids=input_ids, attention_mask=attention_mask, generation_config=config,
                             logits_processor=LogitsProcessorList([recorder, *processors]))
    width = input_ids.shape[1]
    generated = out.sequences[:, width:].cpu()
    logprobs = recorder.as_tensor()[:, : generated.shape[1]]
    eos = set(eos_ids)
    tokens, lps, hit = [], [], []
    for row in range(generated.shape[0]):
        ids = generated[row].tolist()
        end = next((i + 1 for i, t in enumerate(ids) if t in eos), len(ids))
        tokens.append(ids[:end])
        lps.append(logprobs[row, :end].tolist())
        hit.append(end > 0 and ids[end - 1] in eos)
    return Generation(tokens, lps, hit, out.sequences, attention_mask, out.cache if keep_cache else None)
