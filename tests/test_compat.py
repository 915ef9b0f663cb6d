"""The authors' command lines work unchanged: their flags (honoured, or ignored with one line),
their output layout, bare model folder names, and one writer per shard."""

import json
import os
import subprocess
import sys

import pytest
import torch
from conftest import write_dataset
from synthetic import write_synthetic
from test_run import collect_argv, run_main, shard_dir

import check
import hidden_analysis_auto
import hidden_config_ridge
import merge_shards
import transformer_inference_dp
from rebalance.decoding.capture import HiddenCapture, hidden_dict
from rebalance.files.names import shard_path
from rebalance.files.shards import ShardLock, live_writer, read_records
from rebalance.stages.steer import build_parser, make_job

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def note_lines(err, flag):
    return [line for line in err.splitlines() if line.startswith(f"note: {flag} is ignored:")]


# ---- flags without a meaning here: accepted, one line on stderr -------------------------------

def test_collection_score_dtype_is_ignored_with_one_line(tiny_dirs, toy_data, tmp_path, capsys):
    status, err = run_main(transformer_inference_dp.main,
                           collect_argv(tiny_dirs["qwen2"], toy_data, tmp_path / "o", "--score_dtype", "fp16"), capsys)
    assert status == 0, err
    assert len(note_lines(err, "--score_dtype")) == 1


def test_analysis_threshold_is_ignored_with_one_line(tmp_path, capsys):
    syn = write_synthetic(str(tmp_path), subfolder=".")
    argv = ["--jsonl_path", syn.jsonl, "--hidden_dir", syn.hidden_dir, "--layer_id", "2",
            "--save_path", str(tmp_path / "v.pt")]
    status, err = run_main(hidden_analysis_auto.main, argv + ["--threshold", "0.7"], capsys)
    assert status == 0, err
    assert len(note_lines(err, "--threshold")) == 1
    with_flag = torch.load(tmp_path / "v.pt")
    assert run_main(hidden_analysis_auto.main, argv, capsys)[0] == 0
    assert torch.equal(torch.load(tmp_path / "v.pt"), with_flag)  # it changes nothing


def gsm_run(tmp_path, model_dir, split="test"):
    folder = tmp_path / "data" / "Math_GSM8K"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{split}.jsonl").write_text("".join(json.dumps({"problem": f"p{i}", "answer": a}) + "\n"
                                                   for i, a in enumerate(["7", "12", "30"])))
    run = tmp_path / "run.merged.jsonl"
    run.write_text("".join(json.dumps({"idx": i, "generated_responses": [f"</think> \\boxed{{{a}}}"]}) + "\n"
                           for i, a in enumerate(["7", "13", "30"])))
    return ["--model_name_or_path", model_dir, "--data_name", "Math_GSM8K", "--data_dir", str(tmp_path / "data"),
            "--generation_path", str(run)]


def test_check_prompt_type_is_ignored_and_split_is_honoured(tiny_dirs, tmp_path, capsys):
    argv = gsm_run(tmp_path, tiny_dirs["qwen2"], split="dev")
    status, err = run_main(check.main, argv, capsys)
    assert status == 2 and "Math_GSM8K/test.jsonl" in err  # the default split is test
    status, err = run_main(check.main, argv + ["--split", "dev", "--prompt_type", "qwen-base"], capsys)
    assert status == 0, err
    assert len(note_lines(err, "--prompt_type")) == 1
    metrics = json.loads((tmp_path / "run.merged.metrics.json").read_text())
    assert metrics["n"] == 3 and metrics["wrong"] == [1]


# ---- flags honoured -------------------------------------------------------------------------------

def test_file_pattern_names_the_hidden_files(tmp_path, capsys):
    syn = write_synthetic(str(tmp_path), subfolder=".", pattern="hs-{idx}.pt")
    argv = ["--jsonl_path", syn.jsonl, "--hidden_dir", syn.hidden_dir, "--layers", "0-4", "--no_plot"]
    status, out = run_main(hidden_config_ridge.main, argv, capsys, "out")
    assert status == 2  # the default pattern finds nothing
    status, out = run_main(hidden_config_ridge.main, argv + ["--file_pattern", "hs-{idx}.pt"], capsys, "out")
    assert status == 0
    assert out.strip().splitlines()[-1] == "3" and "records used: 40" in out
    assert run_main(hidden_config_ridge.main, argv + ["--file_pattern", "hs.pt"], capsys)[1].startswith(
        "error: --file_pattern 'hs.pt' must be a file name containing {idx}")


