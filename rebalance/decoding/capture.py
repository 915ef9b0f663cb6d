"""Hidden-state capture while generating: the calibration rows of docs/method.md §3, taken in the same pass.

Every residual site (HF `hidden_states` indices 0..L) gets a hook that, only on the decoding
steps where some row starts a new step, keeps the last position of every row; after the forward
the armed rows are picked from it (outside the hook, so the traced step has one shape whatever
the number of armed rows). Which rows are armed is known on the host already (it came with the
step's one transfer), so arming costs no synchronisation, and the kept rows travel to the host
without blocking (`to_host_later`). Nothing is kept for the other steps.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator, Sequence

import torch
from torch import nn

from .hooks import residual_hooks
from .plugins import StepPlugin
from .sites import num_residual_sites
from .steps import StepTracker


class HiddenCapture(StepPlugin):
    """Captured rows go to `rows_device` (the CPU by default, so GPU memory does not grow with long
    traces; the GPU when `--hs_device cuda` asks to save the per-step copies) and wait there until
    their example's file is written. As an engine plugin it keeps one [sites, D] tensor per step
    start on each row (`Finished.values["hidden_rows"]`)."""

    name = "hidden_rows"
    final_feed = True  # a row that ends at its limit on a step's first token still needs that row

    def __init__(self, model: nn.Module, rows_device: str | torch.device = "cpu"):
        self.model = model
        self.rows_device = torch.device(rows_device)
        self.device = next(model.parameters()).device
        self.n_sites = num_residual_sites(model)
        self._latest: list[torch.Tensor | None] = [None] * self.n_sites
        self._rows: torch.Tensor | None = None
        self._armed: list[int] = []
        self._capturing = False

    def _hook(self, index: int):
        def keep_last(hidden: torch.Tensor) -> None:
            if self._capturing:  # a host-side bool: the traced step branches on nothing on the device
                self._latest[index] = hidden[:, -1, :]
        return keep_last

    @contextmanager
    def hooks(self) -> Iterator["HiddenCapture"]:
        with residual_hooks(self.model, list(range(self.n_sites)), self._hook):
            yield self

    def before_forward(self, tracker: StepTracker, starting: list[int], rows: int) -> None:
        self.arm(starting)

    def after_forward(self) -> list[tuple[int, torch.Tensor]]:
        armed = self._armed  # host-side already: reading the device index back would synchronise
        return list(zip(armed, self.collect()))

    def arm(self, rows: Sequence[int]) -> None:
        """Before a model call: capture these batch rows at this call's last position."""
        self._armed = list(rows)
        self._capturing = bool(self._armed)
        self._rows = to_device_later(self._armed, self.device) if self._armed else None

    def collect(self) -> list[torch.Tensor]:
        """After the model call: one [sites, D] tensor per armed row, in arming order."""
        latest, rows, self._latest, self._rows = self._latest, self._rows, [None] * self.n_sites, None
        self._capturing = False
        if rows is None or any(site is None for site in latest):  # nothing armed, or a failed call
            return []
        picked = [site.index_select(0, rows.to(site.device)) for site in latest]
        return list(to_host_later(torch.stack(picked, dim=1), self.rows_device).unbind(0))


def to_host_later(rows: torch.Tensor, device: torch.device) -> torch.Tensor:
    """`rows` on `device` without waiting for them: a GPU-to-CPU copy goes into pinned memory
    asynchronously and is complete once the step's one transfer has synchronised the stream, long
    before the example's file is written. Anything else is an ordinary copy."""
    if rows.device.type != "cuda" or device.type != "cpu":
        return rows.to(device)
    host = torch.empty(rows.shape, dtype=rows.dtype, pin_memory=True)
    return host.copy_(rows, non_blocking=True)


def to_device_later(index: Sequence[int], device: torch.device) -> torch.Tensor:
    """A host-built index on `device`; to a GPU through pinned memory, so the copy is queued
    behind the step's work instead of waiting for it."""
    if device.type != "cuda":
        return torch.tensor(index, dtype=torch.long, device=device)
    return torch.tensor(index, dtype=torch.long).pin_memory().to(device, non_blocking=True)


def hidden_dict(rows: Sequence[torch.Tensor], n_sites: int, hidden_size: int,
                dtype: torch.dtype) -> dict[int, dict[int, dict[str, torch.Tensor]]]:
    """The file layout (docs/method.md §3) `{layer: {0: {"step": Tensor[V, D]}}}` for one example."""
    stacked = torch.stack(list(rows), dim=0).cpu() if rows else torch.zeros(0, n_sites, hidden_size, dtype=dtype)
    return {layer: {0: {"step": stacked[:, layer, :].contiguous()}} for layer in range(n_sites)}
