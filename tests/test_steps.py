import math
import random

import pytest
import torch

from rebalance.decoding.steps import (
    StepTracker,
    TokenTable,
    split_steps,
    step_confidence,
    steps_from_flags,
    thinking_at_start,
    token_flags,
)


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


class Tables:
    """Built when a test asks, not at import (so a mutation of the table code is seen by the tests)."""

    @property
    def table(self):
        return TokenTable.from_tokenizer(FakeTokenizer())

    @property
    def no_think(self):
        t = self.table
        return TokenTable(t.blank_line, t.starts_nl, t.ends_nl, None, None, t.eos_ids)


T = Tables()


def ids(*tokens):
    return [V[t] for t in tokens]


def test_token_table_facts():
    table = T.table
    assert table.blank_line.shape == (len(V),) and table.blank_line.dtype == torch.bool
    wide = TokenTable.from_tokenizer(FakeTokenizer(), vocab_size=20)  # the model's vocabulary may be larger
    assert wide.blank_line.shape == (20,) and not wide.blank_line[12:].any()
    assert TokenTable.from_tokenizer(FakeTokenizer(), vocab_size=5).blank_line.shape == (len(V),)
    assert TokenTable.from_tokenizer(FakeTokenizer(), eos_ids=[7, 3]).eos_ids == (7, 3)
    assert [t for t, i in V.items() if T.table.blank_line[i]] == ["ĊĊ", ".ĊĊ", "ĊĊĠ"]
    assert T.table.starts_nl[V["Ċb"]] and not T.table.ends_nl[V["Ċb"]]
    assert T.table.ends_nl[V["aĊ"]] and T.table.starts_nl[V["<0x0A>"]] and T.table.ends_nl[V["<0x0A>"]]
    assert (T.table.think_open, T.table.think_close, T.table.eos_ids) == (5, 6, (7,))


@pytest.mark.parametrize("tokens, previous, expected", [
    ("ĊĊ", None, True), (".ĊĊ", "a", True), ("Ċ", None, False),   # first generated token: only a whole blank line
    ("Ċ", "Ċ", True), ("Ċb", "aĊ", True), ("Ċ", "a", False), ("a", "Ċ", False), ("<0x0A>", "<0x0A>", True),
])
def test_boundary_rule(tokens, previous, expected):
    assert T.table.is_boundary(V[tokens], None if previous is None else V[previous]) is expected


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
    split = split_steps(ids(*generated), T.table, thinking)
    assert split.steps == steps
    assert split.capture_positions == captures
    assert split.think_closed is closed
    assert len(split.capture_positions) == max(len(split.steps) - 1, 0)


def test_thinking_at_start():
    assert thinking_at_start(ids("a", "<think>", "Ċ"), T.table)
    assert not thinking_at_start(ids("<think>", "Ċ", "</think>", "ĊĊ"), T.table)
    assert not thinking_at_start(ids("a", "b"), T.table)
    assert thinking_at_start(ids("a", "b"), T.no_think)  # a model without <think> thinks in its whole response


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
    tracker = StepTracker(T.table, prompts, torch.device("cpu"))
    flagged = [([], []) for _ in range(rows)]
    packed = [[] for _ in range(rows)]
    for pos in range(40):
        tracker.advance(torch.tensor([s[pos] for s in streams]))
        for r, bits in enumerate(token_flags(tracker).tolist()):
            packed[r].append(bits)
            if tracker.boundary[r]:
                flagged[r][0].append(pos)
            if tracker.capture[r]:
                flagged[r][1].append(pos)
    closed = 0
    for r in range(rows):
        split = split_steps(streams[r], T.table, thinking_at_start(prompts[r], T.table))
        assert flagged[r][0] == split.boundaries, r
        # online, the row at the very last token is taken later by one more cached step
        assert flagged[r][1] == split.capture_positions, r
        assert steps_from_flags(packed[r]) == split, r  # a record's steps, straight from decoding
        closed += split.think_closed
    assert 0 < closed < rows  # both kinds of region end were seen


