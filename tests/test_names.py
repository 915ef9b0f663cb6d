"""Every file name the suite writes, through the one module that owns them: format, parse, round trip."""

import os

import pytest

from rebalance.files import names
from rebalance.files.names import RunName, parse_stem, stem_of

STEMS = [
    # the release's names, exactly as its README writes them
    ("origin_temp0.7_maxlen16000", RunName("collection", 0.7, 16000)),
    ("steer_temp0.7_maxlen16000", RunName("dynamic", 0.7, 16000)),
    # this suite's other modes: never the same stem as a dynamic run
    ("baseline_temp0.7_maxlen16000", RunName("off", 0.7, 16000)),
    ("static-0.75_temp0.0_maxlen192", RunName("static", 0.0, 192, -0.75)),
    ("static-1_temp0.0_maxlen192", RunName("static", 0.0, 192, -1.0)),
    ("static0.25_temp0.0_maxlen192", RunName("static", 0.0, 192, 0.25)),
    ("static1e-05_temp1.0_maxlen8", RunName("static", 1.0, 8, 1e-05)),
    # run ids in front, underscores and all
    ("seed7_steer_temp0.7_maxlen512", RunName("dynamic", 0.7, 512, run_id="seed7")),
    ("my_run_static-0.5_temp0.7_maxlen10", RunName("static", 0.7, 10, -0.5, "my_run")),
    ("a_b_baseline_temp0.0_maxlen3", RunName("off", 0.0, 3, run_id="a_b")),
]


@pytest.mark.parametrize("stem, run", STEMS)
def test_stems_format_and_parse_both_ways(stem, run):
    assert run.stem == stem
    assert parse_stem(stem) == run


def test_modes_and_coefficients_never_share_a_stem():
    made = {names.steered_stem(0.7, 100, mode, coef) for mode in ("dynamic", "off")
            for coef in (-1.0, -0.5)} | {names.steered_stem(0.7, 100, "static", c) for c in (-1.0, -0.5, 0.5)}
    assert made == {"steer_temp0.7_maxlen100", "baseline_temp0.7_maxlen100", "static-1_temp0.7_maxlen100",
                    "static-0.5_temp0.7_maxlen100", "static0.5_temp0.7_maxlen100"}
    assert names.collection_stem(0.7, 100) == "origin_temp0.7_maxlen100"


@pytest.mark.parametrize("text", ["hidden_3", "steer_temp0.7", "report", "steer_tempX_maxlen5", ""])
def test_other_names_are_not_runs(text):
    assert parse_stem(text) is None


def test_every_file_of_a_run_leads_back_to_its_stem(tmp_path):
    stem = "static-0.5_temp0.0_maxlen192"
    shard = names.shard_path(str(tmp_path), stem, 3)
    merged = names.merged_path(str(tmp_path), stem)
    made = [shard, names.card_path(shard), names.lock_path(shard)[: -len(".lock")], merged, names.card_path(merged),
            names.graded_path(merged), names.metrics_path(merged), names.lengths_png_path(merged),
            *names.ridge_paths(merged)]
    assert [os.path.basename(p) for p in made] == [
        f"{stem}.shard3.jsonl", f"{stem}.shard3.run.json", f"{stem}.shard3.jsonl", f"{stem}.merged.jsonl",
        f"{stem}.merged.run.json", f"{stem}.merged.graded.jsonl", f"{stem}.merged.metrics.json",
        f"{stem}.merged.lengths.png", f"{stem}.merged.ridge_r2.csv", f"{stem}.merged.ridge_r2.png"]
    assert {stem_of(p) for p in made} == {stem}
    assert names.shard_rank(shard) == 3 and names.shard_rank(merged) is None
    assert names.merged_of_metrics(names.metrics_path(merged)) == merged


def test_shards_cards_and_hidden_files_are_found_in_rank_and_idx_order(tmp_path):
    stem = "steer_temp0.7_maxlen5"
    for rank in (10, 2, 0):
        open(names.shard_path(str(tmp_path), stem, rank), "w").close()
        open(names.card_path(names.shard_path(str(tmp_path), stem, rank)), "w").close()
    open(tmp_path / f"x{stem}.shard1.jsonl", "w").close()  # another run's stem: not one of these
    for idx in (11, 2, 0):
        open(names.hidden_path(str(tmp_path), idx), "w").close()
    assert [names.shard_rank(p) for p in names.shard_files(str(tmp_path), stem)] == [0, 2, 10]
    assert [os.path.basename(p) for p in names.card_files(str(tmp_path), stem)] == [
        f"{stem}.shard0.run.json", f"{stem}.shard2.run.json", f"{stem}.shard10.run.json"]
    assert [os.path.basename(p) for p in names.hidden_files(str(tmp_path))] == ["hidden_0.pt", "hidden_2.pt",
                                                                                "hidden_11.pt"]


def test_the_stem_command_prints_what_the_scripts_write(capsys):
    names.main(["static", "--coef", "-0.25", "--temperature", "0", "--maxlen", "192"])
    names.main(["dynamic", "--temperature", "0.7", "--maxlen", "16000", "--run_id", "r1"])
    assert capsys.readouterr().out.split() == ["static-0.25_temp0.0_maxlen192", "r1_steer_temp0.7_maxlen16000"]


def test_paths_keep_their_folder_and_odd_names_stay_whole():
    assert names.steered_stem(0.7, 5, "off", run_id="r") == "r_baseline_temp0.7_maxlen5"
    assert names.steered_stem(0.7, 5, "dynamic", coef=-1.0, run_id="r") == "r_steer_temp0.7_maxlen5"
    assert names.merged_path("out/m/d", "steer_temp0.7_maxlen5") == os.path.join("out/m/d", "steer_temp0.7_maxlen5.merged.jsonl")
    assert names.card_path("x/run") == "x/run.run.json" and names.card_path("x/run.jsonl") == "x/run.run.json"
    assert names.graded_path("a/b.txt") == "a/b.txt.graded.jsonl" and names.metrics_path("a/b.jsonl") == "a/b.metrics.json"
    assert names.hidden_path("h", 3, "layer_{idx}.pt") == os.path.join("h", "layer_3.pt")


@pytest.mark.parametrize("argv, stem", [
    (["off", "--temperature", "0.7", "--maxlen", "12"], "baseline_temp0.7_maxlen12"),
    (["collection", "--temperature", "0.7", "--maxlen", "12"], "origin_temp0.7_maxlen12"),
    (["static", "--coef", "-1", "--temperature", "0", "--maxlen", "3", "--run_id", "x"], "x_static-1_temp0.0_maxlen3"),
])
def test_the_stem_command_for_every_mode(argv, stem, capsys):
    names.main(argv)
    assert capsys.readouterr().out.strip() == stem


@pytest.mark.parametrize("argv, message", [
    (["static", "--temperature", "0", "--maxlen", "3"], "--coef is needed for a static run"),
    (["static", "--coef", "1", "--maxlen", "3"], "the following arguments are required: --temperature"),
    (["off", "--temperature", "0", "--maxlen", "x"], "argument --maxlen: invalid int value: 'x'"),
    (["fast", "--temperature", "0", "--maxlen", "3"], "argument mode: invalid choice: 'fast'"),
])
def test_the_stem_command_refuses_bad_flags(argv, message, capsys):
    with pytest.raises(SystemExit) as stopped:
        names.main(argv)
    assert stopped.value.code == 2 and message in capsys.readouterr().err
