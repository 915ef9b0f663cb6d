"""Run identity: a card beside every shard, resume and merge refuse runs made differently, a resume
with another worker count redoes nothing, and the card travels into the merged file and the metrics."""

import json
import os

import pytest
import torch
from conftest import PROBLEMS, write_dataset
from test_run import collect_argv, run_main, shard_dir

import check
import hidden_config_ridge
import merge_shards
import transformer_inference_dp
import transformer_inference_steer_dp
from rebalance.files.cards import RunCard
from rebalance.files.shards import read_records

PROBLEMS8 = PROBLEMS + ["What is 2 times 8?", "Ann has 9 cards and gives 4 away. How many are left?",
                        "What is 7 plus 7?"]


@pytest.fixture
def data8(tmp_path):
    return write_dataset(tmp_path / "data", problems=PROBLEMS8)


def steer_argv(model_dir, data, out, vector, *extra):
    root, name = data
    return ["--model_name_or_path", model_dir, "--dataset_dir", root, "--dataset", name, "--output_path", str(out),
            "--max_generated_tokens", "6", "--steer_vector_path", str(vector), "--steer_layer", "2", *extra]


@pytest.fixture
def vector(tmp_path):
    path = tmp_path / "v.pt"
    torch.save(torch.randn(32, generator=torch.Generator().manual_seed(0)), path)
    return path


def listing(folder):
    return sorted(os.listdir(folder))


def snapshot(folder):
    """Every file's bytes and modification time."""
    return {name: (open(os.path.join(folder, name), "rb").read(), os.stat(os.path.join(folder, name)).st_mtime_ns)
            for name in listing(folder)}


def by_idx(path):
    return {rec["idx"]: rec for rec in read_records(path)}


# ---- the two scenarios of a user changing one flag at a time ------------------------------------

def test_dynamic_then_static_in_one_folder_are_two_runs(tiny_dirs, toy_data, vector, tmp_path, capsys):
    out, model = tmp_path / "o", tiny_dirs["qwen2"]
    argv = steer_argv(model, toy_data, out, vector, "--temperature", "0", "--limit", "4")
    assert run_main(transformer_inference_steer_dp.main, argv + ["--steer_mode", "dynamic"], capsys)[0] == 0
    status, err = run_main(transformer_inference_steer_dp.main,
                           argv + ["--steer_mode", "static", "--steer_coef", "-0.75"], capsys)
    assert status == 0, err
    folder = shard_dir(out, model, toy_data)
    dynamic = by_idx(os.path.join(folder, "steer_temp0.0_maxlen6.shard0.jsonl"))
    static = by_idx(os.path.join(folder, "static-0.75_temp0.0_maxlen6.shard0.jsonl"))
    assert sorted(dynamic) == sorted(static) == [0, 1, 2, 3]  # the static run decoded its own examples
    coefs = [c for rec in static.values() for c in rec["steer_coefs"]]
    assert coefs and set(coefs) == {-0.75}
    assert RunCard.read(os.path.join(folder, "static-0.75_temp0.0_maxlen6.shard0.run.json")).compared["mode"] == "static"
    assert not [name for name in listing(folder) if name.endswith(".lock")]  # a clean end leaves no lock file


@pytest.mark.parametrize("flag, before, after, field", [
    ("--steer_coef", "-1.0", "-0.75", "--steer_coef: -1.0 in the existing shards, -0.75 now"),
    ("--seed", "42", "7", "--seed: 42 in the existing shards, 7 now"),
    ("--top_p", "0.95", "0.5", "--top_p: 0.95 in the existing shards, 0.5 now"),
    ("--steer_layer", "2", "1", "--steer_layer: 2 in the existing shards, 1 now"),
    ("--steer_vector_path", None, "other", "--steer_vector_path (the vector's content): "),
])
def test_a_resume_with_another_setting_is_refused_naming_it(flag, before, after, field, tiny_dirs, toy_data,
                                                            vector, tmp_path, capsys):
    out, model = tmp_path / "o", tiny_dirs["llama"]
    other = tmp_path / "other.pt"
    torch.save(torch.ones(32), other)
    argv = steer_argv(model, toy_data, out, vector, "--limit", "2")  # sampled: T 0.7, top-p 0.95, seed 42
    first = argv + ([flag, before] if before else [])
    assert run_main(transformer_inference_steer_dp.main, first, capsys)[0] == 0
    folder = shard_dir(out, model, toy_data)
    files = snapshot(folder)
    second = steer_argv(model, toy_data, out, other if after == "other" else vector, "--limit", "4")
    if after != "other":
        second += [flag, after]
    status, err = run_main(transformer_inference_steer_dp.main, second, capsys)
    assert status == 2
    assert field in err and "another --run_id or --output_path" in err
    assert snapshot(folder) == files  # nothing written, not even the control-surface plot
    # the same change under its own run id is a run of its own
    assert run_main(transformer_inference_steer_dp.main, second + ["--run_id", "b"], capsys)[0] == 0