def test_the_hidden_files_are_read_from_the_dataset_folder(tmp_path, capsys):
    syn = write_synthetic(str(tmp_path), subfolder=".")
    status, out = run_main(hidden_config_ridge.main, ["--jsonl_path", syn.jsonl, "--hidden_dir", str(tmp_path),
                                                      "--layers", "0-4", "--no_plot"], capsys, "out")
    assert status == 0
    assert out.splitlines()[0] == f"hidden files: {tmp_path}/hidden_{{idx}}.pt" and out.strip().splitlines()[-1] == "3"


def test_collection_writes_hidden_files_beside_the_shards_with_the_release_name(tiny_dirs, toy_data, tmp_path,
                                                                                capsys):
    status, _ = run_main(transformer_inference_dp.main, collect_argv(tiny_dirs["qwen2"], toy_data, tmp_path / "o"),
                         capsys)
    assert status == 0
    folder = shard_dir(tmp_path / "o", tiny_dirs["qwen2"], toy_data)
    assert sorted(os.listdir(folder)) == sorted(
        [f"hidden_{i}.pt" for i in range(5)] + ["origin_temp0.7_maxlen12.shard0.jsonl",
                                                "origin_temp0.7_maxlen12.shard0.run.json"])


@pytest.mark.parametrize("where", ["cpu", "meta"])
def test_captured_rows_wait_on_the_hs_device(tiny_dirs, where):
    from conftest import load

    model, _ = load(tiny_dirs["qwen2"])
    capture = HiddenCapture(model, where)
    with capture.hooks():
        capture.arm([0])
        model(input_ids=torch.tensor([[1, 2, 3], [4, 5, 6]], device=model.device))
        rows = capture.collect()
    assert len(rows) == 1 and rows[0].device.type == where
    if where == "cpu":
        assert hidden_dict(rows, 4, model.config.hidden_size, torch.float32)[0][0]["step"].shape == (1, 32)


def test_hs_device_cpu_is_accepted_and_others_refused(tiny_dirs, toy_data, tmp_path, capsys):
    argv = collect_argv(tiny_dirs["qwen2"], toy_data, tmp_path / "o")
    assert run_main(transformer_inference_dp.main, argv + ["--hs_device", "cpu"], capsys)[0] == 0
    status, err = run_main(transformer_inference_dp.main, argv + ["--hs_device", "tpu"], capsys)
    assert status == 2 and "--hs_device" in err


# ---- a bare folder name, as the authors' README writes it --------------------------------------

def test_bare_folder_name_loads_the_folder_and_keeps_the_released_constants(tiny_dirs, tmp_path, monkeypatch):
    import shutil

    monkeypatch.chdir(tmp_path)
    shutil.copytree(tiny_dirs["qwen2"], "DeepSeek-R1-Distill-Qwen-1.5B")
    torch.save(torch.randn(32), "v.pt")
    data = write_dataset(tmp_path / "Data")
    args = build_parser("default", "").parse_args([
        "--model_name_or_path", "DeepSeek-R1-Distill-Qwen-1.5B", "--dataset_dir", data[0], "--dataset", data[1],
        "--steer_vector_path", "v.pt", "--steer_layer", "2"])
    job = make_job(args)
    assert job.model == "DeepSeek-R1-Distill-Qwen-1.5B" and os.path.isdir(job.model)
    assert job.model_name == "DeepSeek-R1-Distill-Qwen-1.5B"
    assert job.constants["q25c"] == 0.662293 and job.constants["low_val_2"] == -1.91


# ---- one writer per shard --------------------------------------------------------------------

