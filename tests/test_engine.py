"""The in-flight engine: a queue longer than the batch, rows ending at different steps and slots
refilled, against the batch-1 run of every example; no state carried into a refilled slot; the
cache sized by the live rows; a real kill -9 mid-run."""

import os
import signal
import subprocess
import sys

import pytest
import torch
from conftest import PROBLEMS, TOL, load, write_dataset
from test_run import read_records

from rebalance.calibration import generic
from rebalance.control import ControlFunction
from rebalance.decoding import engine as engine_module
from rebalance.decoding.decode import collect_batch, collect_stream, steer_batch, steer_stream
from rebalance.decoding.engine import Engine, EngineRows, RowAwareProcessor, pad_left, prefill_groups
from rebalance.decoding.records import make_table
from rebalance.decoding.row_state import RowState
from rebalance.decoding.sampling import Sampling
from rebalance.decoding.steering import Controller, SteeringSetup, site_index
from rebalance.decoding.steps import StepTracker
from rebalance.examples import Example, prompt_ids

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
QUEUE = [Example(i, PROBLEMS[i % len(PROBLEMS)], "", {}) for i in range(8)]
ENDS = {0: 3, 1: 17, 2: 6, 3: 25, 4: 2, 5: 11, 6: 30, 7: 9}  # EOS forced as token number k; 30 = the limit
WIDTH = 3


class ForceEosAt(RowAwareProcessor):
    """End example idx with EOS as its ENDS[idx]-th token, wherever its row sits."""

    def __init__(self, eos_id, ends):
        self.eos_id, self.ends = eos_id, ends

    def __call__(self, input_ids, scores, rows=None):
        ends = torch.tensor([self.ends.get(int(i), 10 ** 9) for i in rows.example_idx], device=scores.device)
        forced = rows.generated + 1 >= ends
        scores[forced] = float("-inf")
        scores[forced, self.eos_id] = 0.0
        return scores


class Script(RowAwareProcessor):
    """Make example idx write scripts[idx], then EOS."""

    def __init__(self, scripts, eos_id):
        self.scripts, self.eos_id = scripts, eos_id

    def __call__(self, input_ids, scores, rows=None):
        forced = torch.full_like(scores, float("-inf"))
        for row, (idx, step) in enumerate(zip(rows.example_idx.tolist(), rows.generated.tolist())):
            script = self.scripts[idx]
            forced[row, script[step] if step < len(script) else self.eos_id] = 0.0
        return forced


@pytest.fixture(scope="module", params=["qwen2", "qwen3", "llama"])
def tiny(request, tiny_dirs):
    model, tokenizer = load(tiny_dirs[request.param])
    return model, tokenizer, make_table(model, tokenizer)


def steering(model, scale=0.5, coef=-1.0, control=ControlFunction(**generic())):
    vector = torch.randn(model.config.hidden_size, generator=torch.Generator().manual_seed(1)) * scale
    site = site_index(model.config.num_hidden_layers + 1, 1, "input")
    return SteeringSetup(vector, site, "dynamic", coef, control)


def assert_same_rows(got, want):
    """Captured hidden rows of one example, refilled slot vs batch 1."""
    for layer in want.hidden:
        a, b = got.hidden[layer][0]["step"], want.hidden[layer][0]["step"]
        assert a.shape == b.shape
        for x, y in zip(a.float(), b.float()):
            assert (x - y).norm() <= 10 * TOL.row * y.norm()  # both sides carry the padding's noise


def pairs_with_same_ids(stream, single):
    if TOL.same_ids:
        assert [r.tokens for r in stream] == [s.tokens for s in single]
        return list(zip(stream, single))
    pairs = [(r, s) for r, s in zip(stream, single) if r.tokens == s.tokens]
    assert pairs, "in bf16 some rows may flip a near-tie, not all of them"
    return pairs


def test_collection_in_flight_matches_batch_one(tiny):
    model, tokenizer, table = tiny
    force = ForceEosAt(table.eos_ids[0], ENDS)
    out = list(collect_stream(model, tokenizer, table, QUEUE, 30, processors=[force], width=WIDTH))
    order = [r.record["idx"] for r in out]
    assert sorted(order) == list(range(8)) and order != sorted(order)  # handed out as they end
    stream = sorted(out, key=lambda r: r.record["idx"])
    single = [collect_batch(model, tokenizer, table, [ex], 30, processors=[force])[0] for ex in QUEUE]
    assert [len(s.tokens) for s in single] == [ENDS[i] for i in range(8)]
    for got, want in pairs_with_same_ids(stream, single):
        assert got.record["finish_reason"] == want.record["finish_reason"]
        assert got.record["step_texts"] == want.record["step_texts"]
        assert got.record["sentence_confidences"] == pytest.approx(want.record["sentence_confidences"],
                                                                   rel=TOL.batch_conf)
        assert_same_rows(got, want)