@pytest.mark.parametrize("flags, steps, boundaries, captures, region_end, closed", [
    ([], [], [], [], 0, False),
    ([0, 0], [], [], [], 0, False),  # never thinking
    ([1, 1, 3, 5, 1, 8, 1], [(0, 3), (3, 5)], [2], [3], 5, True),
    ([0, 1, 3, 3, 5], [(1, 3), (3, 4), (4, 5)], [2, 3], [4], 5, False),  # cut at the limit mid-step
    ([8], [], [], [], 0, True),  # </think> first
])
def test_steps_from_flags_by_hand(flags, steps, boundaries, captures, region_end, closed):
    split = steps_from_flags(flags)
    assert (split.steps, split.boundaries, split.capture_positions, split.region_end, split.think_closed) == \
        (steps, boundaries, captures, region_end, closed)


def test_a_fresh_tracker_row_is_alive_and_flags_nothing_and_joins_any_batch():
    tracker = StepTracker(T.table, [ids("a", "<think>")], torch.device("cpu"))
    for name in StepTracker.ROW_FIELDS:
        value = getattr(tracker, name)
        assert value.dtype == torch.bool and value.shape == (1,), name
    assert tracker.alive.tolist() == [True] and tracker.thinking.tolist() == [True]
    assert not (tracker.boundary | tracker.capture | tracker.is_boundary | tracker.finished).any()
    tracker.advance(torch.tensor([V["ĊĊ"]]))
    tracker.extend(StepTracker(T.table, [ids("a")], torch.device("cpu")))  # a new example takes a slot
    assert tracker.thinking.tolist() == [True, False] and tracker.boundary.tolist() == [True, False]
    tracker.keep(torch.tensor([1]))
    assert tracker.thinking.tolist() == [False] and tracker.alive.tolist() == [True]


def test_tracker_flags_on_a_script():
    """Row 0 thinks from its prompt and ends with EOS; row 1 has no <think> in its prompt and opens it."""
    tracker = StepTracker(T.table, [ids("<think>"), ids("a")], torch.device("cpu"))
    script = [("a", "a"), ("ĊĊ", "ĊĊ"), ("aĊ", "<think>"), ("Ċb", "ĊĊ"), ("<eos>", "</think>"), ("ĊĊ", "ĊĊ")]
    seen = []
    for first, second in script:
        tracker.advance(torch.tensor([V[first], V[second]]))
        seen.append([tracker.is_boundary.tolist(), tracker.boundary.tolist(), tracker.alive.tolist(),
                     tracker.thinking.tolist()])
    assert seen == [
        [[False, False], [False, False], [True, True], [True, False]],
        [[True, True], [True, False], [True, True], [True, False]],    # row 1 not thinking yet: not in the region
        [[False, False], [False, False], [True, True], [True, True]],  # row 1 opens <think>
        [[True, True], [True, True], [True, True], [True, True]],      # "Ċb" after "aĊ" completes a blank line
        [[False, False], [False, False], [False, True], [True, False]],  # EOS ends row 0; </think> closes row 1
        [[True, True], [False, False], [False, True], [True, False]],  # a finished row stays finished
    ]
    assert tracker.finished.tolist() == [True, False] and tracker.closed.tolist() == [False, True]


def test_tracker_without_eos_ids_or_think_tokens():
    """No EOS id: no token ends a row (not even id 1); no <think>: every row thinks throughout."""
    bare = TokenTable(T.table.blank_line, T.table.starts_nl, T.table.ends_nl, None, None, ())
    tracker = StepTracker(bare, [ids("a")], torch.device("cpu"))
    for token in ("Ċ", "<eos>", "</think>", "ĊĊ", "Ċ"):
        tracker.advance(torch.tensor([V[token]]))
        assert tracker.alive.tolist() == [True] and tracker.thinking.tolist() == [True]
    assert tracker.boundary.tolist() == [True] and not tracker.finished.any()  # "Ċ" after "ĊĊ": a boundary


def test_a_table_moved_to_a_device_keeps_every_fact():
    table, moved = T.table, T.table.to("cpu")
    assert (moved.think_open, moved.think_close, moved.eos_ids) == (table.think_open, table.think_close, (7,))
    assert all(torch.equal(getattr(moved, f), getattr(table, f)) for f in ("blank_line", "starts_nl", "ends_nl"))


def test_a_tokenizer_without_eos_gives_a_table_without_eos():
    class NoEos(FakeTokenizer):
        eos_token_id = None

    assert TokenTable.from_tokenizer(NoEos()).eos_ids == ()
