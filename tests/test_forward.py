"""The decoding step of fixed shape (decoding/forward.py, cache buckets): compiled and eager choose the
same tokens and coefficients on real architectures, a compiled engine never runs another engine's
hooks, and a steady-state step reads the device back once."""

from __future__ import annotations

import collections

import pytest
import torch
from conftest import TOL, load
from test_engine import ForceEosAt

from rebalance.calibration import generic
from rebalance.control import ControlFunction
from rebalance.decoding import cache as kvcache
from rebalance.decoding.decode import engine_for
from rebalance.decoding.records import make_table
from rebalance.decoding.sampling import Sampling, SuppressTokens
from rebalance.decoding.steering import Mode, SteeringSetup, site_index
from rebalance.examples import Example

PROBLEMS = ["What is 2 + 2?", "Tom has 3 apples and buys 4 more.", "Compute 5 * 6.", "Let me think.\n\nA box of pens."]
SAMPLED = Sampling(temperature=0.7, top_p=0.95, seed=5)


@pytest.mark.parametrize("needed, capacity, columns", [
    (1, 4096, 256), (256, 4096, 256), (257, 4096, 320), (449, 4096, 512), (513, 4096, 640),
    (1025, 4096, 1280), (2049, 4096, 2560), (3073, 4096, 3584), (4000, 4096, 4096),
    (100, 128, 128), (8193, 8256, 8256), (4096, 4096, 4096),
])
def test_a_step_reads_a_bucket_of_columns(needed, capacity, columns):
    assert kvcache.column_bucket(needed, capacity) == columns


def test_buckets_overshoot_by_at_most_a_quarter_and_there_are_few():
    buckets = {kvcache.column_bucket(n, 16384) for n in range(1, 16385)}
    assert len(buckets) == 25
    assert all(kvcache.column_bucket(n, 1 << 20) <= max(256, 1.25 * n) for n in range(1, 20000, 7))


def test_a_row_past_the_capacity_is_refused():
    with pytest.raises(RuntimeError, match="column 4096 of a 4096-column cache"):
        kvcache.column_bucket(4097, 4096)


@pytest.mark.parametrize("live, width, rows", [(1, 8, 1), (2, 8, 2), (3, 8, 4), (5, 8, 8), (8, 8, 8),
                                               (33, 48, 48), (17, 48, 32), (16, 48, 16)])
def test_a_compiled_step_runs_a_bucket_of_rows(live, width, rows):
    assert kvcache.row_bucket(live, width) == rows


def steering(model, layer=1, scale=2.0):
    vector = torch.randn(model.config.hidden_size, generator=torch.Generator().manual_seed(1)) * scale
    return SteeringSetup(vector, site_index(model.config.num_hidden_layers + 1, layer, "input"), Mode.DYNAMIC, -1.0,
                         ControlFunction(**generic()))


def decode(model, tokenizer, compile: bool, *, new_tokens=16, processors=None, engines=None, **kw) -> dict:
    """{idx: Finished} of the four problems, all in flight (EOS forbidden unless `processors` say);
    the engine is appended to `engines` when given."""
    table = make_table(model, tokenizer)
    processors = processors if processors is not None else [SuppressTokens(table.eos_ids)]
    engine = engine_for(model, tokenizer, table, width=4, max_new_tokens=new_tokens, processors=processors, **kw)
    if compile:
        engine.compile()
    if engines is not None:
        engines.append(engine)
    with engine:
        return {done.example.idx: done for done in engine.run(Example(i, p, "", {}) for i, p in enumerate(PROBLEMS))}


def tokens(finished: dict) -> dict:
    return {idx: done.tokens for idx, done in finished.items()}


def assert_same(compiled: dict, eager: dict, coef_tol: float = 1e-5) -> None:
    assert compiled.keys() == eager.keys()
    for idx, want in eager.items():
        got = compiled[idx]
        assert got.tokens == want.tokens, idx
        assert got.flags == want.flags
        if "steer_coefs" in want.values:
            assert len(got.values["steer_coefs"]) == len(want.values["steer_coefs"])
            assert got.values["steer_coefs"] == pytest.approx(want.values["steer_coefs"], abs=coef_tol)
        for got_row, want_row in zip(got.values.get("hidden_rows", []), want.values.get("hidden_rows", [])):
            assert (got_row - want_row).norm() <= TOL.row * want_row.norm() + 1e-6


