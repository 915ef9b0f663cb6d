"""Steered generation (docs/method.md §8): a per-row controller fed by the logits, and one layer hook that adds
coefficient x vector at the boundary token of the rows that are thinking.

Everything per token is a tensor operation over the batch: no loop over rows, no host sync.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator, Sequence

import torch
from transformers import RepetitionPenaltyLogitsProcessor

from .collect import Collected, build_record
from .control import ControlFunction
from .data import prompt_ids
from .generation import MaxLogProbRecorder, ReleasedTopP, generate
from .errors import UsageError
from .hooks import decoding_steps, model_call_hooks, residual_hook
from .steps import StepTracker, TokenTable, split_steps, thinking_at_start

MODES = ("dynamic", "static", "off")


def load_vector(path: str, hidden_size: int) -> torch.Tensor:
    """A steering vector saved as a plain tensor (the released `.pt` format), checked against the model."""
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise UsageError(f"--steer_vector_path: no such file: {path}") from None
    except Exception as err:  # unpickling refused or not a torch file at all
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise UsageError(f"--steer_vector_path: {path} is not a plain tensor file "
                         f"(expected a float tensor of shape [{hidden_size}]): {first[:200]}") from None
    if not torch.is_tensor(obj):
        raise UsageError(f"--steer_vector_path: {path} holds a {type(obj).__name__}, "
                         f"expected a float tensor of shape [{hidden_size}]")
    if obj.numel() != hidden_size or obj.dim() > 2:
        raise UsageError(f"--steer_vector_path: {path} has shape {list(obj.shape)}, "
                         f"expected [{hidden_size}] (the model's hidden size)")
    return obj.reshape(hidden_size).float()


def site_index(n_sites: int, steer_layer: int, inject_at: str) -> int:
    """HF hidden_states index where the vector is added: the input of block L is index L, its
    output index L+1 (the Qwen3 script's default). `n_sites` = blocks + 1."""
    index = steer_layer + (1 if inject_at == "output" else 0)
    if not 0 <= steer_layer < n_sites or index >= n_sites:
        top = n_sites - 1 if inject_at == "input" else n_sites - 2
        raise UsageError(f"--steer_layer {steer_layer} is out of range for --inject_at {inject_at}: "
                         f"this model takes 0..{top}")
    return index


class Controller:
    """Per-row state of docs/method.md §8, reset for every batch (the release leaked it across questions).

    Step confidence online = arithmetic mean of p_t over the step's tokens, the boundary token
    excluded, every other token (<think> and </think> too) included. At a boundary that closes a
    non-empty step the coefficient becomes f(c, v); an empty step keeps the current one. Without a
    control function (static steering) the coefficient stays at its initial value.
    """

    def __init__(self, control: ControlFunction | None, rows: int, initial_coef: float, device):
        self.control = control
        self.sum = torch.zeros(rows, device=device)
        self.count = torch.zeros(rows, device=device)
        self.prev_mean = torch.full((rows,), float("nan"), device=device)
        self.coef = torch.full((rows,), float(initial_coef), device=device)
        self.pending_p = torch.zeros(rows, device=device)
        self.applied: list[torch.Tensor] = []  # per decoding step: coefficient where steered, else NaN

    def on_logprobs(self, logp: torch.Tensor) -> None:
        """From the logits processor: p of the token about to be fed (max prob of the raw logits)."""
        self.pending_p = logp.exp()

    def on_tokens(self, tracker: StepTracker) -> torch.Tensor:
        """After the tracker saw this step's input tokens; returns the per-row scale for the vector."""
        boundary = tracker.alive & tracker.is_boundary
        if self.control is not None:
            closes = boundary & (self.count > 0)
            c = self.sum / self.count.clamp(min=1)
            v = torch.where(torch.isnan(self.prev_mean), torch.zeros_like(c), (c - self.prev_mean) ** 2 / 4)
            self.coef = torch.where(closes, self.control(c, v), self.coef)
            self.prev_mean = torch.where(closes, c, self.prev_mean)
            adds = tracker.alive & ~tracker.is_boundary
            self.sum = torch.where(boundary, torch.zeros_like(self.sum), self.sum + torch.where(adds, self.pending_p, 0.0))
            self.count = torch.where(boundary, torch.zeros_like(self.count), self.count + adds.float())
        steer = tracker.boundary  # a boundary inside the thinking region
        self.applied.append(torch.where(steer, self.coef, float("nan")))
        return torch.where(steer, self.coef, 0.0)

    def coefficients(self, rows: int) -> list[list[float]]:
        """The coefficient applied at each steered boundary, per row, in order (one transfer)."""
        if not self.applied:
            return [[] for _ in range(rows)]
        table = torch.stack(self.applied, dim=1).cpu()
        return [[float(x) for x in row[~torch.isnan(row)]] for row in table]


@dataclass
class SteeringSetup:
    vector: torch.Tensor          # [D], float32
    site: int                     # HF hidden_states index
    mode: str                     # dynamic | static | off
    coef: float                   # initial (dynamic) or constant (static) coefficient
    control: ControlFunction | None


class Steerer:
    """Hooks for one batch: the model-call hook advances tracker and controller, the layer hook adds
    scale[row] x vector at the last position."""

    def __init__(self, model, table: TokenTable, prompts: Sequence[Sequence[int]], setup: SteeringSetup):
        device = next(model.parameters()).device
        self.model = model
        self.setup = setup
        self.tracker = StepTracker(table, prompts, device)
        self.controller = Controller(setup.control if setup.mode == "dynamic" else None, len(prompts), setup.coef, device)
        self.vector = setup.vector.to(device) if setup.vector is not None else None
        self.scale: torch.Tensor | None = None  # None during the prompt's forward: nothing to steer

    def _step(self, tokens: torch.Tensor) -> None:
        self.tracker.advance(tokens)
        self.scale = self.controller.on_tokens(self.tracker)

    def _add(self, hidden: torch.Tensor) -> torch.Tensor | None:
        if self.scale is None:
            return None
        delta = (self.scale[:, None] * self.vector[None, :]).to(hidden.dtype)
        if hidden.shape[1] == 1:
            return hidden + delta[:, None, :]
        hidden = hidden.clone()
        hidden[:, -1, :] += delta
        return hidden

    @contextmanager
    def hooks(self) -> Iterator["Steerer"]:
        if self.setup.mode == "off":  # the unsteered baseline: plain generation, no hooks at all
            yield self
            return
        with residual_hook(self.model, self.setup.site, self._add), \
                model_call_hooks(self.model, before=decoding_steps(self._step)):
            yield self


def steer_batch(model, tokenizer, table: TokenTable, examples, setup: SteeringSetup, max_new_tokens: int,
                temperature: float = 0.0, top_p: float = 1.0, repetition_penalty: float = 1.0,
                seed: int | None = None, processors: Sequence = ()) -> list[Collected]:
    """Generate one batch under steering; records as the collection run's plus `steer_coefs`."""
    prompts = [prompt_ids(tokenizer, ex.problem) for ex in examples]
    steerer = Steerer(model, table, prompts, setup)
    shaping = list(processors)
    if repetition_penalty != 1.0:
        shaping.append(RepetitionPenaltyLogitsProcessor(repetition_penalty))
    if temperature > 0:
        shaping.append(ReleasedTopP(temperature, top_p))
    if seed is not None:
        torch.manual_seed(seed)
    recorder = MaxLogProbRecorder(on_step=steerer.controller.on_logprobs)
    with steerer.hooks():
        gen = generate(model, prompts, max_new_tokens=max_new_tokens, eos_ids=table.eos_ids,
                       pad_id=tokenizer.pad_token_id, processors=shaping, do_sample=temperature > 0,
                       recorder=recorder)
    coefs = steerer.controller.coefficients(len(prompts))
    results = []
    for row, ex in enumerate(examples):
        tokens = gen.tokens[row]
        split = split_steps(tokens, table, thinking_at_start(prompts[row], table))
        record = build_record(tokenizer, ex, tokens, gen.logprobs[row], split, gen.hit_eos[row])
        record["steer_coefs"] = coefs[row][: len(split.boundaries)]
        results.append(Collected(record, None, tokens))
    return results
