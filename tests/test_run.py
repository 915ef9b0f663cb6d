"""The collection script end to end: shards, data parallel, resume after a kill, bad input."""

import json
import os

import pytest
import torch
from conftest import write_dataset

import merge_shards
import transformer_inference_dp
from rebalance.files.shards import read_records
from rebalance.stages import collect as runs


def run_main(main, argv, capsys, stream="err"):
    """Exit status and stderr (or stdout) of a script's main, argparse errors included."""
    try:
        status = main(argv)
    except SystemExit as exc:
        status = exc.code
    return status, getattr(capsys.readouterr(), stream)


def collect_argv(model_dir, data, out, *extra):
    root, name = data
    return ["--model_name_or_path", model_dir, "--dataset_dir", root, "--dataset", name, "--output_path", str(out),
            "--max_generated_tokens", "12", *extra]


def shard_dir(out, model_dir, data):
    return os.path.join(str(out), os.path.basename(model_dir), data[1])


def test_two_workers_give_two_shards_that_merge(tiny_dirs, toy_data, tmp_path, capsys):
    model_dir = tiny_dirs["qwen2"]
    status, err = run_main(transformer_inference_dp.main,
                           collect_argv(model_dir, toy_data, tmp_path / "out", "--num_gpus", "2", "--batch_size", "2"),
                           capsys)
    assert status == 0, err
    assert "2 CPU workers" in err
    folder = shard_dir(tmp_path / "out", model_dir, toy_data)
    base = "origin_temp0.7_maxlen12"
    shard0 = [r["idx"] for r in read_records(os.path.join(folder, f"{base}.shard0.jsonl"))]
    shard1 = [r["idx"] for r in read_records(os.path.join(folder, f"{base}.shard1.jsonl"))]
    assert (shard0, shard1) == ([0, 2, 4], [1, 3])
    status, out = run_main(merge_shards.main, ["--dir", folder, "--base", base, "--expected", "6"], capsys, "out")
    assert status == 0
    assert "missing 1 of 6: [5]" in out
    merged = read_records(os.path.join(folder, f"{base}.merged.jsonl"))
    assert [r["idx"] for r in merged] == [0, 1, 2, 3, 4]
    # each file holds its own example's rows: the same as one process decoding the five alone
    from conftest import load

    from rebalance.decoding.decode import collect_batch
    from rebalance.decoding.records import make_table
    from rebalance.examples import load_examples

    model, tokenizer = load(model_dir)
    alone = collect_batch(model, tokenizer, make_table(model, tokenizer), load_examples(*toy_data), 12)
    for idx in range(5):
        hidden = torch.load(os.path.join(folder, f"hidden_{idx}.pt"), weights_only=True)
        assert merged[idx]["generated_responses"] == alone[idx].record["generated_responses"]
        for layer in range(4):
            torch.testing.assert_close(hidden[layer][0]["step"], alone[idx].hidden[layer][0]["step"], rtol=1e-4,
                                       atol=1e-4)


def test_killed_run_resumes_without_duplicates(tiny_dirs, toy_data, tmp_path, capsys, monkeypatch):
    model_dir = tiny_dirs["llama"]
    argv = collect_argv(model_dir, toy_data, tmp_path / "out", "--batch_size", "2")
    folder = shard_dir(tmp_path / "out", model_dir, toy_data)
    shard = os.path.join(folder, "origin_temp0.7_maxlen12.shard0.jsonl")

    # kill 1: an exception after three records were written (mid-batch: the 4th hidden file fails)
    real_save = runs.save_hidden
    calls = {"n": 0}

    def dying_save(hidden, hidden_dir, idx):
        calls["n"] += 1
        if calls["n"] == 4:
            raise KeyboardInterrupt("killed")
        real_save(hidden, hidden_dir, idx)

    monkeypatch.setattr(runs, "save_hidden", dying_save)
    with pytest.raises(KeyboardInterrupt):
        transformer_inference_dp.main(argv)
    assert [r["idx"] for r in read_records(shard)] == [0, 1, 2]

    # kill 2: torn half line at the end of the shard (killed while writing a record)
    with open(shard, "a") as handle:
        handle.write('{"idx": 3, "question": "Step 1: comp')
    monkeypatch.setattr(runs, "save_hidden", real_save)
    status, err = run_main(transformer_inference_dp.main, argv, capsys)
    assert status == 0, err
    records = read_records(shard)
    assert [r["idx"] for r in records] == [0, 1, 2, 3, 4]
    with open(shard) as handle:
        assert all(json.loads(line) for line in handle)  # the torn line was cut, not kept

    # a third run has nothing left to do and changes nothing
    before = open(shard).read()
    assert run_main(transformer_inference_dp.main, argv, capsys)[0] == 0
    assert open(shard).read() == before


