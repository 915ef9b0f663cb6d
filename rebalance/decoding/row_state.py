"""Per-row state of a decoding batch whose rows come and go (the in-flight engine, docs/method.md §14).

A state object names its row tensors (first dimension = batch row); the engine keeps a subset of
rows when some finish and appends fresh rows when new examples take their place. Fresh rows are
built by the state's own constructor, so "reset for a new example" has exactly one definition.
"""

from __future__ import annotations

from typing import ClassVar

import torch


class RowState:
    ROW_FIELDS: ClassVar[tuple[str, ...]] = ()

    def keep(self, index: torch.Tensor) -> None:
        """Keep the rows at `index` (in that order)."""
        for name in self.ROW_FIELDS:
            setattr(self, name, getattr(self, name).index_select(0, index))

    def extend(self, fresh: "RowState") -> None:
        """Append the rows of `fresh` (a new instance of the same class) after the current ones."""
        for name in self.ROW_FIELDS:
            setattr(self, name, torch.cat([getattr(self, name), getattr(fresh, name)], dim=0))
