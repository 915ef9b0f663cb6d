"""Steering through hooks: exact additions, the controller against an independent recomputation,
batch invariance, and the baselines (off, static 0)."""

from contextlib import contextmanager

import pytest
import torch
from conftest import PROBLEMS, TOL, load
from test_collect import ForceTokens, full_forward
from test_run import run_main

import transformer_inference_steer_dp
from rebalance.calibration import generic
from rebalance.control import ControlFunction
from rebalance.decode import steer_batch
from rebalance.decoding.engine import Engine
from rebalance.decoding.hooks import residual_hook
from rebalance.decoding.records import make_table
from rebalance.decoding.sampling import ReleasedTopP
from rebalance.decoding.steps import thinking_at_start
from rebalance.examples import Example, prompt_ids
from rebalance.steering import Steerer, SteeringSetup, site_index

EXAMPLES = [Example(i, p, "", {}) for i, p in enumerate(PROBLEMS)]
CONTROL = ControlFunction(**generic())


@pytest.fixture(scope="module", params=["qwen2", "qwen3", "llama"])
def tiny(request, tiny_dirs):
    model, tokenizer = load(tiny_dirs[request.param])
    return model, tokenizer, make_table(model, tokenizer)


def setup_for(model, mode="dynamic", coef=-1.0, scale=1.0, layer=2, inject_at="input", seed=0):
    gen = torch.Generator().manual_seed(seed)
    vector = torch.randn(model.config.hidden_size, generator=gen) * scale
    site = site_index(model.config.num_hidden_layers + 1, layer, inject_at)
    return SteeringSetup(vector, site, mode, coef, CONTROL if mode == "dynamic" else None)


def run(model, tokenizer, table, setup, examples=EXAMPLES, max_new_tokens=24, **kw):
    return steer_batch(model, tokenizer, table, examples, setup, max_new_tokens, **kw)


def independent_coefficients(model, tokenizer, table, prompt, tokens, control, initial=-1.0):
    """docs/method.md §8 recomputed from one plain forward's max-probabilities, in plain Python."""
    _, logp = full_forward(model, prompt, tokens)
    p = logp.exp().tolist()
    total, count, prev, coef, applied = 0.0, 0, None, initial, []
    thinking, closed = thinking_at_start(prompt, table), False
    previous = None
    for i, token in enumerate(tokens[:-1]):  # the last token is never fed back
        if token in table.eos_ids:
            break
        boundary = table.is_boundary(token, previous)
        if boundary:
            if count:
                c = total / count
                v = 0.0 if prev is None else (c - prev) ** 2 / 4
                coef, prev = control(c, v), c
            total, count = 0.0, 0
            if thinking:
                applied.append(coef)
        else:
            total, count = total + p[i], count + 1
            if token == table.think_close:
                thinking = False
            elif token == table.think_open and not closed:
                thinking = True
            closed = closed or token == table.think_close
        previous = token
    return applied


def test_hook_adds_exactly_coef_times_vector_at_boundaries_only(tiny):
    model, tokenizer, table = tiny
    vocab = tokenizer.get_vocab()
    script = [vocab[t] for t in ["a", "ĊĊ", "b", "b", "ĊĊ", "ĊĊ", "a", "</think>", "ĊĊ", "b"]]
    setup = setup_for(model, mode="static", coef=1.5)
    seen = {}

    def record(name):
        def keep(hidden):
            seen.setdefault(name, []).append(hidden[:, -1, :].clone())
        return keep

    class Recording(Steerer):
        """Registers the recording hook after its own, so it sees the edited hidden state."""

        def __init__(self, name, s):
            super().__init__(model, s)
            self.name = name

        @contextmanager
        def hooks(self):
            with super().hooks(), residual_hook(model, setup.site, record(self.name)):
                yield self

    zero = SteeringSetup(setup.vector, setup.site, "static", 0.0, None)
    for name, s in (("plain", zero), ("steered", setup)):
        engine = Engine(model, tokenizer, table, prompt=lambda ex: prompt_ids(tokenizer, ex.problem), width=2,
                        max_new_tokens=len(script), processors=[ForceTokens(script)], plugins=[Recording(name, s)])
        with engine:
            assert [r.tokens for r in engine.run(EXAMPLES[:2])] == [script, script]
    assert len(seen["plain"]) == len(seen["steered"]) == len(script)  # prefill + every fed token
    # decoding step t feeds script[t-1]; boundaries inside the region: positions 1, 4, 5 (8 is after </think>)
    steered_inputs = {1, 4, 5}
    for t in range(1, len(script)):
        plain, steered = seen["plain"][t], seen["steered"][t]
        if t - 1 in steered_inputs:
            expected = plain + (1.5 * setup.vector).to(plain.device, plain.dtype)[None, :]
            assert torch.equal(steered, expected), t
        else:
            assert torch.equal(steered, plain), t
    assert torch.equal(seen["plain"][0], seen["steered"][0])  # the prompt is never steered


def test_zero_vector_coefficients_match_independent_recomputation(tiny):
    model, tokenizer, table = tiny
    setup = setup_for(model, scale=0.0)
    results = run(model, tokenizer, table, setup, max_new_tokens=30)
    for ex, res in zip(EXAMPLES, results):
        prompt = prompt_ids(tokenizer, ex.problem)
        expected = independent_coefficients(model, tokenizer, table, prompt, res.tokens, CONTROL)
        assert len(expected) >= 2
        assert res.record["steer_coefs"] == pytest.approx(expected, abs=TOL.coef)