@pytest.mark.parametrize("workers", [(1, 2), (2, 1)])
def test_another_worker_count_resumes_without_recomputing(workers, tiny_dirs, data8, tmp_path, capsys):
    out, model = tmp_path / "o", tiny_dirs["qwen2"]
    first, second = workers
    argv = collect_argv(model, data8, out, "--batch_size", "2")
    assert run_main(transformer_inference_dp.main, argv + ["--limit", "4", "--num_gpus", str(first)], capsys)[0] == 0
    folder = shard_dir(out, model, data8)
    before = {name: by_idx(os.path.join(folder, name)) for name in listing(folder) if name.endswith(".jsonl")}
    assert run_main(transformer_inference_dp.main, argv + ["--num_gpus", str(second)], capsys)[0] == 0
    after = {name: by_idx(os.path.join(folder, name)) for name in listing(folder) if name.endswith(".jsonl")}
    written = [idx for name, recs in after.items() for idx in recs if idx not in before.get(name, {})]
    assert sorted(written) == list(range(4, 8))  # only the new examples, each once
    for name, recs in before.items():  # the earlier records stay as they were
        assert {i: after[name][i] for i in recs} == recs
    stem = "origin_temp0.7_maxlen12"
    status, text = run_main(merge_shards.main, ["--dir", folder, "--base", stem], capsys, "out")
    assert status == 0 and "(0 duplicates dropped)" in text
    assert [r["idx"] for r in read_records(os.path.join(folder, f"{stem}.merged.jsonl"))] == list(range(8))
    card = RunCard.read(os.path.join(folder, f"{stem}.shard0.run.json"))
    assert len(card.resumed) == 1 and card.resumed[0]["started"] >= card.provenance["started"]  # the resume is noted


# ---- merge, check.py and the report carry the card ------------------------------------------------

def test_merge_refuses_shards_made_differently_and_writes_the_card(tiny_dirs, toy_data, vector, tmp_path, capsys):
    out, model = tmp_path / "o", tiny_dirs["qwen2"]
    argv = steer_argv(model, toy_data, out, vector, "--temperature", "0", "--num_gpus", "2")
    assert run_main(transformer_inference_steer_dp.main, argv, capsys)[0] == 0
    folder, stem = shard_dir(out, model, toy_data), "steer_temp0.0_maxlen6"
    assert run_main(merge_shards.main, ["--dir", folder, "--base", stem], capsys, "out")[0] == 0
    merged = RunCard.read(os.path.join(folder, f"{stem}.merged.run.json"))
    assert sorted(merged.provenance["shards"]) == [f"{stem}.shard0.jsonl", f"{stem}.shard1.jsonl"]
    assert merged.compared["mode"] == "dynamic" and merged.compared["steer_layer"] == 2

    status, _ = run_main(check.main, ["--model_name_or_path", model, "--data_name", toy_data[1], "--data_dir",
                                      toy_data[0], "--family", "gsm8k", "--generation_path",
                                      os.path.join(folder, f"{stem}.merged.jsonl")], capsys, "out")
    assert status == 0
    metrics = json.load(open(os.path.join(folder, f"{stem}.merged.metrics.json")))
    assert metrics["run_card"]["fingerprint"] == merged.fingerprint

    card1 = os.path.join(folder, f"{stem}.shard1.run.json")
    edited = RunCard.read(card1)
    edited.compared["seed"] = 7
    edited.write(card1)
    status, err = run_main(merge_shards.main, ["--dir", folder, "--base", stem], capsys)
    assert status == 2
    assert f"{stem}.shard1.jsonl and {stem}.shard0.jsonl were made with different settings" in err
    assert "--seed: unset in " in err