def bad_data(tmp_path, content):
    folder = tmp_path / "bad" / "Set"
    folder.mkdir(parents=True)
    (folder / "test.jsonl").write_text(content)
    return str(tmp_path / "bad"), "Set"


@pytest.mark.parametrize("case, expected", [
    ("missing_dataset", "dataset file not found"),
    ("malformed_line", "test.jsonl:2: malformed JSON"),
    ("no_problem", "test.jsonl:1: record has no 'problem'"),
    ("empty", "the dataset is empty"),
    ("missing_model", "--model_name_or_path: no such model folder"),
    ("unknown_architecture", "--model_name_or_path: cannot read the config of"),
    ("negative_tokens", "--max_generated_tokens"),
])
def test_bad_input_is_one_line_and_status_2(case, expected, tiny_dirs, tmp_path, capsys):
    model_dir, data = tiny_dirs["qwen2"], (str(tmp_path), "Nowhere")
    if case == "malformed_line":
        data = bad_data(tmp_path, '{"problem": "a", "answer": 1}\n{"problem": "b", \n')
    elif case == "no_problem":
        data = bad_data(tmp_path, '{"question": "a", "answer": 1}\n')
    elif case == "empty":
        data = bad_data(tmp_path, "\n")
    elif case == "missing_model":
        data = write_dataset(tmp_path / "d")
        model_dir = str(tmp_path / "no" / "such" / "model")
    elif case == "unknown_architecture":
        data = write_dataset(tmp_path / "d")
        (tmp_path / "m").mkdir()
        (tmp_path / "m" / "config.json").write_text('{"model_type": "no_such_architecture"}')
        model_dir = str(tmp_path / "m")
    elif case == "negative_tokens":
        data = write_dataset(tmp_path / "d")
    argv = collect_argv(model_dir, data, tmp_path / "out")
    if case == "negative_tokens":
        argv[argv.index("--max_generated_tokens") + 1] = "-5"
    status, err = run_main(transformer_inference_dp.main, argv, capsys)
    assert status == 2
    assert expected in err
    if case != "negative_tokens":  # argparse prints its usage line too
        assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_more_gpus_than_present_is_refused(tiny_dirs, toy_data, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    status, err = run_main(transformer_inference_dp.main,
                           collect_argv(tiny_dirs["qwen2"], toy_data, tmp_path / "out", "--num_gpus", "2"), capsys)
    assert status == 2
    assert err.strip() == "error: --num_gpus 2: only 1 CUDA device(s) present"


def test_problem_with_blank_lines_keeps_pairing(tiny_dirs, tmp_path, capsys):
    """A prompt holding "\\n\\n" does not count as a boundary (the release dropped such examples)."""
    data = write_dataset(tmp_path / "d", problems=["Line one.\n\nLine two.\n\nWhat is 3 + 4?"])
    status, _ = run_main(transformer_inference_dp.main, collect_argv(tiny_dirs["qwen3"], data, tmp_path / "o"), capsys)
    assert status == 0
    folder = shard_dir(tmp_path / "o", tiny_dirs["qwen3"], data)
    record = read_records(os.path.join(folder, "origin_temp0.7_maxlen12.shard0.jsonl"))[0]
    hidden = torch.load(os.path.join(folder, "hidden_0.pt"), weights_only=True)
    # the prompt's blank lines start no step: the steps are those of the response alone
    assert "".join(record["step_texts"]) == record["generated_responses"][0]
    assert len(record["sentence_confidences"]) == len(record["step_texts"]) == hidden[0][0]["step"].shape[0] + 1