def test_steering_in_flight_matches_batch_one(tiny):
    model, tokenizer, table = tiny
    setup = steering(model)
    force = ForceEosAt(table.eos_ids[0], ENDS)
    stream = sorted(steer_stream(model, tokenizer, table, QUEUE, setup, 30, processors=[force], width=WIDTH),
                    key=lambda r: r.record["idx"])
    single = [steer_batch(model, tokenizer, table, [ex], setup, 30, processors=[force])[0] for ex in QUEUE]
    assert sum(len(s.record["steer_coefs"]) for s in single) >= 8
    for got, want in pairs_with_same_ids(stream, single):
        assert got.record["steer_coefs"] == pytest.approx(want.record["steer_coefs"], abs=TOL.batch_coef)


def test_a_sample_depends_on_its_example_only(tiny):
    """seed + idx per example: the same draws at width 1 and 3, in any slot, next to any neighbours."""
    model, tokenizer, table = tiny
    setup = steering(model)
    kw = dict(sampling=Sampling(temperature=0.7, top_p=0.95, repetition_penalty=1.3, seed=42))
    force = ForceEosAt(table.eos_ids[0], ENDS)
    stream = sorted(steer_stream(model, tokenizer, table, QUEUE, setup, 30, processors=[force], width=WIDTH, **kw),
                    key=lambda r: r.record["idx"])
    reversed_queue = sorted(steer_stream(model, tokenizer, table, QUEUE[::-1], setup, 30, processors=[force],
                                         width=2, **kw), key=lambda r: r.record["idx"])
    single = [steer_batch(model, tokenizer, table, [ex], setup, 30, processors=[force], **kw)[0] for ex in QUEUE]
    for other in (stream, reversed_queue):
        pairs_with_same_ids(other, single)
    # a different seed draws differently, so the equality above is not a greedy accident
    reseeded = steer_batch(model, tokenizer, table, QUEUE, setup, 30, processors=[force], sampling=Sampling(0.7, 0.95, 1.3, seed=7))
    assert [r.tokens for r in reseeded] != [s.tokens for s in single]


def test_smollm2_in_flight_greedy_ids_match_batch_one(smollm2_dir):
    model, tokenizer = load(smollm2_dir)
    table = make_table(model, tokenizer)
    queue = [Example(i, p, "", {}) for i, p in enumerate(PROBLEMS)]
    ends = {0: 20, 1: 4, 2: 9, 3: 24, 4: 13}
    force = ForceEosAt(table.eos_ids[0], ends)
    stream = sorted(collect_stream(model, tokenizer, table, queue, 24, processors=[force], width=2),
                    key=lambda r: r.record["idx"])
    single = [collect_batch(model, tokenizer, table, [ex], 24, processors=[force])[0] for ex in queue]
    assert [len(s.tokens) for s in single] == [ends[i] for i in range(5)]
    for got, want in pairs_with_same_ids(stream, single):
        assert got.record["sentence_confidences"] == pytest.approx(want.record["sentence_confidences"],
                                                                   rel=TOL.batch_conf)
        assert_same_rows(got, want)


# ---- a refilled slot starts fresh ----------------------------------------------------------------

CARRIED = [("tracker", f) for f in ("thinking", "closed", "finished", "prev_ends_nl", "prev_boundary")] + \
          [("controller", f) for f in ("sum", "count", "prev_mean", "coef")] + \
          [("engine", f) for f in ("example_idx", "generated")]  # next_tokens: set by the row's first choice