def test_a_shard_without_a_card_is_resumed_with_a_warning(tiny_dirs, toy_data, tmp_path, capsys):
    out, model = tmp_path / "o", tiny_dirs["qwen2"]
    argv = collect_argv(model, toy_data, out)
    assert run_main(transformer_inference_dp.main, argv + ["--limit", "2"], capsys)[0] == 0
    folder, stem = shard_dir(out, model, toy_data), "origin_temp0.7_maxlen12"
    os.remove(os.path.join(folder, f"{stem}.shard0.run.json"))
    for idx in range(2):  # hidden files as another tool writes them: no run tag
        path = os.path.join(folder, f"hidden_{idx}.pt")
        hidden = torch.load(path, weights_only=True)
        del hidden["run"]
        torch.save(hidden, path)
    status, err = run_main(transformer_inference_dp.main, argv, capsys)
    assert status == 0
    assert err.count(f"warning: {os.path.join(folder, stem)}.shard0.jsonl has no run card") == 1
    assert "hidden files without a run tag" in err
    assert os.path.isfile(os.path.join(folder, f"{stem}.shard0.run.json"))
    assert [r["idx"] for r in read_records(os.path.join(folder, f"{stem}.shard0.jsonl"))] == [0, 1, 2, 3, 4]


def test_an_unreadable_card_is_named_and_nothing_is_lost(tiny_dirs, toy_data, tmp_path, capsys):
    out, model = tmp_path / "o", tiny_dirs["qwen2"]
    argv = collect_argv(model, toy_data, out, "--limit", "2")
    assert run_main(transformer_inference_dp.main, argv, capsys)[0] == 0
    folder = shard_dir(out, model, toy_data)
    card = os.path.join(folder, "origin_temp0.7_maxlen12.shard0.run.json")
    with open(card, "w") as handle:
        handle.write("{not json")
    shard = open(os.path.join(folder, "origin_temp0.7_maxlen12.shard0.jsonl"), "rb").read()
    status, err = run_main(transformer_inference_dp.main, argv, capsys)
    assert status == 2
    assert err.startswith(f"error: {card}: not a readable run card (JSONDecodeError")
    assert open(os.path.join(folder, "origin_temp0.7_maxlen12.shard0.jsonl"), "rb").read() == shard


# ---- hidden files of two collection runs ----------------------------------------------------------

def test_hidden_files_of_another_collection_run_are_refused(tiny_dirs, toy_data, tmp_path, capsys):
    out, model = tmp_path / "o", tiny_dirs["qwen2"]
    assert run_main(transformer_inference_dp.main, collect_argv(model, toy_data, out), capsys)[0] == 0
    folder = shard_dir(out, model, toy_data)
    hidden = {name: open(os.path.join(folder, name), "rb").read() for name in listing(folder) if name.endswith(".pt")}
    argv = collect_argv(model, toy_data, out)
    argv[argv.index("--max_generated_tokens") + 1] = "10"  # another run: origin_temp0.7_maxlen10
    status, err = run_main(transformer_inference_dp.main, argv, capsys)
    assert status == 2
    assert "holds the hidden files of another collection run (origin_temp0.7_maxlen12)" in err
    assert "--max_generated_tokens: 12 in origin_temp0.7_maxlen12, 10 now" in err
    assert {name: open(os.path.join(folder, name), "rb").read() for name in hidden} == hidden


def test_the_analysis_refuses_a_hidden_file_of_another_run(tiny_dirs, toy_data, tmp_path, capsys):
    out, model = tmp_path / "o", tiny_dirs["qwen2"]
    assert run_main(transformer_inference_dp.main, collect_argv(model, toy_data, out), capsys)[0] == 0
    folder = shard_dir(out, model, toy_data)
    path = os.path.join(folder, "hidden_3.pt")
    hidden = torch.load(path, weights_only=True)
    hidden["run"] = {"stem": "origin_temp0.7_maxlen99", "fingerprint": "0123456789abcdef"}
    torch.save(hidden, path)
    status, err = run_main(hidden_config_ridge.main, ["--jsonl_path", os.path.join(
        folder, "origin_temp0.7_maxlen12.shard0.jsonl"), "--hidden_dir", folder, "--no_plot"], capsys)
    assert status == 2
    assert f"error: {path}: written by the collection run origin_temp0.7_maxlen99" in err
