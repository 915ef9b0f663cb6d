"""Reasoning steps on generated token ids: boundaries, the thinking region, step confidence (docs/method.md §2).

Two views of one rule: `split_steps` works offline on a finished response (plain Python), and
`StepTracker` follows every row of a batch online, one token at a time, in tensors only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Sequence

import torch

from .row_state import RowState

# Named in every run card: change it when the step rule or the confidence of a step changes, so a
# run is not resumed across the change.
STEP_RULE = "blank line inside the thinking region; step confidence = geometric mean of max p (v1)"

THINK_OPEN = "<think>"
THINK_CLOSE = "</think>"


def _token_text(token: str) -> str:
    """Newlines of a vocabulary entry: byte-level BPE writes them `Ċ`, sentencepiece `<0x0A>`."""
    return token.replace("<0x0A>", "\n").replace("Ċ", "\n")


@dataclass(frozen=True)
class TokenTable:
    """Per-vocabulary facts the boundary rule needs, computed once from the tokenizer's own strings."""

    blank_line: torch.Tensor   # bool[V]: the token holds a whole blank line ("ĊĊ", ".ĊĊ", ...)
    starts_nl: torch.Tensor    # bool[V]: begins with a newline
    ends_nl: torch.Tensor      # bool[V]: ends with a newline
    think_open: int | None
    think_close: int | None
    eos_ids: tuple[int, ...]

    @classmethod
    def from_tokenizer(cls, tokenizer, vocab_size: int | None = None, eos_ids: Sequence[int] = ()) -> "TokenTable":
        size = max(len(tokenizer), vocab_size or 0)
        blank = torch.zeros(size, dtype=torch.bool)
        starts = torch.zeros(size, dtype=torch.bool)
        ends = torch.zeros(size, dtype=torch.bool)
        for token, token_id in tokenizer.get_vocab().items():
            text = _token_text(token)
            if "\n" in text:
                blank[token_id] = "\n\n" in text
                starts[token_id] = text.startswith("\n")
                ends[token_id] = text.endswith("\n")
        vocab = tokenizer.get_vocab()
        eos = tuple(eos_ids) or ((tokenizer.eos_token_id,) if tokenizer.eos_token_id is not None else ())
        return cls(blank, starts, ends, vocab.get(THINK_OPEN), vocab.get(THINK_CLOSE), eos)

    @property
    def has_think(self) -> bool:
        return self.think_open is not None and self.think_close is not None

    def to(self, device: torch.device | str) -> "TokenTable":
        return TokenTable(self.blank_line.to(device), self.starts_nl.to(device), self.ends_nl.to(device),
                          self.think_open, self.think_close, self.eos_ids)

    def is_boundary(self, token: int, previous: int | None) -> bool:
        """A token that completes a blank line; `previous` is the previous *generated* token."""
        if self.blank_line[token]:
            return True
        return previous is not None and bool(self.starts_nl[token]) and bool(self.ends_nl[previous])


def thinking_at_start(prompt: Sequence[int], table: TokenTable) -> bool:
    """Whether the response starts inside the thinking region.

    True when the prompt's last think tag is an opening one (R1-distill templates end the prompt
    inside `<think>`; Qwen3's `enable_thinking=False` template closes it again), or when the model
    has no `<think>` token at all: it then thinks in its whole response.
    """
    if not table.has_think:
        return True
    for token in reversed(prompt):
        if token == table.think_close:
            return False
        if token == table.think_open:
            return True
    return False


@dataclass
class StepSplit:
    """The steps of one response's thinking region, as [start, end) spans of generated positions."""

    steps: list[tuple[int, int]] = field(default_factory=list)
    boundaries: list[int] = field(default_factory=list)
    capture_positions: list[int] = field(default_factory=list)  # first token of step j+1, per row j
    region_end: int = 0
    think_closed: bool = False


# The facts the tracker finds about each generated token, packed into one small integer per token so
# they travel in the step's one transfer and a record's steps come from decoding itself.
IN_REGION, BOUNDARY, CAPTURE, CLOSING = 1, 2, 4, 8


def token_flags(tracker: "StepTracker") -> torch.Tensor:
    """This step's facts per row, as the bits above."""
    return (tracker.in_region.long() * IN_REGION + tracker.boundary.long() * BOUNDARY
            + tracker.capture.long() * CAPTURE + tracker.closing.long() * CLOSING)