# Width 1, so each B takes the slot its A has just left. Each A ends in a state a fresh row never
# has; each B starts where that state would show. R1 template (thinking from the first token):
#   A0 ends by length on an in-region blank line   -> B1 opens with a lone newline (a boundary only
#      after a line end; a calibration row only after a boundary), first v = 0 only if fresh
#   A2 ends by length mid-step                      -> B3 opens with an empty step: only the initial
#      coefficient (0.5, which f(c, v) never returns) may apply there
#   A4 ends with EOS mid-step                       -> B5's first step mean counts only its own tokens
# Plain template (the model opens <think> itself):
#   A0 ends inside <think>                          -> B1's leading blank line is outside the region
#   A2 has closed </think>                          -> B3 can still open <think>
# The random models are unsure of every token (c well below 0.9). With GATED any variance above
# 2e-9 opens the low gate, so the first coefficient shows whether v started at 0; with SLOPED, F1
# is far from its limits over that range, so the coefficient shows which tokens a step mean took.
GATED = ControlFunction(q25c=0.9, q75c=0.95, low_val_1=-1.0, q25v=1e-9, q75v=2e-9, low_val_2=-2.0)
SLOPED = ControlFunction(q25c=0.01, q75c=0.99, low_val_1=-1.0, q25v=1.0, q75v=2.0, low_val_2=-1.0)
R1_SCRIPTS = ["a ĊĊ b ĊĊ a ĊĊ", "Ċ a ĊĊ b ĊĊ a", "a ĊĊ b a b a", "ĊĊ a ĊĊ b ĊĊ a", "a b a b a", "a ĊĊ b ĊĊ a b"]
PLAIN_SCRIPTS = ["<think> a ĊĊ b a b", "Ċ ĊĊ <think> a ĊĊ b", "<think> a </think> a b a", "a <think> b ĊĊ a ĊĊ"]


def run_both(model, tokenizer, table, scripts, queue):
    """What each example came out as, in a steered run (zero vector) and a collection run."""
    eos = table.eos_ids[0]
    script = Script(scripts, eos)
    steer = {}
    for control in (GATED, SLOPED):
        setup = steering(model, scale=0.0, coef=0.5, control=control)
        for r in steer_stream(model, tokenizer, table, queue, setup, 6, processors=[script], width=1):
            steer.setdefault(r.record["idx"], {"step_texts": r.record["step_texts"], "steer_coefs": []})
            steer[r.record["idx"]]["steer_coefs"].append(r.record["steer_coefs"])
    try:
        collect = {r.record["idx"]: r for r in collect_stream(model, tokenizer, table, queue, 6,
                                                              processors=[script], width=1)}
    except RuntimeError as err:  # online and offline step rules disagree: as good as a difference
        return {"error": str(err)}
    return {idx: (steer[idx]["steer_coefs"], steer[idx]["step_texts"], collect[idx].record["step_texts"],
                  collect[idx].record["sentence_confidences"], collect[idx].hidden[0][0]["step"].shape[0])
            for idx in steer if idx % 2}


@pytest.fixture(scope="module")
def leak_cases(tiny_dirs, tiny_plain_dir):
    cases = []
    for folder, texts in ((tiny_dirs["qwen2"], R1_SCRIPTS), (tiny_plain_dir, PLAIN_SCRIPTS)):
        model, tokenizer = load(folder)
        table = make_table(model, tokenizer)
        scripts = {i: tokenizer.convert_tokens_to_ids(t.split()) for i, t in enumerate(texts)}
        queue = [Example(i, PROBLEMS[1], "", {}) for i in range(len(texts))]
        alone = {}
        for ex in queue[1::2]:
            alone.update(run_both(model, tokenizer, table, scripts, [ex]))
        cases.append((model, tokenizer, table, scripts, queue, alone))
    return cases


def test_a_refilled_slot_carries_nothing_over(leak_cases):
    for model, tokenizer, table, scripts, queue, alone in leak_cases:
        assert run_both(model, tokenizer, table, scripts, queue) == alone
    r1, plain = leak_cases[0][-1], leak_cases[1][-1]
    assert r1[1][2][0] == "\na\n\n" and r1[1][4] == 2      # no boundary, no row at the lone newline
    assert r1[3][0][0][0] == r1[3][0][1][0] == 0.5           # the empty first step kept the initial value
    assert plain[1][1] == ["a\n\n", "b"] and len(plain[1][0][0]) == 1 and plain[3][1] == ["b\n\n", "a\n\n"]


