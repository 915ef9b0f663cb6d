"""Steering through hooks: exact additions, the controller against an independent recomputation,
batch invariance, and the baselines (off, static 0)."""

from contextlib import ExitStack, contextmanager

import pytest
import torch
from conftest import PROBLEMS, TOL, load
from test_collect import ForceTokens, full_forward
from test_run import run_main

import transformer_inference_steer_dp
from rebalance.calibration import generic
from rebalance.control import ControlFunction
from rebalance.decoding.decode import steer_batch
from rebalance.decoding.engine import Engine, RowAwareProcessor
from rebalance.decoding.hooks import residual_hook
from rebalance.decoding.records import make_table
from rebalance.decoding.sampling import Sampling
from rebalance.decoding.steering import Steerer, SteeringSetup, load_vector, site_index
from rebalance.decoding.steps import thinking_at_start
from rebalance.errors import UsageError
from rebalance.examples import Example, prompt_ids

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


def independent_coefficients(model, tokenizer, table, prompt, tokens, control, initial=-1.0, logp=None):
    """docs/method.md §8 recomputed from one plain forward's max-probabilities (or the `logp`
    given), in plain Python."""
    if logp is None:
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


class RowScripts(RowAwareProcessor):
    """Example idx writes scripts[idx] (the confidences still come from the raw logits)."""

    def __init__(self, scripts):
        self.scripts = scripts

    def __call__(self, input_ids, scores, rows=None):
        forced = torch.full_like(scores, float("-inf"))
        for row, (idx, step) in enumerate(zip(rows.example_idx.tolist(), rows.generated.tolist())):
            forced[row, self.scripts[idx][step]] = 0.0
        return forced


def recorded_steering(model, tokenizer, table, setup, scripts, record_at):
    """Run two examples side by side through the engine; per decoding step, the last position's
    hidden state at each index of `record_at`, before and after the steering hook."""
    seen = {}

    def keep(key):
        def fn(hidden):
            seen.setdefault(key, []).append(hidden[:, -1, :].detach().clone())
        return fn

    class Recording(Steerer):
        @contextmanager
        def hooks(self):
            with ExitStack() as stack:  # recorders before the steerer's hook see it unedited, after it edited
                for index in record_at:
                    stack.enter_context(residual_hook(model, index, keep(("pre", index))))
                stack.enter_context(super().hooks())
                for index in record_at:
                    stack.enter_context(residual_hook(model, index, keep(("post", index))))
                yield self

    length = len(scripts[0])
    engine = Engine(model, tokenizer, table, prompt=lambda ex: prompt_ids(tokenizer, ex.problem), width=2,
                    max_new_tokens=length, processors=[RowScripts(scripts)], plugins=[Recording(model, setup)])
    with engine:
        done = {d.example.idx: d for d in engine.run(EXAMPLES[:2])}
    return done, seen


def block_output_hook(model, block, deltas):
    """Plain PyTorch, no project code: add deltas[position] to the output of decoder block `block`."""
    def hook(_module, _args, output):
        hidden = output[0] if isinstance(output, tuple) else output
        hidden = hidden.clone()
        for position, delta in deltas.items():
            hidden[0, position] += delta.to(hidden.dtype)
        return (hidden,) + tuple(output[1:]) if isinstance(output, tuple) else hidden
    return model.model.layers[block].register_forward_hook(hook)


