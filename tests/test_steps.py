import math
import random

import pytest
import torch

from rebalance.decoding.steps import StepTracker, TokenTable, split_steps, step_confidence, thinking_at_start


class FakeTokenizer:
    """A hand-written byte-level vocabulary: enough to state the boundary rule exactly."""

    vocab = {"a": 0, "Ċ": 1, "ĊĊ": 2, ".ĊĊ": 3, "b": 4, "<think>": 5, "</think>": 6, "<eos>": 7,
             "aĊ": 8, "Ċb": 9, "ĊĊĠ": 10, "<0x0A>": 11}
    eos_token_id = 7

    def get_vocab(self):
        return dict(self.vocab)

    def __len__(self):
        return len(self.vocab)


V = FakeTokenizer.vocab
TABLE = TokenTable.from_tokenizer(FakeTokenizer())
NO_THINK = TokenTable(TABLE.blank_line, TABLE.starts_nl, TABLE.ends_nl, None, None, TABLE.eos_ids)


def ids(*tokens):
    return [V[t] for t in tokens]


def test_token_table_facts():
    assert [t for t, i in V.items() if TABLE.blank_line[i]] == ["ĊĊ", ".ĊĊ", "ĊĊĠ"]
    assert TABLE.starts_nl[V["Ċb"]] and not TABLE.ends_nl[V["Ċb"]]
    assert TABLE.ends_nl[V["aĊ"]] and TABLE.starts_nl[V["<0x0A>"]] and TABLE.ends_nl[V["<0x0A>"]]
    assert (TABLE.think_open, TABLE.think_close, TABLE.eos_ids) == (5, 6, (7,))


@pytest.mark.parametrize("tokens, previous, expected", [
    ("ĊĊ", None, True), (".ĊĊ", "a", True), ("Ċ", None, False),   # first generated token: only a whole blank line
    ("Ċ", "Ċ", True), ("Ċb", "aĊ", True), ("Ċ", "a", False), ("a", "Ċ", False), ("<0x0A>", "<0x0A>", True),
])
def test_boundary_rule(tokens, previous, expected):
    assert TABLE.is_boundary(V[tokens], None if previous is None else V[previous]) is expected


@pytest.mark.parametrize("generated, thinking, steps, captures, closed", [
    # two steps, the second ended by </think>; one row at the first token of step 2
    (("a", "ĊĊ", "b", "</think>", "a"), True, [(0, 2), (2, 3)], [2], True),
    # a region that ends right after a boundary has no empty final step
    (("a", "ĊĊ", "b", "ĊĊ", "</think>"), True, [(0, 2), (2, 4)], [2], True),
    # the region opens at <think>; tokens before it are not steps
    (("b", "<think>", "a", ".ĊĊ", "b"), False, [(2, 4), (4, 5)], [4], False),
    # never opened: no steps at all
    (("a", "ĊĊ", "b"), False, [], [], False),
    # SmolLM2-style blank line written as two Ċ tokens
    (("a", "Ċ", "Ċ", "b", "Ċ"), True, [(0, 3), (3, 5)], [3], False),
    # EOS ends the region; two boundaries in a row make a one-token step
    (("a", "ĊĊ", "ĊĊ", "b", "<eos>", "a"), True, [(0, 2), (2, 3), (3, 4)], [2, 3], False),
    # the last token starts a step: its row is still due (the collection run takes it with one more step)
    (("a", "ĊĊ", "b"), True, [(0, 2), (2, 3)], [2], False),
    # a boundary as the very last token: no row for it
    (("a", "ĊĊ"), True, [(0, 2)], [], False),
])
def test_split_steps(generated, thinking, steps, captures, closed):
    split = split_steps(ids(*generated), TABLE, thinking)
    assert split.steps == steps
    assert split.capture_positions == captures
    assert split.think_closed is closed
    assert len(split.capture_positions) == max(len(split.steps) - 1, 0)


def test_thinking_at_start():
    assert thinking_at_start(ids("a", "<think>", "Ċ"), TABLE)
    assert not thinking_at_start(ids("<think>", "Ċ", "</think>", "ĊĊ"), TABLE)
    assert not thinking_at_start(ids("a", "b"), TABLE)
    assert thinking_at_start(ids("a", "b"), NO_THINK)  # a model without <think> thinks in its whole response


def test_step_confidence_is_the_geometric_mean():
    logps = [math.log(0.5), math.log(0.8), math.log(0.2)]
    assert step_confidence(logps) == pytest.approx((0.5 * 0.8 * 0.2) ** (1 / 3), rel=1e-12)
    assert math.isnan(step_confidence([]))


def test_tracker_agrees_with_split_steps():
    """The online, batched tracker flags the same boundaries and rows as the offline split."""
    rng = random.Random(0)
    rows = 16
    weights = [5, 3, 3, 1, 5, 1, 1, 0.3, 1, 1, 1, 1]
    streams = [rng.choices(range(len(V)), weights=weights, k=40) for _ in range(rows)]
    prompts = [ids("a", "<think>") if r % 2 else ids("a") for r in range(rows)]
    tracker = StepTracker(TABLE, prompts, torch.device("cpu"))
    flagged = [([], []) for _ in range(rows)]
    for pos in range(40):
        tracker.advance(torch.tensor([s[pos] for s in streams]))
        for r in range(rows):
            if tracker.boundary[r]:
                flagged[r][0].append(pos)
            if tracker.capture[r]:
                flagged[r][1].append(pos)
    for r in range(rows):
        split = split_steps(streams[r], TABLE, thinking_at_start(prompts[r], TABLE))
        assert flagged[r][0] == split.boundaries, r
        # online, the row at the very last token is taken later by one more cached step
        assert flagged[r][1] == split.capture_positions, r