@pytest.fixture(scope="module", params=["qwen2", "qwen3", "llama"])
def tiny(request, tiny_dirs):
    return load(tiny_dirs[request.param])


def test_compiled_steering_chooses_what_eager_does(tiny):
    model, tokenizer = tiny
    setup = steering(model)
    eager = decode(model, tokenizer, False, steering=setup)
    assert sum(len(d.values["steer_coefs"]) for d in eager.values()) >= 4  # the test steers at all
    assert_same(decode(model, tokenizer, True, steering=setup), eager)
    sampled = decode(model, tokenizer, False, steering=setup, sampling=SAMPLED)
    assert tokens(sampled) != tokens(eager)
    assert_same(decode(model, tokenizer, True, steering=setup, sampling=SAMPLED), sampled)


def test_compiled_collection_captures_what_eager_does(tiny):
    model, tokenizer = tiny
    eager = decode(model, tokenizer, False, capture_on="cpu")
    assert sum(len(d.values["hidden_rows"]) for d in eager.values()) >= 4
    assert_same(decode(model, tokenizer, True, capture_on="cpu"), eager)


def test_compiled_smollm2_chooses_what_eager_does(smollm2_dir):
    model, tokenizer = load(smollm2_dir)
    setup = steering(model, layer=20, scale=0.1)
    for sampling in (Sampling(), SAMPLED):
        eager = decode(model, tokenizer, False, new_tokens=12, steering=setup, sampling=sampling)
        assert_same(decode(model, tokenizer, True, new_tokens=12, steering=setup, sampling=sampling), eager)


def test_padding_rows_of_a_shrinking_batch_change_nothing(tiny_dirs):
    """Rows end at different steps, so the compiled step runs 4, then 2, then 1 rows with padding
    rows in between; a fifth example refills a slot on the way."""
    model, tokenizer = load(tiny_dirs["qwen2"])
    eos = make_table(model, tokenizer).eos_ids[0]
    ends = {0: 3, 1: 7, 2: 12, 3: 5}

    def run(compile, engines=None):
        return decode(model, tokenizer, compile, new_tokens=16, processors=[ForceEosAt(eos, ends)],
                      steering=steering(model), engines=engines)

    eager, engines = run(False), []
    assert [len(eager[i].tokens) for i in range(4)] == [3, 7, 12, 5]
    torch._dynamo.reset()  # nothing compiled before: this run must compile its own step
    assert_same(run(True, engines), eager)
    assert engines[0].compiled and engines[0].forward.compiles >= 1 and engines[0].forward.compile_seconds > 0


def test_a_compiled_engine_runs_its_own_hooks_not_the_previous_engines(tiny_dirs):
    """Two compiled engines in one process, steering at different layers: each decodes what its
    own eager twin does (compiled code is cached per function, so stale hooks would leak)."""
    model, tokenizer = load(tiny_dirs["llama"])
    runs = {}
    for layer in (1, 2, 1):
        setup = steering(model, layer=layer, scale=4.0)
        runs[layer] = decode(model, tokenizer, False, steering=setup)
        assert_same(decode(model, tokenizer, True, steering=setup), runs[layer])
    assert tokens(runs[1]) != tokens(runs[2])


# ---- one device-to-host transfer a step ---------------------------------------------------------

# Every Tensor method that hands a value to Python, each of which waits for the device on a GPU.
# `.numpy()` is left out: it refuses a CUDA tensor, and on the CPU it serves the sampler's sort.
READS = ("item", "tolist", "cpu", "__bool__", "__int__", "__float__", "__index__", "nonzero")


@pytest.fixture
def host_reads(monkeypatch):
    """A counter of the calls above, by method name."""
    counts = collections.Counter()
    for name in READS:
        original = getattr(torch.Tensor, name)

        def counted(self, *args, _name=name, _original=original, **kwargs):
            counts[_name] += 1
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, name, counted)
    return counts