@pytest.mark.parametrize("owner, name", CARRIED)
def test_that_test_catches_each_piece_of_state_leaking(leak_cases, monkeypatch, owner, name):
    """Each piece of per-row state is made to leak in turn (a fresh row takes the value the
    previous example's row ended with): the comparison above must then fail."""
    cls = {"tracker": StepTracker, "controller": Controller, "engine": EngineRows}[owner]
    last = {}
    real_keep, real_extend = RowState.keep, RowState.extend

    def remember(self, index):
        if isinstance(self, cls) and len(getattr(self, name)):
            last["value"] = getattr(self, name)[-1:].clone()
        real_keep(self, index)

    def leaky_extend(self, fresh):
        if isinstance(self, cls) and "value" in last and len(getattr(fresh, name)):
            setattr(fresh, name, last["value"].expand_as(getattr(fresh, name)).clone())
        real_extend(self, fresh)

    monkeypatch.setattr(RowState, "keep", remember)
    monkeypatch.setattr(RowState, "extend", leaky_extend)
    noticed = [run_both(model, tokenizer, table, scripts, queue) != alone
               for model, tokenizer, table, scripts, queue, alone in leak_cases]
    assert any(noticed), f"a leaked {owner}.{name} went unnoticed"


# ---- memory: slots written in place, history as wide as the longest live row ----------------------

class WidthProbe(RowAwareProcessor):
    """Records at every step the token history's width against the longest live row, and the
    cache's storage and the columns attention read."""

    def __init__(self, prompt_lengths):
        self.prompt_lengths, self.widths, self.reads, self.engine = prompt_lengths, [], [], None

    def __call__(self, input_ids, scores, rows=None):
        longest = max(self.prompt_lengths[int(i)] + int(g) for i, g in zip(rows.example_idx, rows.generated))
        self.widths.append((input_ids.shape[1], longest))
        cache = self.engine.cache
        self.reads.append((cache.keys[0].data_ptr(), cache.values[-1].data_ptr(), cache.rows, len(rows.generated)))
        return scores


