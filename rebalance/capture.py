"""Hidden-state capture while generating: the calibration rows of docs/method.md §3, taken in the same pass.

Every residual site (HF `hidden_states` indices 0..L) gets a hook that, only on the decoding
steps where some row starts a new step, keeps the last position; after the call the flagged rows
go to the CPU. Nothing is kept for the other steps.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch
from torch import nn

from .hooks import residual_hooks
from .models import num_residual_sites


class HiddenCapture:
    """Rows wait on `rows_device` (the CPU by default, so GPU memory does not grow with long traces;
    the GPU when `--hs_device cuda` asks to save the per-step copies) until the file is written."""

    def __init__(self, model: nn.Module, rows: int, rows_device: str | torch.device = "cpu"):
        self.model = model
        self.rows_device = torch.device(rows_device)
        self.n_sites = num_residual_sites(model)
        self.rows: list[list[torch.Tensor]] = [[] for _ in range(rows)]  # per row: [sites, D] tensors
        self._latest: list[torch.Tensor | None] = [None] * self.n_sites
        self._mask: torch.Tensor | None = None
        self._active = False

    def _hook(self, index: int):
        def keep_last(hidden: torch.Tensor) -> None:
            if self._active:
                self._latest[index] = hidden[:, -1, :].detach().clone()
        return keep_last

    @contextmanager
    def hooks(self) -> Iterator["HiddenCapture"]:
        with residual_hooks(self.model, list(range(self.n_sites)), self._hook):
            yield self

    def arm(self, mask: torch.Tensor) -> None:
        """Before a model call: capture the rows in `mask` at this call's last position."""
        self._mask = mask
        self._active = bool(mask.any())  # the one host sync per step; generate syncs here anyway

    def collect(self) -> None:
        """After the model call: move the flagged rows to the CPU."""
        if not self._active:
            return
        rows = self._mask.nonzero().flatten()
        stacked = torch.stack([t.index_select(0, rows) for t in self._latest], dim=1).to(self.rows_device)
        for row, tensor in zip(rows.tolist(), stacked):
            self.rows[row].append(tensor)
        self._active = False
        self._latest = [None] * self.n_sites

    def hidden_dict(self, row: int, hidden_size: int, dtype: torch.dtype) -> dict[int, dict[int, dict[str, torch.Tensor]]]:
        """The file layout (docs/method.md §3) `{layer: {0: {"step": Tensor[V, D]}}}` for one row."""
        taken = self.rows[row]
        stacked = torch.stack(taken, dim=0).cpu() if taken else torch.zeros(0, self.n_sites, hidden_size, dtype=dtype)
        return {layer: {0: {"step": stacked[:, layer, :].contiguous()}} for layer in range(self.n_sites)}