@pytest.mark.parametrize("kind", ["collection", "dynamic", "sampled"])
def test_a_steady_state_step_reads_the_device_back_once(tiny_dirs, host_reads, kind):
    model, tokenizer = load(tiny_dirs["qwen3"])
    table = make_table(model, tokenizer)
    kw = {"collection": dict(capture_on="cpu"), "dynamic": dict(steering=steering(model)),
          "sampled": dict(steering=steering(model), sampling=SAMPLED)}[kind]
    engine = engine_for(model, tokenizer, table, width=2, max_new_tokens=12,
                        processors=[SuppressTokens(table.eos_ids)], **kw)
    per_step, step = [], engine._step

    def counted_step(queue):
        host_reads.clear()
        out = step(queue)
        per_step.append(dict(host_reads))
        return out

    engine._step = counted_step
    with engine:
        done = list(engine.run(Example(i, p, "", {}) for i, p in enumerate(PROBLEMS[:2])))
    assert [len(d.tokens) for d in done] == [12, 12]
    steady = per_step[1:-1]  # the first step admits (prefill), the last drops the finished rows
    assert len(steady) == 10
    assert all(reads == {"tolist": 1} for reads in steady), steady
    if kind == "collection":
        assert sum(len(d.values["hidden_rows"]) for d in done) >= 2  # capture steps are among the counted


def test_the_scripts_compile_flag_writes_the_same_records_and_a_resume_may_drop_it(tiny_dirs, toy_data, tmp_path,
                                                                                     capsys, monkeypatch):
    """`--compile` on the steered and the collection script: the records equal the eager run's, the
    card records the flag without comparing it, and rerunning without it on the same output is a
    resume, not a refusal."""
    import transformer_inference_dp
    import transformer_inference_steer_dp
    from test_run import run_main

    from rebalance.decoding.engine import Engine
    from rebalance.files.cards import RunCard
    from rebalance.files.shards import read_records

    compiled_engines = []
    real_compile = Engine.compile
    monkeypatch.setattr(Engine, "compile",
                        lambda self, *a, **k: compiled_engines.append(self) or real_compile(self, *a, **k))
    torch.save(torch.randn(32, generator=torch.Generator().manual_seed(3)) * 4, tmp_path / "v.pt")
    common = ["--model_name_or_path", tiny_dirs["qwen2"], "--dataset_dir", toy_data[0], "--dataset", toy_data[1],
              "--max_generated_tokens", "12", "--batch_size", "4"]
    runs = {"steer": (transformer_inference_steer_dp, "steer_temp0.0_maxlen12",
                      ["--temperature", "0", "--steer_vector_path", str(tmp_path / "v.pt"), "--steer_layer", "1"]),
            "collect": (transformer_inference_dp, "origin_temp0.7_maxlen12", [])}
    for name, (script, stem, extra) in runs.items():
        records = {}
        for way in ("eager", "compiled"):
            out = tmp_path / name / way
            status, err = run_main(script.main, common + extra + ["--output_path", str(out)]
                                   + (["--compile"] if way == "compiled" else []), capsys)
            assert status == 0, err
            folder = out / "qwen2" / toy_data[1]
            records[way] = read_records(str(folder / f"{stem}.shard0.jsonl"))
            card = RunCard.read(str(folder / f"{stem}.shard0.run.json"))
            assert card.recorded["compile"] is (way == "compiled") and "compile" not in card.compared
            assert len(compiled_engines) == (way == "compiled") + list(runs).index(name)  # one per compiled run
        assert [r["generated_responses"] for r in records["compiled"]] == [r["generated_responses"]
                                                                          for r in records["eager"]]
        for got, want in zip(records["compiled"], records["eager"]):
            assert got["sentence_confidences"] == pytest.approx(want["sentence_confidences"], abs=1e-5)
            assert got.get("steer_coefs") == pytest.approx(want.get("steer_coefs"), abs=1e-5)
        status, err = run_main(script.main, common + extra + ["--output_path", str(tmp_path / name / "compiled")],
                               capsys)
        assert status == 0, err  # the compiled run's output, resumed eagerly: nothing left to do, no refusal


def test_compile_on_a_cpu_without_a_cxx_compiler_is_one_sentence(tiny_dirs, monkeypatch):
    from rebalance.decoding import forward
    from rebalance.errors import UsageError

    model, tokenizer = load(tiny_dirs["qwen2"])
    engine = engine_for(model, tokenizer, make_table(model, tokenizer), width=1, max_new_tokens=4)
    monkeypatch.setattr(forward.shutil, "which", lambda name: None)
    with pytest.raises(UsageError, match="--compile on a CPU needs a C\\+\\+ compiler"):
        engine.compile()
    engine.compile("aot_eager")  # a backend that builds nothing needs no compiler
