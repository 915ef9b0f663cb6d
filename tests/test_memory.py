"""Memory planned before the first step: the cache size against what a real cache holds, the
widest batch that fits, and a run that stops (or narrows its batch) before loading anything."""

import os

import pytest
import torch
from conftest import load, write_dataset
from safetensors.torch import load_file
from test_run import collect_argv, run_main, shard_dir
from transformers import AutoConfig, DynamicCache

import transformer_inference_dp
from rebalance.decoding.memory import GIB, MemoryPlan, fit_plan, kv_bytes_per_token, parameter_count
from rebalance.errors import UsageError
from rebalance.files.shards import read_records
from rebalance.stages import collect as runs
from rebalance.stages import shared


@pytest.mark.parametrize("arch", ["qwen2", "qwen3", "llama"])
def test_bytes_per_token_are_what_the_models_own_cache_holds(tiny_dirs, arch):
    model, tokenizer = load(tiny_dirs[arch])
    cache = DynamicCache(config=model.config)
    tokens = 7
    with torch.no_grad():
        model(input_ids=torch.arange(3, 3 + tokens)[None, :], cache=cache, use_cache=True)
    held = sum(t.numel() * t.element_size() for layer in cache.layers for t in (layer.keys, layer.values))
    assert kv_bytes_per_token(model.config, 4) * tokens == held
    assert kv_bytes_per_token(model.config, 2) * tokens == held // 2


def test_parameters_are_read_from_the_safetensors_headers(tiny_dirs):
    folder = tiny_dirs["qwen2"]
    stored = [load_file(os.path.join(folder, n)) for n in os.listdir(folder) if n.endswith(".safetensors")]
    assert parameter_count(folder, 4) == sum(t.numel() for tensors in stored for t in tensors.values()) > 0
    assert parameter_count("org/not-a-folder", 2) is None


def test_parameters_of_a_bin_checkpoint_are_its_bytes_over_the_element_size(tmp_path):
    (tmp_path / "pytorch_model.bin").write_bytes(b"x" * 1000)
    (tmp_path / "config.json").write_text("{}")
    assert parameter_count(str(tmp_path), 2) == 500
    (tmp_path / "pytorch_model.bin").unlink()
    assert parameter_count(str(tmp_path), 2) is None  # a folder without weights


def plan(**kw):
    base = dict(width=8, columns=1000, per_token=1024, vocab=100, weights=GIB, available=GIB + 8 * 1024 * 1000)
    return MemoryPlan(**{**base, **kw})


def test_a_plan_counts_every_row_at_full_length_and_its_logits():
    p = plan()
    assert p.per_row == 1024 * 1000 + 4 * 4 * 100
    assert p.cache == 8 * p.per_row
    assert p.widest == 7  # 8 rows of cache are free, but their logits tip the eighth over
    assert not p.fits
    assert plan(available=GIB + 8 * p.per_row).fits and plan(available=GIB + 8 * p.per_row).widest == 8


def test_a_plan_that_does_not_fit_stops_naming_the_numbers_or_narrows_when_asked(capsys):
    p = plan()
    assert fit_plan(plan(available=10 * GIB), "on cuda:0", False) == 8
    with pytest.raises(UsageError) as err:
        fit_plan(p, "on cuda:0", False)
    assert str(err.value) == ("--batch_size 8 needs 0.01 GiB of key/value cache (1000 tokens a row: longest prompt + "
                              "--max_generated_tokens) beside 1.00 GiB of weights, and 1.01 GiB are free on cuda:0: "
                              "--batch_size 7 fits (or add --fit_batch to take it)")
    assert fit_plan(p, "on cuda:0", True) == 7
    assert capsys.readouterr().out.endswith("running with --batch_size 7 (--fit_batch)\n")
    with pytest.raises(UsageError, match="not even one row fits"):
        fit_plan(plan(available=GIB // 2), "in RAM", True)


def test_a_run_that_cannot_fit_stops_before_loading_and_one_that_may_narrow_finishes(tiny_dirs, tmp_path, capsys,
                                                                                      monkeypatch):
    data = write_dataset(tmp_path / "data", problems=["What is 2 + 2?"] * 6)
    model_dir = tiny_dirs["qwen2"]
    config = AutoConfig.from_pretrained(model_dir)
    per_row = kv_bytes_per_token(config, 4) * 112 + 16 * config.vocab_size  # a prompt under 100 tokens + 12 new
    weights = parameter_count(model_dir, 4) * 4
    monkeypatch.setattr(shared, "available_bytes", lambda device: weights + 3 * per_row)
    monkeypatch.setattr(runs, "load_model", lambda *a, **k: pytest.fail("the plan must stop the run first"))
    argv = collect_argv(model_dir, data, tmp_path / "o", "--batch_size", "6")
    status, err = run_main(transformer_inference_dp.main, argv, capsys)
    assert status == 2
    assert err.startswith("error: --batch_size 6 needs ") and " are free in RAM: --batch_size " in err
    assert "fits (or add --fit_batch to take it)" in err
    monkeypatch.undo()
    monkeypatch.setattr(shared, "available_bytes", lambda device: weights + 3 * per_row)
    widths = []
    real = runs.engine_for
    monkeypatch.setattr(runs, "engine_for", lambda *a, **k: widths.append(k["width"]) or real(*a, **k))
    status, out = run_main(transformer_inference_dp.main, argv + ["--fit_batch"], capsys, stream="out")
    assert status in (0, None)
    assert "(--fit_batch)" in out and widths and widths[0] < 6
    folder = shard_dir(tmp_path / "o", model_dir, data)
    assert sorted(r["idx"] for r in read_records(os.path.join(folder, "origin_temp0.7_maxlen12.shard0.jsonl"))) == \
        list(range(6))


def test_a_torn_safetensors_file_is_named_not_a_traceback(tmp_path):
    (tmp_path / "model.safetensors").write_bytes(b"\x10\x00")  # shorter than its own length field
    with pytest.raises(UsageError) as err:
        parameter_count(str(tmp_path), 2)
    assert str(err.value) == (f"{tmp_path}/model.safetensors: not a readable safetensors file (error); "
                              "check --model_name_or_path")