def test_dynamic_steering_with_a_vector_adds_coef_times_s_in_its_row_and_matches_a_full_forward(tiny):
    """Two rows whose boundaries fall at different steps, a non-zero vector: at every decoding step
    each row's hidden state moves by exactly its recorded coefficient x S when it feeds a boundary
    and not at all otherwise, and those coefficients are what the controller computes from one full
    forward of each response with the same deltas applied."""
    model, tokenizer, table = tiny
    vocab = tokenizer.get_vocab()
    ids = lambda text: [vocab[t] for t in text.split()]  # noqa: E731
    scripts = {0: ids("a ĊĊ b b ĊĊ a a ĊĊ b a"), 1: ids("b b b a ĊĊ a ĊĊ ĊĊ b a")}
    blank = vocab["ĊĊ"]
    # random models are unsure of every token: a control function sloped over low confidences, so each
    # coefficient says which tokens its step mean took (the generic one sits at its floor there)
    sloped = ControlFunction(q25c=0.01, q75c=0.99, low_val_1=-1.0, q25v=1.0, q75v=2.0, low_val_2=-1.0)
    base = setup_for(model, scale=1.0)  # input of block 2 (index 2)
    setup = SteeringSetup(base.vector, base.site, "dynamic", -1.0, sloped)
    done, seen = recorded_steering(model, tokenizer, table, setup, scripts, [setup.site])
    vector = setup.vector.to(model.device)
    pre, post = seen[("pre", setup.site)], seen[("post", setup.site)]
    assert len(pre) == len(scripts[0])  # the prefill, then one step per fed token (the last is never fed)
    assert torch.equal(pre[0], post[0])  # the prompt is never steered
    for row in (0, 1):
        coefs = done[row].values["steer_coefs"]
        steered = [t for t in range(1, len(pre)) if not torch.equal(pre[t][row], post[t][row])]
        assert steered == [t for t in range(1, len(pre)) if scripts[row][t - 1] == blank]  # its own boundaries
        assert len(coefs) == len(steered) >= 3
        for coef, t in zip(coefs, steered):
            torch.testing.assert_close(post[t][row] - pre[t][row], (coef * vector).to(pre[t].dtype),
                                       atol=TOL.row * float(post[t][row].float().norm()), rtol=0)
        # the full forward of this response, with those deltas at the boundary positions (block 1 feeds index 2)
        prompt = prompt_ids(tokenizer, EXAMPLES[row].problem)
        tokens = scripts[row]
        positions = [len(prompt) + t - 1 for t in steered]
        handle = block_output_hook(model, setup.site - 1, {pos: c * vector for pos, c in zip(positions, coefs)})
        try:
            _, logp = full_forward(model, prompt, tokens)
        finally:
            handle.remove()
        expected = independent_coefficients(model, tokenizer, table, prompt, tokens, sloped, logp=logp)
        assert coefs == pytest.approx(expected, abs=TOL.coef)
        assert len(set(round(c, 4) for c in coefs)) >= 2  # the controller moved: not the initial -1 throughout


@pytest.mark.parametrize("inject_at", ["input", "output"])
def test_the_vector_lands_at_the_input_or_the_output_of_block_l(tiny, inject_at):
    """Layer L = 1: `input` edits HF hidden_states[1] (block 1's input) and leaves index 0 alone;
    `output` edits hidden_states[2] (block 1's output, the Qwen3 release's site) and leaves
    hidden_states[1] alone."""
    model, tokenizer, table = tiny
    vocab = tokenizer.get_vocab()
    script = [vocab[t] for t in "a ĊĊ b a ĊĊ b".split()]
    setup = setup_for(model, mode="static", coef=1.5, layer=1, inject_at=inject_at)
    target = 1 if inject_at == "input" else 2
    assert setup.site == target
    _, seen = recorded_steering(model, tokenizer, table, setup, {0: script, 1: script}, [target - 1, target])
    vector = setup.vector.to(model.device)
    for t in range(1, len(script)):
        assert torch.equal(seen[("post", target - 1)][t], seen[("pre", target - 1)][t])  # upstream: untouched
        moved = seen[("post", target)][t] - seen[("pre", target)][t]
        expected = 1.5 * vector if script[t - 1] == vocab["ĊĊ"] else torch.zeros_like(vector)
        torch.testing.assert_close(moved, expected[None, :].expand_as(moved).to(moved.dtype),
                                   atol=TOL.row * float(seen[("post", target)][t].float().norm()), rtol=0)


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


