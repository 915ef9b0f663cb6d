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
from rebalance.decode import collect_batch, collect_stream, steer_batch, steer_stream
from rebalance.decoding.engine import Engine, RowAwareProcessor
from rebalance.decoding.records import make_table
from rebalance.decoding.row_state import RowState
from rebalance.decoding.steps import StepTracker
from rebalance.examples import Example, prompt_ids
from rebalance.steering import Controller, SteeringSetup, site_index

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
    kw = dict(temperature=0.7, top_p=0.95, repetition_penalty=1.3, seed=42)
    force = ForceEosAt(table.eos_ids[0], ENDS)
    stream = sorted(steer_stream(model, tokenizer, table, QUEUE, setup, 30, processors=[force], width=WIDTH, **kw),
                    key=lambda r: r.record["idx"])
    reversed_queue = sorted(steer_stream(model, tokenizer, table, QUEUE[::-1], setup, 30, processors=[force],
                                         width=2, **kw), key=lambda r: r.record["idx"])
    single = [steer_batch(model, tokenizer, table, [ex], setup, 30, processors=[force], **kw)[0] for ex in QUEUE]
    for other in (stream, reversed_queue):
        pairs_with_same_ids(other, single)
    # a different seed draws differently, so the equality above is not a greedy accident
    reseeded = steer_batch(model, tokenizer, table, QUEUE, setup, 30, processors=[force], **{**kw, "seed": 7})
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
          [("controller", f) for f in ("sum", "count", "prev_mean", "coef")]

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
    cls = {"tracker": StepTracker, "controller": Controller}[owner]
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


# ---- memory follows the live rows ----------------------------------------------------------------

class WidthProbe(RowAwareProcessor):
    """Checks at every step that the cache is as wide as the longest live row, no wider."""

    def __init__(self, prompt_lengths):
        self.prompt_lengths, self.widths = prompt_lengths, []

    def __call__(self, input_ids, scores, rows=None):
        longest = max(self.prompt_lengths[int(i)] + int(g) for i, g in zip(rows.example_idx, rows.generated))
        self.widths.append((input_ids.shape[1], longest))
        return scores


def test_record_fields_at_a_known_eos_and_at_the_limit(tiny):
    """Example 0 writes four tokens then EOS; example 1 is still writing at the 6-token limit."""
    model, tokenizer, table = tiny
    vocab = tokenizer.get_vocab()
    scripts = [[vocab[t] for t in "a b ĊĊ a".split()], [vocab[t] for t in "b ĊĊ a a b ĊĊ a".split()]]
    out = {r.record["idx"]: r for r in collect_stream(model, tokenizer, table, QUEUE[:2], 6,
                                                         processors=[Script(scripts, table.eos_ids[0])], width=2)}
    ended, cut = out[0].record, out[1].record
    assert (ended["finish_reason"], ended["num_tokens"]) == ("eos", 5)  # the EOS is counted ...
    assert ended["generated_responses"] == ["ab\n\na"]  # ... and not written
    assert out[0].tokens == scripts[0] + [table.eos_ids[0]]
    assert (cut["finish_reason"], cut["num_tokens"]) == ("length", 6)
    assert cut["generated_responses"] == ["b\n\naab\n\n"] and out[1].tokens == scripts[1][:6]
    assert (ended["step_texts"], cut["step_texts"]) == (["ab\n\n", "a"], ["b\n\n", "aab\n\n"])
    assert len(ended["sentence_confidences"]) == 2 and ended["think_closed"] is False


def test_the_cache_drops_columns_no_live_row_needs(tiny):
    model, tokenizer, table = tiny
    queue = QUEUE
    probe = WidthProbe({ex.idx: len(prompt_ids(tokenizer, ex.problem)) for ex in queue})
    force = ForceEosAt(table.eos_ids[0], ENDS)
    engine = Engine(model, tokenizer, table, prompt=lambda ex: prompt_ids(tokenizer, ex.problem), width=WIDTH,
                    max_new_tokens=30, processors=[force, probe])
    assert len(list(engine.run(queue))) == 8
    assert len(probe.widths) > 30  # steps with rows of different ages side by side
    assert all(width == longest for width, longest in probe.widths)


# ---- kill -9 mid-run ---------------------------------------------------------------------------

KILLER = """
import os, signal, sys
sys.path.insert(0, {root!r})
import rebalance.runs as runs
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
