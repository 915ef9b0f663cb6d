"""The `steer` layer criterion (rebalance/analysis/layer_steering.py): which boundaries a fed-back
response keeps, the score against hand-computed cases, the pick, and the log-probabilities on a
tiny random model against a forward written out with input embeddings."""

import math

import numpy as np
import pytest
import torch
from conftest import load

from rebalance.analysis.labels import DROPPED, NEGATIVE, POSITIVE
from rebalance.analysis.layer_steering import (
    FedBack,
    FedBackRuns,
    best_steering_layer,
    fed_back,
    next_token_logprobs,
    steer_score,
)

P, N, D = POSITIVE, NEGATIVE, DROPPED

# a response of 8 tokens over three steps of 10, 6 and 9 characters; token t starts at STARTS[t]
STARTS = [0, 3, 7, 10, 13, 16, 19, 22]
STEPS = [10, 6, 9]


@pytest.mark.parametrize("labels, offset, most, boundaries, kept_labels, length", [
    ([P, N], 1, 4, [4, 6], [P, N], 8),      # step 1 starts token 3, step 2 token 5, behind a prompt of 2
    ([D, N], 1, 4, [6], [N], 8),            # a dropped step keeps no boundary
    ([P, N], 1, 1, [4], [P], 6),            # at most one: cut after its next token
    ([P], 2, 4, [6], [P], 8),               # offset 2: label 0 is step 2's
])
def test_boundaries_kept_from_a_response(labels, offset, most, boundaries, kept_labels, length):
    prompt, response = [100, 101], list(range(8))
    item = fed_back(prompt, response, STARTS, STEPS, labels, offset, most)
    assert (item.boundaries, item.labels, len(item.ids)) == (boundaries, kept_labels, length)
    assert item.ids == (prompt + response)[:length]
    with pytest.raises(ValueError, match="offset >= 1"):
        fed_back(prompt, response, STARTS, STEPS, labels, 0, most)


def test_a_step_inside_a_token_or_nothing_labelled_keeps_nothing():
    assert fed_back([1], [5, 6, 7], [0, 4, 8], [5, 7], [P]) is None          # step 1 starts at char 5: mid-token
    assert fed_back([1], [5, 6, 7], [0, 4, 8], [4, 8], [D]) is None
    assert fed_back([1], [5, 6, 7], [0, 4, 8], [4, 8], [P]).boundaries == [1]


def test_score_against_hand_computed_shifts():
    base = np.array([-0.5, -0.2, -1.0, -0.1])
    steered = np.array([-1.5, -3.2, -0.5, -0.1])  # shifts -1, -3 before overthinking; +0.5, 0 before confident
    assert steer_score(base, steered, np.array([P, P, N, N])) == (0.25, -2.0, 2.25)
    confident, overthinking, score = steer_score(base, steered, np.array([P, P, P, P]))
    assert math.isnan(confident) and overthinking == -0.875 and math.isnan(score)
    confident, overthinking, score = steer_score(base, steered, np.array([N, N, N, N]))
    assert confident == -0.875 and math.isnan(overthinking) and math.isnan(score)
    assert steer_score(base, steered, np.array([P, D, N, D])) == (0.5, -1.0, 1.5)  # a dropped step counts nowhere


def test_the_pick_takes_the_highest_score_the_lowest_layer_on_ties_and_never_nan():
    nan = (float("nan"),) * 3
    assert best_steering_layer({3: (0, 0, 1.0), 1: (0, 0, 2.0), 2: (0, 0, 2.0), 4: nan}) == 1
    assert best_steering_layer({0: nan, 5: (0, 0, -3.0)}) == 5
    with pytest.raises(ValueError, match="both kinds"):
        best_steering_layer({0: nan})


@pytest.fixture(scope="module")
def tiny_llama(tiny_dirs):
    return load(tiny_dirs["llama"])


