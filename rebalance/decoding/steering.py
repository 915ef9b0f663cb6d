"""Steered generation (docs/method.md §8): a per-row controller fed by the logits, and one layer hook that adds
coefficient x vector at the boundary token of the rows that are thinking.

Everything per token is a tensor operation over the batch (no loop over rows); the in-flight
engine (`decoding/engine.py`) runs the loop and calls the `Steerer` as one of its plugins.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from enum import StrEnum
from typing import Iterator

import torch

from ..control import ControlFunction
from ..errors import UsageError, first_line
from .hooks import residual_hook
from .plugins import StepPlugin
from .row_state import RowState
from .steps import StepTracker


class Mode(StrEnum):
    """How a steered run pushes (`--steer_mode`): a str, so it is written and compared as its value."""

    DYNAMIC = "dynamic"  # ReBalance: the control function's coefficient at every boundary
    STATIC = "static"    # one constant coefficient at every boundary
    OFF = "off"          # the unsteered baseline


MODES = tuple(mode.value for mode in Mode)


def load_vector(path: str, hidden_size: int) -> torch.Tensor:
    """A steering vector saved as a plain tensor (the released `.pt` format), checked against the model."""
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise UsageError(f"--steer_vector_path: no such file: {path}") from None
    except Exception as err:  # unpickling refused or not a torch file at all
        first = first_line(err)
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


class Controller(RowState):
    """Per-row state of docs/method.md §8; a new example's row starts fresh (the release leaked it
    across questions).

    Step confidence online = arithmetic mean of p_t over the step's tokens, the boundary token
    excluded, every other token (<think> and </think> too) included. At a boundary that closes a
    non-empty step the coefficient becomes f(c, v); an empty step keeps the current one. Without a
    control function (static steering) the coefficient stays at its initial value.
    """

    ROW_FIELDS = ("sum", "count", "prev_mean", "coef")

    def __init__(self, control: ControlFunction | None, rows: int, initial_coef: float, device):
        self.control = control
        self.initial_coef = initial_coef
        self.sum = torch.zeros(rows, device=device)
        self.count = torch.zeros(rows, device=device)
        self.prev_mean = torch.full((rows,), float("nan"), device=device)
        self.coef = torch.full((rows,), float(initial_coef), device=device)

    def fresh(self, rows: int) -> "Controller":
        return Controller(self.control, rows, self.initial_coef, self.coef.device)

    def on_tokens(self, tracker: StepTracker, p: torch.Tensor) -> torch.Tensor:
        """After the tracker saw the tokens about to be fed, whose max probabilities are `p`;
        returns the coefficient each row will be steered with (NaN where it is not steered)."""
        boundary = tracker.alive & tracker.is_boundary
        if self.control is not None:
            closes = boundary & (self.count > 0)
            c = self.sum / self.count.clamp(min=1)
            v = torch.where(torch.isnan(self.prev_mean), torch.zeros_like(c), (c - self.prev_mean) ** 2 / 4)
            self.coef = torch.where(closes, self.control(c, v), self.coef)
            self.prev_mean = torch.where(closes, c, self.prev_mean)
            adds = tracker.alive & ~tracker.is_boundary
            self.sum = torch.where(boundary, torch.zeros_like(self.sum), self.sum + torch.where(adds, p, 0.0))
            self.count = torch.where(boundary, torch.zeros_like(self.count), self.count + adds.float())
        return torch.where(tracker.boundary, self.coef, float("nan"))  # a boundary inside the thinking region


@dataclass(frozen=True)
class SteeringSetup:
    """What a steered run adds, checked once against the model (the run's job carries it to every rank)."""

    vector: torch.Tensor | None   # [D], float32; None when the mode is off
    site: int                     # HF hidden_states index (-1 when off)
    mode: Mode
    coef: float                   # initial (dynamic) or constant (static) coefficient
    control: ControlFunction | None  # dynamic only


class Steerer(StepPlugin):
    """The steering plugin of the in-flight engine: per-row controller state, and one layer hook
    that adds scale[row] x vector at the last position of the decoding step it is armed for. It
    leaves on each row the coefficient applied at each steered boundary (`values["steer_coefs"]`)."""

    name = "steer_coefs"
    in_record = True

    def __init__(self, model, setup: SteeringSetup):
        device = next(model.parameters()).device
        self.model = model
        self.setup = setup
        self.controller = Controller(setup.control if setup.mode == Mode.DYNAMIC else None, 0, setup.coef, device)
        self.vector = setup.vector.to(device)
        self.scale: torch.Tensor | None = None  # None outside decoding steps (prompts are never steered)

    def admit(self, rows: int) -> None:
        self.controller.extend(self.controller.fresh(rows))

    def keep(self, index: torch.Tensor) -> None:
        self.controller.keep(index)

    def after_choose(self, tracker: StepTracker, p: torch.Tensor) -> torch.Tensor:
        return self.controller.on_tokens(tracker, p)

    def before_forward(self, tracker: StepTracker, starting: list[int], rows: int) -> None:
        """Steer the rows whose fed token is a boundary in the region (padding rows: never)."""
        scale = torch.where(tracker.boundary, self.controller.coef, 0.0)
        self.scale = torch.nn.functional.pad(scale, (0, rows - scale.shape[0]))

    def after_forward(self) -> list:
        self.scale = None  # prompts, prefilled outside decoding steps, are never steered
        return []

    def _add(self, hidden: torch.Tensor) -> torch.Tensor | None:
        if self.scale is None:
            return None
        delta = (self.scale[:, None, None] * self.vector).to(device=hidden.device, dtype=hidden.dtype)
        last = hidden[:, -1:] + delta  # the last position only, out of place
        return last if hidden.shape[1] == 1 else torch.cat([hidden[:, :-1], last], dim=1)  # decoding: one position

    @contextmanager
    def hooks(self) -> Iterator["Steerer"]:
        with residual_hook(self.model, self.setup.site, self._add):
            yield self