def split_steps(generated: Sequence[int], table: TokenTable, thinking: bool) -> StepSplit:
    """Split a response into steps (docs/method.md §2), on token ids, boundaries in the response only.

    A step runs up to and including its boundary token; the region ends at `</think>` or EOS;
    one contiguous region (a second `<think>` after `</think>` does not reopen it). Row j of the
    hidden states is taken at `capture_positions[j]`, the token after boundary j when that token
    is still inside the region, so there is always one row fewer than steps. This is the offline
    reference the batched `StepTracker` is tested against: token by token, in plain Python.
    """
    flags = []
    eos = set(table.eos_ids)
    previous, after_boundary = None, False
    for token in generated:
        if token in eos:
            break
        if not thinking:
            thinking = token == table.think_open
            previous = token
            flags.append(0)
            continue
        if token == table.think_close:
            flags.append(CLOSING)
            break
        boundary = table.is_boundary(token, previous)
        flags.append(IN_REGION | (BOUNDARY if boundary else 0) | (CAPTURE if after_boundary else 0))
        previous, after_boundary = token, boundary
    return steps_from_flags(flags)


def steps_from_flags(flags: Sequence[int]) -> StepSplit:
    """The `split_steps` result of a response, read from the flags the tracker left on each of its
    tokens while decoding (no second pass over the ids)."""
    out = StepSplit()
    start = None
    for pos, bits in enumerate(flags):
        if bits & CLOSING:
            out.think_closed = True
            if start is not None:
                out.steps.append((start, pos))
                start = None
            out.region_end = pos
            break
        if not bits & IN_REGION:
            continue
        if bits & CAPTURE:
            out.capture_positions.append(pos)
        if start is None:
            start = pos
        if bits & BOUNDARY:
            out.boundaries.append(pos)
            out.steps.append((start, pos + 1))
            start = None
        out.region_end = pos + 1
    if start is not None:
        out.steps.append((start, out.region_end))
    return out


def step_confidence(logprobs: Sequence[float]) -> float:
    """Confidence of one step from its tokens' max log-probabilities: their geometric mean of p
    (the release's offline rule); NaN for an empty step."""
    if not logprobs:
        return float("nan")
    return math.exp(sum(logprobs) / len(logprobs))


class StepTracker(RowState):
    """Online view of `split_steps` for a whole batch: one bool tensor per fact, no Python loop over rows.

    `advance(tokens)` takes the token each row feeds into the model at this decoding step and
    updates: is it a boundary inside the thinking region (`boundary`), is it the first token of a
    new step whose hidden state is a calibration row (`capture`), is the row still thinking.
    Finished rows (after EOS) are frozen. Rows can be kept or appended (`RowState`): a new
    example's row is a fresh tracker's row.
    """

    ROW_FIELDS = ("thinking", "closed", "finished", "prev_ends_nl", "prev_boundary", "alive", "boundary",
                  "capture", "is_boundary", "in_region", "closing")

    def __init__(self, table: TokenTable, prompts: Sequence[Sequence[int]], device: torch.device):
        self.table = table.to(device)
        rows = len(prompts)
        self.thinking = torch.tensor([thinking_at_start(p, table) for p in prompts], dtype=torch.bool, device=device)
        self.closed = torch.zeros(rows, dtype=torch.bool, device=device)
        self.finished = torch.zeros(rows, dtype=torch.bool, device=device)
        self.prev_ends_nl = torch.zeros(rows, dtype=torch.bool, device=device)
        self.prev_boundary = torch.zeros(rows, dtype=torch.bool, device=device)
        self.eos = torch.tensor(table.eos_ids or (-1,), device=device)
        # outputs of the latest advance()
        self.alive = ~self.finished
        self.boundary = torch.zeros(rows, dtype=torch.bool, device=device)
        self.capture = torch.zeros(rows, dtype=torch.bool, device=device)
        self.is_boundary = torch.zeros(rows, dtype=torch.bool, device=device)
        self.in_region = torch.zeros(rows, dtype=torch.bool, device=device)
        self.closing = torch.zeros(rows, dtype=torch.bool, device=device)

    def advance(self, tokens: torch.Tensor) -> None:
        table = self.table
        alive = ~self.finished & ~torch.isin(tokens, self.eos)
        is_close = tokens == table.think_close if table.think_close is not None else torch.zeros_like(alive)
        is_open = tokens == table.think_open if table.think_open is not None else torch.zeros_like(alive)
        boundary = table.blank_line[tokens] | (table.starts_nl[tokens] & self.prev_ends_nl)
        in_region = alive & self.thinking & ~is_close
        self.capture = in_region & self.prev_boundary
        self.is_boundary = boundary  # by the token rule alone, wherever it stands
        self.boundary = in_region & boundary
        self.alive = alive
        self.in_region = in_region
        self.prev_boundary = self.boundary
        self.prev_ends_nl = torch.where(alive, table.ends_nl[tokens], self.prev_ends_nl)
        closing = self.closing = alive & self.thinking & is_close
        self.closed |= closing
        self.thinking = (self.thinking & ~closing) | (alive & is_open & ~self.closed)
        self.finished |= ~alive