def written_out(model, items, vector):
    """log p(next token) at each boundary, the vector added to the embeddings there (site 0), one
    sequence at a time, without hooks."""
    out = []
    for item in items:
        ids = torch.tensor([item.ids])
        embeds = model.get_input_embeddings()(ids)
        if vector is not None:
            embeds[0, item.boundaries] += vector
        logp = torch.log_softmax(model(inputs_embeds=embeds).logits[0].float(), dim=-1)
        out += [float(logp[b, item.ids[b + 1]]) for b in item.boundaries]
    return np.asarray(out)


def test_logprobs_match_a_forward_written_out_with_and_without_a_push(tiny_llama):
    model, tokenizer = tiny_llama
    items = [FedBack(list(range(5, 17)), [4, 9], [P, N]), FedBack(list(range(30, 37)), [2], [N]),
             FedBack(list(range(40, 60)), [3, 11, 17], [P, P, N])]
    pad = tokenizer.pad_token_id
    torch.manual_seed(0)
    vector = torch.randn(model.config.hidden_size) * 3
    with torch.no_grad():
        plain, pushed = written_out(model, items, None), written_out(model, items, vector)
    for batch_size in (1, 2, 8):  # padding and the kept logit columns change nothing
        assert np.allclose(next_token_logprobs(model, items, pad, batch_size=batch_size), plain, atol=1e-5)
        assert np.allclose(next_token_logprobs(model, items, pad, (0, vector), batch_size), pushed, atol=1e-5)
    assert np.abs(pushed - plain).min() > 1e-3  # the push is felt at every boundary
    zero = next_token_logprobs(model, items, pad, (1, torch.zeros(model.config.hidden_size)))
    assert np.array_equal(zero, next_token_logprobs(model, items, pad))


def test_runs_share_the_cache_before_the_first_boundary_and_leave_it_as_it_was(tiny_llama):
    model, tokenizer = tiny_llama
    items = [FedBack(list(range(5, 17)), [4, 9], [P, N]), FedBack(list(range(30, 37)), [2], [N]),
             FedBack(list(range(40, 60)), [6, 11, 17], [P, P, N])]
    runs = FedBackRuns(model, items, tokenizer.pad_token_id, batch_size=2)
    assert [batch.shared for batch in runs.batches] == [2, 6]  # the earliest first boundary of each batch
    torch.manual_seed(1)
    plain = runs.logprobs()
    pushed = runs.logprobs((2, torch.randn(model.config.hidden_size) * 3))
    assert np.abs(pushed - plain).min() > 1e-3
    assert np.array_equal(runs.logprobs(), plain)  # a run does not leave its keys in the shared cache
    with torch.no_grad():
        assert np.allclose(plain, written_out(model, items, None), atol=1e-5)


def test_the_criterion_is_checked_when_the_job_is_made(tmp_path):
    from rebalance.errors import UsageError
    from rebalance.stages.select_layer import SelectJob

    with pytest.raises(UsageError, match="--criterion steer feeds .* give --model_name_or_path"):
        SelectJob(str(tmp_path / "none.jsonl"), str(tmp_path), criterion="steer")
    with pytest.raises(UsageError, match="--criterion must be one of ridge, steer, got 'r2'"):
        SelectJob(str(tmp_path / "none.jsonl"), str(tmp_path), criterion="r2")


def test_the_table_marks_the_steer_pick_beside_r2():
    from rebalance.analysis.layer_scoring import format_steer_table

    nan = (float("nan"),) * 3
    table = format_steer_table({0: 0.9, 1: 0.99, 2: 0.5}, {0: (0.0, -1.0, 1.0), 1: (-2.0, -0.5, -1.5), 2: nan})
    lines = table.splitlines()
    assert lines[1].split() == ["0", "0.9000", "0.000", "-1.000", "1.000", "<-", "best"]
    assert lines[2].split() == ["1", "0.9900", "-2.000", "-0.500", "-1.500"]  # the best R^2 is not the pick
    assert lines[3].split() == ["2", "0.5000", "nan", "nan", "nan"]
