"""Grading a generation file: idx join, missing records, pass@k, token counts, the time-limited pool."""

import json

import hanging_judge
import pytest
import slow_import_judge
from tiny import make_tokenizer

from rebalance.examples import Example
from rebalance.grading.equivalence import math_verify_all
from rebalance.grading.grade import grade, metrics, pass_at_k


@pytest.fixture(scope="module")
def tokenizer():
    return make_tokenizer()


def examples(answers):
    return [Example(i, f"problem {i}", a, {}) for i, a in enumerate(answers)]


def write(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return str(path)


def boxed(x):
    return f"Let me think.\n\nok\n</think>\n\n$\\boxed{{{x}}}$"


def test_records_join_by_idx_and_missing_ones_count_wrong(tmp_path, tokenizer):
    gold = examples(["1", "2", "3", "4", "5"])
    # shuffled order, idx 1 and 3 dropped, one duplicate (the first wins), one unknown idx
    recs = [{"idx": 4, "generated_responses": [boxed(5)]}, {"idx": 0, "generated_responses": [boxed(1)]},
            {"idx": 2, "generated_responses": [boxed(9)]}, {"idx": 0, "generated_responses": [boxed(7)]},
            {"idx": 17, "generated_responses": [boxed(1)]}]
    graded = grade(write(tmp_path / "run.jsonl", recs), gold, "gsm8k", tokenizer, True)
    m = metrics(graded)
    assert m["n"] == 5 and m["missing"] == [1, 3] and m["unknown_idx"] == [17]
    assert m["accuracy"] == pytest.approx(100 * 2 / 5)  # idx 0 and 4 right, 2 wrong, 1 and 3 missing
    assert m["wrong"] == [2]
    assert [r.idx for r in graded.records] == [4, 0, 2]


def test_pass_at_k_and_sampling(tmp_path, tokenizer):
    gold = examples(["7", "8"])
    recs = [{"idx": 0, "generated_responses": [boxed(7), boxed(1), boxed(7), boxed(2)]},
            {"idx": 1, "generated_responses": [boxed(1), boxed(1), boxed(1), boxed(8)]}]
    path = write(tmp_path / "run.jsonl", recs)
    m = metrics(grade(path, gold, "math", tokenizer, True), k=2)
    assert m["accuracy"] == pytest.approx(100 * (2 / 4 + 1 / 4) / 2)
    assert m["pass_at_k"]["2"] == pytest.approx(100 * ((1 - 1 / 6) + (1 - 3 / 6)) / 2)
    first_two = metrics(grade(path, gold, "math", tokenizer, True, n_sampling=2))
    assert first_two["samples"] == 4 and first_two["accuracy"] == pytest.approx(100 * (1 / 2 + 0) / 2)


@pytest.mark.parametrize("n, c, k, expected", [(4, 0, 1, 0.0), (4, 4, 2, 1.0), (5, 2, 1, 0.4), (4, 1, 2, 0.5),
                                               (10, 3, 5, 1 - (7 * 6 * 5 * 4 * 3) / (10 * 9 * 8 * 7 * 6))])
def test_pass_at_k_estimator(n, c, k, expected):
    assert pass_at_k(n, c, k) == pytest.approx(expected)


def test_token_counts_use_the_tokenizer(tmp_path, tokenizer):
    response = "Let me think.\n\nAdd 3 + 4.\n</think>\n\nThe total is $\\boxed{7}$."
    graded = grade(write(tmp_path / "r.jsonl", [{"idx": 0, "generated_responses": [response]}]),
                   examples(["7"]), "math", tokenizer, True)
    rec = graded.records[0]
    assert rec.tokens == [len(tokenizer(response, add_special_tokens=False)["input_ids"])]
    assert rec.think_tokens == [len(tokenizer("Let me think.\n\nAdd 3 + 4.\n", add_special_tokens=False)["input_ids"])]
    assert rec.closed == [True] and metrics(graded)["truncated"] == 0.0


def test_truncated_share_for_thinking_and_plain_models(tmp_path, tokenizer):
    recs = [{"idx": 0, "generated_responses": ["thinking forever"], "finish_reason": "length"},
            {"idx": 1, "generated_responses": [boxed(2)], "finish_reason": "eos"}]
    path = write(tmp_path / "r.jsonl", recs)
    assert metrics(grade(path, examples(["1", "2"]), "gsm8k", tokenizer, True))["truncated"] == 0.5
    plain = metrics(grade(path, examples(["1", "2"]), "gsm8k", tokenizer, False))
    assert plain["truncated"] == 0.5 and plain["accuracy"] == 50.0


def test_pool_gives_up_on_a_hanging_comparison_and_finishes_the_rest():
    pairs = [("1", "1"), ("hang", "x"), ("2", "3"), ("4", "4"), ("5", "5")]
    verdicts, timed_out = math_verify_all(pairs, workers=2, timeout=2.0, judge=hanging_judge.judge)
    assert verdicts == [True, False, False, True, True] and timed_out == [1]


def test_comparisons_queued_behind_a_hanging_one_go_to_a_fresh_pool():
    """One worker: while it hangs nothing behind it can finish, so after each time-out the rest are
    handed to a new pool, where the second hang times out in turn."""
    pairs = [("hang", "x"), ("1", "1"), ("hang", "y"), ("2", "3"), ("4", "4")]
    verdicts, timed_out = math_verify_all(pairs, workers=1, timeout=1.0, judge=hanging_judge.judge)
    assert verdicts == [False, True, False, False, True] and timed_out == [0, 2]


def test_pool_runs_math_verify():
    verdicts, timed_out = math_verify_all([(r"\frac{1}{2}", "0.5"), ("3", "4")], workers=2)
    assert verdicts == [True, False] and timed_out == []


def test_one_pass_thinking_counts_equal_tokenizing_the_thinking_part(tokenizer):
    from rebalance.grading.grade import count_tokens, think_text

    texts = ["a b\n\nc</think>x", "Wait\n\n</think>\n\nThe answer is 3", "no close at all\n\n", "</think>only"]
    totals, thinks = count_tokens(tokenizer, texts, batch=3)
    assert totals == [len(tokenizer(t, add_special_tokens=False)["input_ids"]) for t in texts]
    assert thinks == [len(tokenizer(think_text(t), add_special_tokens=False)["input_ids"]) for t in texts]


def test_the_pool_limit_starts_when_the_comparison_does():
    """Starting the workers and importing the judge (two seconds here) is not part of a comparison's
    one-second limit."""
    pairs = [("1", "1"), ("2", "3"), ("4", "4")]
    verdicts, timed_out = math_verify_all(pairs, workers=1, timeout=1.0, judge=slow_import_judge.judge)
    assert (verdicts, timed_out) == ([True, False, True], [])