def test_the_qwen3_script_injects_at_block_output_with_its_penalty_and_constants(tiny_dirs, toy_data, tmp_path,
                                                                                 capsys):
    """End to end on the tiny Qwen3: the script's records are exactly those of the engine set up by
    hand with the Qwen3 release's defaults: the vector on the output of block L (index L + 1),
    repetition penalty 1.18, the Qwen3-14B constants; and different from the input-site script's."""
    import transformer_inference_steer_dp_qwen3
    from rebalance.calibration import released
    from rebalance.examples import load_examples
    from rebalance.files.cards import RunCard
    from rebalance.files.shards import read_records

    model_dir = tiny_dirs["qwen3"]
    vector = torch.randn(32, generator=torch.Generator().manual_seed(3)) * 4
    torch.save(vector, tmp_path / "v.pt")
    argv = ["--model_name_or_path", model_dir, "--dataset_dir", toy_data[0], "--dataset", toy_data[1],
            "--max_generated_tokens", "16", "--temperature", "0", "--steer_vector_path", str(tmp_path / "v.pt"),
            "--steer_layer", "1", "--steer_coef", "-1"]
    outputs = {}
    for name, script in (("qwen3", transformer_inference_steer_dp_qwen3), ("default", transformer_inference_steer_dp)):
        status, err = run_main(script.main, argv + ["--output_path", str(tmp_path / name)], capsys)
        assert status == 0, err
        folder = tmp_path / name / "qwen3" / toy_data[1]
        outputs[name] = (read_records(str(folder / "steer_temp0.0_maxlen16.shard0.jsonl")),
                         RunCard.read(str(folder / "steer_temp0.0_maxlen16.shard0.run.json")).compared)
    records, card = outputs["qwen3"]
    _, constants = released("Qwen3-14B")
    assert (card["inject_at"], card["repetition_penalty"], card["constants"]) == ("output", 1.18, constants)
    assert outputs["default"][1]["inject_at"] == "input" and outputs["default"][1]["repetition_penalty"] == 1.0
    model, tokenizer = load(model_dir)
    setup = SteeringSetup(vector, 2, "dynamic", -1.0, ControlFunction(**constants))  # block 1's output
    examples = load_examples(*toy_data)
    by_hand = steer_batch(model, tokenizer, make_table(model, tokenizer), examples, setup, 16,
                          Sampling(repetition_penalty=1.18))
    assert [r["generated_responses"] for r in records] == [r.record["generated_responses"] for r in by_hand]
    for got, want in zip(records, by_hand):
        assert got["steer_coefs"] == pytest.approx(want.record["steer_coefs"], abs=TOL.coef)
    # the other site and penalty give other confidences, so other coefficients (the text may agree: the
    # random model mostly writes blank lines)
    assert [r["steer_coefs"] for r in records] != [r["steer_coefs"] for r in outputs["default"][0]]


def test_controller_on_hand_set_confidences():
    """One row: steps "a b |", "|" (empty), "a |" with max probabilities .5 .7 .9, .9, .8 .9 (| a
    boundary, its own p not counted), and f(c, v) = c + 10 v: the first step gives f(0.6, 0) = 0.6 (no
    previous mean), the empty step keeps and applies it again, the third gives f(0.8, (0.8 - 0.6)^2 / 4)
    = 0.9, since an empty step does not move the previous mean."""
    from types import SimpleNamespace

    from rebalance.decoding.steering import Controller

    controller = Controller(lambda c, v: c + 10 * v, rows=1, initial_coef=-1.0, device="cpu")
    applied = []
    for token, p in (("a", 0.5), ("b", 0.7), ("|", 0.9), ("|", 0.9), ("a", 0.8), ("|", 0.9)):
        boundary = torch.tensor([token == "|"])
        tracker = SimpleNamespace(alive=torch.tensor([True]), is_boundary=boundary, boundary=boundary)
        applied.append(float(controller.on_tokens(tracker, torch.tensor([p]))[0]))
    assert [c != c for c in applied] == [True, True, False, False, True, False]  # NaN off the boundaries
    assert [c for c in applied if c == c] == pytest.approx([0.6, 0.6, 0.9])


# ---- the vector file and the layer, checked before any model loads -------------------------------

