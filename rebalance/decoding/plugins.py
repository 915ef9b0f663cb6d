"""The one protocol the engine speaks to what rides along a decoding run (steering, hidden-state
capture): per-row state kept in step with the engine's rows, work before and after each forward,
and an optional per-row number in the step's one device-to-host transfer.

A plugin's model hooks are registered by whoever owns the run, in a `with` block around it
(`with Engine(...) as engine:`), so they are gone the moment the block ends, however it ends.
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from typing import Any

import torch

from .steps import StepTracker


class StepPlugin:
    """Override what you need; every method has a do-nothing default.

    `name` keys the values this plugin leaves on each finished row (`Finished.values[name]`);
    `in_record` puts them into the example's record under that name.
    `final_feed`: when a row ends at its token limit on a token that starts a step, feed that row
    once more so `after_forward` sees the token (hidden-state capture needs its row).
    """

    name: str = "plugin"
    in_record: bool = False  # its values go into the example's record, under `name` (JSON numbers)
    final_feed: bool = False

    def hooks(self) -> AbstractContextManager:
        """The model hooks this plugin needs while the run lasts."""
        return nullcontext()

    def admit(self, rows: int) -> None:
        """`rows` new rows were appended after the live ones: give them fresh state."""

    def keep(self, index: torch.Tensor) -> None:
        """Keep the rows at `index` (in that order) in every piece of per-row state."""

    def before_forward(self, tracker: StepTracker, starting: list[int], rows: int) -> None:
        """Before a decoding forward of `rows` rows (the live ones, then any padding rows of a
        compiled step); `starting` lists the live rows whose fed token starts a step."""

    def after_forward(self) -> list[tuple[int, Any]]:
        """After the forward (also when it failed): (row, value) pairs to keep on those rows."""
        return []

    def after_choose(self, tracker: StepTracker, p: torch.Tensor) -> torch.Tensor | None:
        """After the next tokens were chosen (`tracker` has seen them; `p` is each row's max
        probability): a float per row for the step's transfer, NaN where there is nothing to keep;
        or None for no column."""
        return None