def test_a_second_run_on_a_held_shard_stops_naming_it_and_the_pid(tiny_dirs, toy_data, tmp_path, capsys):
    argv = collect_argv(tiny_dirs["llama"], toy_data, tmp_path / "o")
    shard = shard_path(shard_dir(tmp_path / "o", tiny_dirs["llama"], toy_data), "origin_temp0.7_maxlen12", 0)
    lock = ShardLock(shard)  # another run, as far as the script can tell
    assert live_writer(shard) == str(os.getpid())
    status, err = run_main(transformer_inference_dp.main, argv, capsys)
    assert status == 2
    assert err.strip() == (f"error: {shard} is being written by another run (pid {os.getpid()}); "
                           "wait for it to finish or stop it, then run again to resume")
    assert read_records(shard) == []
    lock.release()
    assert live_writer(shard) is None
    assert run_main(transformer_inference_dp.main, argv, capsys)[0] == 0
    assert [r["idx"] for r in read_records(shard)] == [0, 1, 2, 3, 4]


HOLDER = """
import sys
sys.path.insert(0, {root!r})
import rebalance.stages.collect as runs
import transformer_inference_dp
real, calls = runs.save_hidden, [0]
def save_then_wait(hidden, folder, idx):
    calls[0] += 1
    if calls[0] == 1:  # the lock is held and one example is decoded: say so, wait for the test's word
        print("holding", flush=True)
        sys.stdin.readline()
    real(hidden, folder, idx)
runs.save_hidden = save_then_wait
transformer_inference_dp.main(sys.argv[1:])
"""


def start_run(argv):
    """A collection run in its own process, returned while it holds its shard lock mid-run: it
    stops at its first example until a line arrives on its stdin (`release`)."""
    proc = subprocess.Popen([sys.executable, "-c", HOLDER.format(root=ROOT), *argv], cwd=ROOT, text=True,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    for line in proc.stdout:
        if line.startswith("holding"):
            return proc
    raise AssertionError(f"the run ended before holding its lock mid-run (exit {proc.wait()})")


def release(proc):
    proc.stdin.write("go\n")
    proc.stdin.flush()


def test_concurrent_runs_one_finishes_the_other_exits_2(tiny_dirs, tmp_path):
    data = write_dataset(tmp_path / "data", problems=["What is 2 + 2?"] * 8)
    argv = collect_argv(tiny_dirs["qwen2"], data, tmp_path / "o", "--max_generated_tokens", "24")
    first = start_run(argv)  # mid-run, holding the lock, until released
    try:
        second = subprocess.run([sys.executable, "transformer_inference_dp.py", *argv], cwd=ROOT, text=True,
                                capture_output=True)
    finally:
        release(first)
    assert first.wait() == 0
    assert second.returncode == 2
    assert f"is being written by another run (pid {first.pid})" in second.stderr.strip().splitlines()[-1]
    shard = shard_path(shard_dir(tmp_path / "o", tiny_dirs["qwen2"], data), "origin_temp0.7_maxlen24", 0)
    assert sorted(r["idx"] for r in read_records(shard)) == list(range(8))


def test_kill_9_releases_the_lock_and_the_rerun_completes(tiny_dirs, tmp_path, capsys):
    data = write_dataset(tmp_path / "data", problems=["What is 2 + 2?"] * 8)
    argv = collect_argv(tiny_dirs["qwen3"], data, tmp_path / "o", "--max_generated_tokens", "24")
    folder = shard_dir(tmp_path / "o", tiny_dirs["qwen3"], data)
    shard = shard_path(folder, "origin_temp0.7_maxlen24", 0)
    run = start_run(argv)
    assert live_writer(shard) == str(run.pid)
    status, err = run_main(merge_shards.main, ["--dir", folder, "--base", "origin_temp0.7_maxlen24"], capsys)
    assert status == 0 and f"is still being written (pid {run.pid})" in err
    run.kill()
    run.wait()
    assert live_writer(shard) is None
    assert run_main(transformer_inference_dp.main, argv, capsys)[0] == 0
    assert sorted(r["idx"] for r in read_records(shard)) == list(range(8))
    status, err = run_main(merge_shards.main, ["--dir", folder, "--base", "origin_temp0.7_maxlen24"], capsys)
    assert status == 0 and "still being written" not in err


def test_an_unwritable_output_is_one_sentence_naming_the_folder(tmp_path):
    from rebalance.errors import UsageError

    (tmp_path / "file").write_text("")
    with pytest.raises(UsageError, match=r"^cannot write x\.shard0\.jsonl in .*file/out: .*\(check --output_path\)$"):
        ShardLock(str(tmp_path / "file" / "out" / "x.shard0.jsonl"))