@pytest.mark.parametrize("shape", [(32,), (1, 32)])
def test_a_vector_of_the_models_width_loads_flat_in_float32(tmp_path, shape):
    path = tmp_path / "v.pt"
    saved = torch.arange(32, dtype=torch.bfloat16).reshape(shape)
    torch.save(saved, path)
    vector = load_vector(str(path), 32)
    assert vector.dtype == torch.float32 and vector.tolist() == [float(i) for i in range(32)]


@pytest.mark.parametrize("content, message", [
    (torch.zeros(31), "has shape [31], expected [32] (the model's hidden size)"),
    (torch.zeros(1, 1, 32), "has shape [1, 1, 32], expected [32] (the model's hidden size)"),
    ({"vector": torch.zeros(32)}, "holds a dict, expected a float tensor of shape [32]"),
])
def test_a_vector_of_another_shape_or_kind_is_named(tmp_path, content, message):
    path = tmp_path / "v.pt"
    torch.save(content, path)
    with pytest.raises(UsageError) as err:
        load_vector(str(path), 32)
    assert str(err.value) == f"--steer_vector_path: {path} {message}"


def test_a_missing_or_foreign_vector_file_is_one_sentence(tmp_path, monkeypatch):
    with pytest.raises(UsageError) as err:
        load_vector(str(tmp_path / "none.pt"), 32)
    assert str(err.value) == f"--steer_vector_path: no such file: {tmp_path / 'none.pt'}"
    path = tmp_path / "text.pt"
    path.write_text("not a tensor file\nsecond line")
    try:
        torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - what torch itself says, to compare with
        said = str(exc).strip().splitlines()[0]
    prefix = f"--steer_vector_path: {path} is not a plain tensor file (expected a float tensor of shape [32]): "
    with pytest.raises(UsageError) as err:
        load_vector(str(path), 32)
    assert str(err.value) == prefix + said[:200]
    for raised, shown in [(RuntimeError(""), "RuntimeError"), (ValueError("x" * 300 + "\nmore"), "x" * 200),
                          (OSError("  first\nsecond"), "first")]:
        monkeypatch.setattr(torch, "load", lambda *a, error=raised, **k: (_ for _ in ()).throw(error))
        with pytest.raises(UsageError) as err:
            load_vector(str(path), 32)
        assert str(err.value) == prefix + shown


@pytest.mark.parametrize("layer, inject_at, index", [(0, "input", 0), (4, "input", 4), (0, "output", 1),
                                                     (3, "output", 4)])
def test_the_site_of_a_layer_is_its_input_or_its_output(layer, inject_at, index):
    assert site_index(5, layer, inject_at) == index  # 4 blocks: hidden_states indices 0..4


@pytest.mark.parametrize("layer, inject_at, top", [(5, "input", 4), (-1, "input", 4), (4, "output", 3),
                                                   (-1, "output", 3), (5, "output", 3)])
def test_a_layer_out_of_range_names_the_range(layer, inject_at, top):
    with pytest.raises(UsageError) as err:
        site_index(5, layer, inject_at)
    assert str(err.value) == (f"--steer_layer {layer} is out of range for --inject_at {inject_at}: "
                              f"this model takes 0..{top}")


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("positions", [1, 3])
def test_the_hook_adds_scale_times_vector_at_the_last_position_only(dtype, positions):
    vector = torch.tensor([1.0, -2.0, 0.5, 4.0])
    steerer = Steerer(torch.nn.Linear(4, 4), SteeringSetup(vector, 1, "static", 0.5, None))
    hidden = torch.arange(2 * positions * 4, dtype=torch.float32).reshape(2, positions, 4).to(dtype)
    before = hidden.clone()
    assert steerer._add(hidden) is None  # not armed: outside decoding steps nothing is added
    steerer.scale = torch.tensor([0.5, 0.0])
    out = steerer._add(hidden)
    assert out.dtype == dtype and out.shape == hidden.shape
    assert torch.equal(hidden, before)  # the model's own tensor is left as it was
    expected = before.clone()
    expected[0, -1] = expected[0, -1] + (0.5 * vector).to(dtype)
    assert torch.equal(out, expected)