def test_controller_resets_per_sequence_and_handles_think_close(tiny_plain_dir):
    model, tokenizer = load(tiny_plain_dir)
    table = make_table(model, tokenizer)
    vocab = tokenizer.get_vocab()
    script = [vocab[t] for t in ["<think>", "a", "b", "ĊĊ", "a", "ĊĊ", "ĊĊ", "b", "</think>", "a", "ĊĊ", "b", "ĊĊ", "a"]]
    setup = setup_for(model, scale=0.0)
    for res in run(model, tokenizer, table, setup, EXAMPLES[:3], max_new_tokens=len(script),
                   processors=[ForceTokens(script)]):
        prompt = prompt_ids(tokenizer, EXAMPLES[res.record["idx"]].problem)
        expected = independent_coefficients(model, tokenizer, table, prompt, res.tokens, CONTROL)
        assert len(expected) == 3  # three boundaries inside <think>...</think>; none after it
        assert res.record["steer_coefs"] == pytest.approx(expected, abs=TOL.coef)


def test_batch_one_and_four_give_the_same_steered_ids(tiny):
    model, tokenizer, table = tiny
    setup = setup_for(model, scale=0.5)
    batched = run(model, tokenizer, table, setup, EXAMPLES[:4])
    single = [run(model, tokenizer, table, setup, [ex])[0] for ex in EXAMPLES[:4]]
    if not TOL.same_ids:  # bf16: compare the rows whose greedy path did not flip at a near-tie
        pairs = [(b, s) for b, s in zip(batched, single) if b.tokens == s.tokens]
        assert pairs
        batched, single = [b for b, _ in pairs], [s for _, s in pairs]
    assert [r.tokens for r in batched] == [r.tokens for r in single]
    for b, s in zip(batched, single):
        assert b.record["steer_coefs"] == pytest.approx(s.record["steer_coefs"], abs=TOL.batch_coef)


def test_off_is_plain_greedy_and_static_zero_is_off(tiny):
    model, tokenizer, table = tiny
    off = run(model, tokenizer, table, setup_for(model, mode="off"))
    static0 = run(model, tokenizer, table, setup_for(model, mode="static", coef=0.0))
    steered = run(model, tokenizer, table, setup_for(model, scale=3.0))
    prompts = [prompt_ids(tokenizer, ex.problem) for ex in EXAMPLES]
    for prompt, res in zip(prompts, off):
        with torch.no_grad():
            plain = model.generate(input_ids=torch.tensor([prompt], device=model.device), max_new_tokens=24, do_sample=False,
                                   pad_token_id=tokenizer.pad_token_id)
        assert res.tokens == plain[0, len(prompt):].tolist()[: len(res.tokens)]
        assert res.record["steer_coefs"] == []
    assert [r.tokens for r in static0] == [r.tokens for r in off]
    assert [r.tokens for r in steered] != [r.tokens for r in off]  # this architecture steers
    assert all(r.record["steer_coefs"] for r in steered)


def test_output_injection_site_is_one_block_later(tiny):
    model, _, _ = tiny
    assert setup_for(model, layer=1, inject_at="output").site == setup_for(model, layer=2).site == 2


def test_released_top_p_keeps_top_token_and_drops_the_crossing_one():
    scores = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05], [0.97, 0.01, 0.01, 0.01]]))
    out = ReleasedTopP(1.0, 0.8)(None, scores.clone())
    assert torch.isfinite(out[0]).tolist() == [True, True, False, False]  # 0.5, 0.8 kept; 0.95 crosses
    assert torch.isfinite(out[1]).tolist() == [True, False, False, False]
    assert torch.allclose(ReleasedTopP(0.5, 1.0)(None, scores.clone()), scores / 0.5)


def test_smollm2_steers_its_whole_response(smollm2_dir):
    model, tokenizer = load(smollm2_dir)
    table = make_table(model, tokenizer)
    setup = SteeringSetup(torch.zeros(model.config.hidden_size), 20, "dynamic", -1.0, CONTROL)
    res = run(model, tokenizer, table, setup, EXAMPLES[1:2], max_new_tokens=64)[0]
    assert len(res.record["steer_coefs"]) >= 2, "no boundary steered in the response"
    prompt = prompt_ids(tokenizer, EXAMPLES[1].problem)
    expected = independent_coefficients(model, tokenizer, table, prompt, res.tokens, CONTROL)
    assert res.record["steer_coefs"] == pytest.approx(expected, abs=TOL.coef)


@pytest.mark.parametrize("case, expected", [
    ("wrong_size", "has shape [16], expected [32]"),
    ("not_tensor", "holds a dict, expected a float tensor of shape [32]"),
    ("pickle", "is not a plain tensor file (expected a float tensor of shape [32])"),
    ("layer", "--steer_layer 9 is out of range for --inject_at input: this model takes 0..3"),
])
def test_bad_vector_or_layer(case, expected, tiny_dirs, toy_data, tmp_path, capsys):
    path = str(tmp_path / "v.pt")
    layer = "1"
    if case == "wrong_size":
        torch.save(torch.zeros(16), path)
    elif case == "not_tensor":
        torch.save({"v": torch.zeros(32)}, path)
    elif case == "pickle":
        torch.save(ControlFunction(**generic()), path)  # needs arbitrary unpickling: refused
    else:
        torch.save(torch.zeros(32), path)
        layer = "9"
    root, name = toy_data
    status, err = run_main(transformer_inference_steer_dp.main,
                           ["--model_name_or_path", tiny_dirs["qwen2"], "--dataset_dir", root, "--dataset", name,
                            "--output_path", str(tmp_path / "o"), "--steer_vector_path", path,
                            "--steer_layer", layer], capsys)
    assert status == 2
    assert expected in err and len(err.strip().splitlines()) == 1
    if case != "layer":
        assert path in err
