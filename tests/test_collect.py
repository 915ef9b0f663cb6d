"""The one-pass collection run against independent recomputation by a plain full forward."""

import math

import pytest
import torch
from conftest import PROBLEMS, TOL, load
from transformers import LogitsProcessor

from rebalance.decoding.decode import collect_batch
from rebalance.decoding.records import make_table
from rebalance.decoding.steps import split_steps, thinking_at_start
from rebalance.examples import Example, prompt_ids

EXAMPLES = [Example(i, p, str(i), {}) for i, p in enumerate(PROBLEMS)]


class ForceTokens(LogitsProcessor):
    """Make every row write a fixed script (the confidence recorder still sees the raw logits)."""

    def __init__(self, script):
        self.script = script

    def __call__(self, input_ids, scores):
        step = self.calls = getattr(self, "calls", -1) + 1
        forced = torch.full_like(scores, float("-inf"))
        forced[:, self.script[min(step, len(self.script) - 1)]] = 0.0
        return forced


def full_forward(model, prompt, tokens):
    """Hidden states of every layer and max log-probs, from one plain forward of prompt+response."""
    ids = torch.tensor([list(prompt) + list(tokens)], device=model.device)
    with torch.no_grad():
        out = model(input_ids=ids, output_hidden_states=True)
    logp = torch.log_softmax(out.logits[0].double(), dim=-1).amax(-1).cpu()
    # token i of the response was produced by the logits at position len(prompt) + i - 1
    return out.hidden_states, logp[len(prompt) - 1: len(prompt) - 1 + len(tokens)]


def check_against_full_forward(model, tokenizer, table, examples, results):
    n_sites = model.config.num_hidden_layers + 1
    for ex, res in zip(examples, results):
        prompt = prompt_ids(tokenizer, ex.problem)
        split = split_steps(res.tokens, table, thinking_at_start(prompt, table))
        confs = res.record["sentence_confidences"]
        # V = steps - 1, every layer of HF's output_hidden_states present
        assert sorted(res.hidden) == list(range(n_sites))
        assert res.hidden[0][0]["step"].shape == (max(len(confs) - 1, 0), model.config.hidden_size)
        assert len(res.record["step_texts"]) == len(confs)
        hidden, logp = full_forward(model, prompt, res.tokens)
        for j, pos in enumerate(split.capture_positions):
            for layer in range(n_sites):
                expected = hidden[layer][0, len(prompt) + pos].float().cpu()
                got = res.hidden[layer][0]["step"][j].float()
                # relative to the row's norm: single elements near zero carry ~1e-5 absolute noise
                assert (got - expected).norm() <= TOL.row * expected.norm(), (j, layer)
        for conf, (start, end) in zip(confs, split.steps):
            assert conf == pytest.approx(math.exp(logp[start:end].mean().item()), rel=TOL.conf)


@pytest.fixture(scope="module", params=["qwen2", "qwen3", "llama"])
def tiny(request, tiny_dirs):
    model, tokenizer = load(tiny_dirs[request.param])
    return model, tokenizer, make_table(model, tokenizer)


def test_records_and_hidden_rows_match_full_forward(tiny):
    model, tokenizer, table = tiny
    results = collect_batch(model, tokenizer, table, EXAMPLES, max_new_tokens=40)
    assert [r.record["idx"] for r in results] == [0, 1, 2, 3, 4]
    assert all(len(r.record["sentence_confidences"]) >= 3 for r in results)  # the fixture writes steps
    check_against_full_forward(model, tokenizer, table, EXAMPLES, results)


def test_batch_size_does_not_change_greedy_text(tiny):
    model, tokenizer, table = tiny
    batched = collect_batch(model, tokenizer, table, EXAMPLES[:4], max_new_tokens=30)
    single = [collect_batch(model, tokenizer, table, [ex], max_new_tokens=30)[0] for ex in EXAMPLES[:4]]
    if not TOL.same_ids:
        same = [b for b, s in zip(batched, single) if b.tokens == s.tokens]
        assert same, "in bf16 some rows may flip a near-tie, not all of them"
        batched, single = same, [s for b, s in zip(batched, single) if b.tokens == s.tokens]
    assert [r.record["generated_responses"] for r in batched] == [r.record["generated_responses"] for r in single]
    for b, s in zip(batched, single):
        assert b.record["sentence_confidences"] == pytest.approx(s.record["sentence_confidences"], rel=TOL.batch_conf)


def test_row_at_the_last_generated_token(tiny):
    """A boundary second to last: its row comes from one more cached step and still matches."""
    model, tokenizer, table = tiny
    vocab = tokenizer.get_vocab()
    a, b, blank = vocab["a"], vocab["b"], vocab["ĊĊ"]
    script = [a, b, blank, a, blank, b]
    results = collect_batch(model, tokenizer, table, EXAMPLES[:2], max_new_tokens=len(script),
                            processors=[ForceTokens(script)])
    for res in results:
        assert res.tokens == script
        assert res.hidden[3][0]["step"].shape[0] == 2  # rows at positions 3 and 5 (the last token)
    check_against_full_forward(model, tokenizer, table, EXAMPLES[:2], results)


def test_model_that_opens_think_itself(tiny_plain_dir):
    model, tokenizer = load(tiny_plain_dir)
    table = make_table(model, tokenizer)
    vocab = tokenizer.get_vocab()
    script = [vocab["a"], vocab["<think>"], vocab["b"], vocab["ĊĊ"], vocab["a"], vocab["</think>"], vocab["ĊĊ"], vocab["b"]]
    res = collect_batch(model, tokenizer, table, EXAMPLES[:1], max_new_tokens=len(script),
                        processors=[ForceTokens(script)])[0]
    assert res.record["step_texts"] == ["b\n\n", "a"]
    assert res.record["think_closed"] is True
    check_against_full_forward(model, tokenizer, table, EXAMPLES[:1], [res])
