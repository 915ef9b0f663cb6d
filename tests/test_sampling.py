"""Sampling: the repetition penalty and the release's top-p rule against Hugging Face's own processors,
and the one draw per step against exact probabilities."""

import pytest
import torch
from conftest import PROBLEMS, load
from transformers import RepetitionPenaltyLogitsProcessor

from rebalance.decoding.decode import steer_batch
from rebalance.decoding.records import make_table
from rebalance.decoding.sampling import (
    ReleasedTopP,
    Sampling,
    counter_uniform,
    descending,
    draw,
    mix32,
    penalise_repeats,
)
from rebalance.decoding.steering import SteeringSetup
from rebalance.examples import Example, prompt_ids

PAD = 5


def test_penalty_is_hf_rule_on_each_rows_own_tokens_and_never_on_the_padding():
    gen = torch.Generator().manual_seed(0)
    scores = torch.randn(2, 12, generator=gen) * 3  # both signs
    rows = [[1, 3, 3, 8], [2, 9]]  # the second row is left-padded with PAD in the batch
    padded = torch.tensor([rows[0], [PAD, PAD] + rows[1]])
    seen = torch.zeros(2, 12, dtype=torch.bool)
    for r, row in enumerate(rows):
        seen[r, row] = True
    ours = penalise_repeats(scores.clone(), seen, 1.3)
    hf = RepetitionPenaltyLogitsProcessor(1.3)
    for r, row in enumerate(rows):  # HF on the row alone, no padding
        assert torch.equal(ours[r], hf(torch.tensor([row]), scores[r:r + 1].clone())[0])
    assert ours[1, PAD] == scores[1, PAD]  # the padding is not a token the row has seen
    assert not torch.equal(hf(padded, scores.clone())[1], ours[1])  # as HF on the padded batch would have it
    # direction: a seen token always loses probability, whatever the sign of its logit
    for r, row in enumerate(rows):
        for token in set(row):
            assert torch.softmax(ours[r], -1)[token] < torch.softmax(scores[r], -1)[token]


@pytest.mark.parametrize("arch", ["qwen2", "llama"])
def test_engine_with_a_penalty_decodes_what_hf_generate_does(tiny_dirs, arch):
    """Greedy with penalty 1.3, unsteered: the prompt's tokens count as seen, as in HF."""
    model, tokenizer = load(tiny_dirs[arch])
    table = make_table(model, tokenizer)
    examples = [Example(i, p, "", {}) for i, p in enumerate(PROBLEMS[:3])]
    off = SteeringSetup(None, -1, "off", 0.0, None)
    ours = steer_batch(model, tokenizer, table, examples, off, 16, Sampling(repetition_penalty=1.3))
    plain = steer_batch(model, tokenizer, table, examples, off, 16)
    for ex, res in zip(examples, ours):
        prompt = torch.tensor([prompt_ids(tokenizer, ex.problem)], device=model.device)
        with torch.no_grad():
            out = model.generate(input_ids=prompt, max_new_tokens=16, do_sample=False, repetition_penalty=1.3,
                                 pad_token_id=tokenizer.pad_token_id, eos_token_id=list(table.eos_ids))
        assert res.tokens == out[0, prompt.shape[1]:].tolist()[: len(res.tokens)]
    assert [r.tokens for r in ours] != [r.tokens for r in plain]  # the penalty changed something here


# ---- one draw for every row ---------------------------------------------------------------------

def lowbias32(x):
    """The reference hash, on Python integers."""
    x &= 0xFFFFFFFF
    x ^= x >> 16
    x = (x * 0x7FEB352D) & 0xFFFFFFFF
    x ^= x >> 15
    x = (x * 0x846CA68B) & 0xFFFFFFFF
    return x ^ (x >> 16)


def test_the_hash_is_lowbias32_on_every_32_bit_pattern_class():
    values = [0, 1, 2, 0xFFFF, 0x10000, 0x7FFFFFFF, 0x80000000, 0xDEADBEEF, 0xFFFFFFFF, 1 << 40 | 5]
    assert mix32(torch.tensor(values)).tolist() == [lowbias32(v) for v in values]


# chi-square critical values at p = 0.001 (tables): 3 degrees of freedom 16.27, 9 degrees 27.88
@pytest.mark.parametrize("probs, critical", [
    ([0.5, 0.25, 0.15, 0.1, 0.0], 16.27),
    ([0.02, 0.08, 0.1, 0.1, 0.2, 0.05, 0.15, 0.1, 0.1, 0.1], 27.88),
])
def test_draws_follow_the_probabilities(probs, critical):
    """20,000 draws of one example over its positions, and of 20,000 examples at one position."""
    n = 20_000
    p = torch.tensor(probs, dtype=torch.float64)
    for idx, position in [(torch.full((n,), 3), torch.arange(n)), (torch.arange(n), torch.full((n,), 11))]:
        tokens = draw(p.float().expand(n, -1), counter_uniform(42, idx, position))
        counts = torch.bincount(tokens, minlength=len(probs)).double()
        live = p > 0
        assert counts[~live].sum() == 0  # a token of probability zero is never drawn
        chi2 = ((counts[live] - n * p[live]) ** 2 / (n * p[live])).sum().item()
        assert chi2 < critical