def test_the_cache_is_allocated_once_and_the_history_follows_the_live_rows(tiny):
    model, tokenizer, table = tiny
    probe = WidthProbe({ex.idx: len(prompt_ids(tokenizer, ex.problem)) for ex in QUEUE})
    force = ForceEosAt(table.eos_ids[0], ENDS)
    engine = Engine(model, tokenizer, table, prompt=lambda ex: prompt_ids(tokenizer, ex.problem), width=WIDTH,
                    max_new_tokens=30, processors=[force, probe])
    probe.engine = engine
    assert len(list(engine.run(QUEUE))) == 8
    assert len(probe.widths) > 30  # steps with rows of different ages side by side
    assert all(width == longest for width, longest in probe.widths)
    assert len({(keys, values) for keys, values, _, _ in probe.reads}) == 1  # never reallocated nor copied whole
    assert all(live == rows for _, _, live, rows in probe.reads)
    longest_prompt = max(probe.prompt_lengths.values())
    assert engine.cache.keys[0].shape[2] == -(-(longest_prompt + 30) // 64) * 64


def test_rows_ending_at_the_same_step_leave_in_admission_order(tiny):
    """Example 0 ends first and example 2's row moves into its slot; 1 and 2 then end together."""
    model, tokenizer, table = tiny
    force = ForceEosAt(table.eos_ids[0], {0: 2, 1: 5, 2: 5, 3: 4})
    out = collect_stream(model, tokenizer, table, QUEUE[:4], 30, processors=[force], width=3)
    assert [r.record["idx"] for r in out] == [0, 1, 2, 3]


def test_eager_attention_decodes_as_sdpa_does(tiny_dirs):
    model, tokenizer = load(tiny_dirs["qwen2"])
    table = make_table(model, tokenizer)
    force = ForceEosAt(table.eos_ids[0], ENDS)
    sdpa = collect_stream(model, tokenizer, table, QUEUE, 30, processors=[force], width=WIDTH)
    model.config._attn_implementation = "eager"
    eager = collect_stream(model, tokenizer, table, QUEUE, 30, processors=[force], width=WIDTH)
    for got, want in pairs_with_same_ids(eager, sdpa):
        assert got.record["sentence_confidences"] == pytest.approx(want.record["sentence_confidences"],
                                                                   rel=TOL.batch_conf)


@pytest.mark.parametrize("lengths, budget, groups", [
    ([10] * 4, 40, [[0, 1, 2, 3]]),
    ([10] * 5, 40, [[0, 1, 2, 3], [4]]),
    ([30, 5, 20, 50, 1], 60, [[0, 1], [2], [3], [4]]),  # 3 x 30 > 60; 50 alone; 2 x 50 > 60
    ([5, 30], 60, [[0, 1]]),                           # 2 x 30 = 60 fits
    ([100], 60, [[0]]),                                # longer than the budget: alone
    ([], 60, []),
])
def test_prefill_groups_bound_the_padded_tokens(lengths, budget, groups):
    assert prefill_groups(lengths, budget) == groups


def test_prompts_prefilled_in_groups_decode_as_prefilled_together(tiny, monkeypatch):
    model, tokenizer, table = tiny
    force = ForceEosAt(table.eos_ids[0], ENDS)
    together = collect_stream(model, tokenizer, table, QUEUE, 30, processors=[force], width=4)
    monkeypatch.setattr(engine_module, "PREFILL_TOKENS", 1)  # one prompt a prefill
    apart = collect_stream(model, tokenizer, table, QUEUE, 30, processors=[force], width=4)
    assert [r.record["idx"] for r in apart] == [r.record["idx"] for r in together]
    for got, want in pairs_with_same_ids(apart, together):
        assert got.record["sentence_confidences"] == pytest.approx(want.record["sentence_confidences"],
                                                                   rel=TOL.batch_conf)
        assert_same_rows(got, want)


def test_pad_left_of_the_history():
    t = torch.tensor([[1, 2]])
    assert pad_left(t, 2, 9).tolist() == [[9, 9, 1, 2]]
    assert pad_left(t, 0, 9) is t and pad_left(t, -1, 9) is t


# ---- kill -9 mid-run ---------------------------------------------------------------------------

KILLER = """
import os, signal, sys
sys.path.insert(0, {root!r})
import rebalance.stages.collect as runs
import transformer_inference_dp
real, calls = runs.save_hidden, [0]
def save_then_die(hidden, folder, idx):
    calls[0] += 1
    if calls[0] == 4:
        os.kill(os.getpid(), signal.SIGKILL)  # mid-run, with rows of other examples in flight
    real(hidden, folder, idx)
runs.save_hidden = save_then_die
transformer_inference_dp.main(sys.argv[1:])
"""


def test_kill_9_mid_run_then_rerun_gives_one_record_per_idx(tiny_dirs, tmp_path, capsys):
    from test_run import collect_argv, run_main, shard_dir

    import transformer_inference_dp

    problems = [p + " " * k for k in range(2) for p in PROBLEMS]  # 10 prompts of 5 lengths
    data = write_dataset(tmp_path / "data", problems=problems)
    argv = collect_argv(tiny_dirs["llama"], data, tmp_path / "o", "--batch_size", "3")
    killed = subprocess.run([sys.executable, "-c", KILLER.format(root=ROOT), *argv], cwd=ROOT,
                            capture_output=True, text=True)
    assert killed.returncode == -signal.SIGKILL
    folder = shard_dir(tmp_path / "o", tiny_dirs["llama"], data)
    shard = os.path.join(folder, "origin_temp0.7_maxlen12.shard0.jsonl")
    assert len(read_records(shard)) == 3
    assert run_main(transformer_inference_dp.main, argv, capsys)[0] == 0
    records = read_records(shard)
    assert sorted(r["idx"] for r in records) == list(range(10))
    clean = tmp_path / "clean"
    assert run_main(transformer_inference_dp.main, collect_argv(tiny_dirs["llama"], data, clean, "--batch_size", "3"),
                    capsys)[0] == 0
    reference = {r["idx"]: r for r in read_records(os.path.join(shard_dir(clean, tiny_dirs["llama"], data),
                                                                 "origin_temp0.7_maxlen12.shard0.jsonl"))}
    clean_folder = shard_dir(clean, tiny_dirs["llama"], data)
    for record in records:
        assert record["generated_responses"] == reference[record["idx"]]["generated_responses"]
        hidden = torch.load(os.path.join(folder, f"hidden_{record['idx']}.pt"), weights_only=True)
        expected = torch.load(os.path.join(clean_folder, f"hidden_{record['idx']}.pt"), weights_only=True)
        for layer in (k for k in expected if isinstance(k, int)):  # the rows of the example, not of a neighbour
            torch.testing.assert_close(hidden[layer][0]["step"], expected[layer][0]["step"],
                                       rtol=TOL.batch_conf, atol=TOL.batch_conf)