def test_a_draw_is_the_inverse_cdf_of_its_uniform_and_ignores_the_scale():
    probs = torch.tensor([[0.0, 0.2, 0.0, 0.3, 0.5]] * 6) * torch.tensor([[1.0], [1.0], [2.0], [2.0], [0.5], [1.0]])
    uniform = torch.tensor([0.0, 0.19999, 0.2001, 0.49, 0.51, 0.99999], dtype=torch.float64)
    assert draw(probs, uniform).tolist() == [1, 1, 3, 3, 4, 4]


def test_a_uniform_is_a_function_of_seed_idx_and_position_only():
    idx, position = torch.tensor([0, 1, 2, 1, 0]), torch.tensor([0, 0, 0, 7, 7])
    u = counter_uniform(42, idx, position)
    assert u.dtype == torch.float64 and ((u >= 0) & (u < 1)).all()
    assert counter_uniform(42, idx[[3, 1]], position[[3, 1]]).tolist() == u[[3, 1]].tolist()  # not the row order
    assert len(set(u.tolist())) == 5
    assert (counter_uniform(43, idx, position) != u).all()
    assert (counter_uniform(42 + (1 << 32), idx, position) != u).all()  # the seed's high half counts too
    many = counter_uniform(0, torch.arange(10_000), torch.zeros(10_000, dtype=torch.long))
    assert abs(many.mean().item() - 0.5) < 0.01 and abs(many.var().item() - 1 / 12) < 0.003


# ---- the release's top-p rule ------------------------------------------------------------------------

def sorted_top_p(scores, top_p):
    """The rule written with a sort and its permutation: the reference the cut by score must equal."""
    ranked, order = torch.sort(scores, dim=-1, descending=True)
    drop = torch.softmax(ranked, dim=-1).cumsum(dim=-1) > top_p
    drop[:, 0] = False
    return scores.masked_fill(torch.zeros_like(drop).scatter(-1, order, drop), float("-inf"))


def test_released_top_p_keeps_top_token_and_drops_the_crossing_one():
    scores = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05], [0.97, 0.01, 0.01, 0.01]]))
    out = ReleasedTopP(1.0, 0.8)(None, scores.clone())
    assert torch.isfinite(out[0]).tolist() == [True, True, False, False]  # 0.5, 0.8 kept; 0.95 crosses
    assert torch.isfinite(out[1]).tolist() == [True, False, False, False]
    assert torch.equal(ReleasedTopP(0.5, 1.0)(None, scores.clone()), scores / 0.5)


def test_tokens_tied_at_the_cut_are_kept_together():
    scores = torch.log(torch.tensor([[0.4, 0.3, 0.3], [0.3, 0.4, 0.3]]))
    assert torch.isfinite(ReleasedTopP(1.0, 0.75)(None, scores)).all()  # rank 2 kept, so its twin at rank 3 too
    assert torch.isfinite(ReleasedTopP(1.0, 0.35)(None, scores)).tolist() == [[True, False, False],
                                                                               [False, True, False]]


@pytest.mark.parametrize("temperature, top_p", [(0.7, 0.95), (1.0, 0.5), (0.3, 0.99), (1.5, 0.9)])
def test_the_cut_by_score_equals_the_rule_written_with_a_sort(temperature, top_p):
    gen = torch.Generator().manual_seed(int(100 * top_p))
    for scale in (0.3, 3.0, 10.0):  # flat to peaked
        scores = torch.randn(32, 4096, generator=gen) * scale
        scores[:, :7] = float("-inf")  # suppressed tokens, as a processor leaves them
        got = ReleasedTopP(temperature, top_p)(None, scores)
        want = sorted_top_p(scores / temperature, top_p)
        assert torch.equal(got, want)


def test_descending_values_equal_torch_sort_on_every_dtype():
    scores = torch.randn(3, 50, generator=torch.Generator().manual_seed(0))
    scores[0, 4] = float("-inf")
    for dtype in (torch.float32, torch.float64, torch.bfloat16):
        x = scores.to(dtype)
        got = descending(x)
        assert got.dtype == dtype and torch.equal(got, torch.sort(x, dim=-1, descending=True).values)
