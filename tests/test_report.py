"""The report on hand-made graded runs: table cells, the flags, the paper's numbers, the files."""

import csv
import json
import os

import pytest
from test_run import run_main

from rebalance.reports import report
from rebalance.reports.paper import PAPER

R1 = "DeepSeek-R1-Distill-Qwen-1.5B"


def metrics_file(root, model, bench, name, n, graded, correct, tokens, grader="strict"):
    folder = os.path.join(str(root), model, bench)
    os.makedirs(folder, exist_ok=True)
    data = {"n": n, "graded": graded, "accuracy": 100.0 * correct / n, "avg_tokens": tokens, "data_name": bench,
            "grader": grader, "missing": []}
    with open(os.path.join(folder, f"{name}.merged.metrics.json"), "w") as handle:
        json.dump(data, handle)


@pytest.fixture
def outputs(tmp_path):
    root = tmp_path / "outputs"
    # model 1, three benchmarks: one complete pair, one without a ReBalance run, one at another length
    metrics_file(root, R1, "Math_Math500", "baseline_temp0.7_maxlen16000", 500, 500, 400, 4500.0)
    metrics_file(root, R1, "Math_Math500", "steer_temp0.7_maxlen16000", 500, 500, 415, 3500.0)
    metrics_file(root, R1, "Math_GSM8K", "baseline_temp0.7_maxlen16000", 1319, 20, 15, 900.0)
    metrics_file(root, R1, "Math_AIME2024", "baseline_temp0.7_maxlen16000", 30, 30, 7, 12000.0)
    metrics_file(root, R1, "Math_AIME2024", "steer_temp0.7_maxlen8000", 30, 30, 9, 7000.0)
    # model 2, not in the paper; a partial run (--limit 10) on both sides
    metrics_file(root, "MyModel", "Math_Math500", "baseline_temp0.7_maxlen16000", 500, 10, 5, 800.0)
    metrics_file(root, "MyModel", "Math_Math500", "steer_temp0.7_maxlen16000", 500, 10, 6, 600.0)
    metrics_file(root, "MyModel", "Math_GSM8K", "baseline_temp0.0_maxlen16000", 1319, 10, 5, 300.0)
    metrics_file(root, "MyModel", "Math_GSM8K", "steer_temp0.7_maxlen16000", 1319, 12, 6, 200.0)
    metrics_file(root, "MyModel", "Math_AIME2024", "steer_temp0.7_maxlen16000", 30, 30, 3, 9000.0)
    return root


def rows_by_benchmark(folder):
    with open(os.path.join(folder, "report.csv")) as handle:
        return {row["benchmark"]: row for row in csv.DictReader(handle)}


def test_report_cells_flags_and_files(outputs, capsys):
    status, err = run_main(report.main, [str(outputs)], capsys)  # the output folder: both models
    assert status == 0, err
    r1 = rows_by_benchmark(outputs / R1)
    assert set(r1) == {"Math_Math500", "Math_GSM8K", "Math_AIME2024"}
    math = r1["Math_Math500"]
    assert (float(math["base_acc"]), float(math["steer_acc"])) == (80.0, 83.0)
    assert float(math["delta_pts"]) == pytest.approx(3.0)
    assert float(math["delta_tokens_pct"]) == pytest.approx(-100 / 4.5)
    assert (math["paper_base_acc"], math["paper_steer_acc"], math["paper_base_tokens"]) == ("79.6", "83", "4516")
    assert math["flags"] == ""
    assert r1["Math_GSM8K"]["flags"] == "no ReBalance run" and r1["Math_GSM8K"]["steer_acc"] == ""
    assert float(r1["Math_GSM8K"]["base_acc"]) == 75.0  # of the 20 graded, not of the 1319
    assert r1["Math_AIME2024"]["flags"] == "max length 16000 vs 8000"
    assert r1["Math_AIME2024"]["paper_base_acc"] == "23.3" and r1["Math_AIME2024"]["paper_base_tokens"] == ""

    mine = rows_by_benchmark(outputs / "MyModel")
    assert mine["Math_Math500"]["graded"] == "10" and float(mine["Math_Math500"]["steer_acc"]) == 60.0
    assert mine["Math_Math500"]["paper_base_acc"] == ""
    assert mine["Math_GSM8K"]["flags"] == "graded 10 vs 12 examples; temperature 0 vs 0.7"
    assert mine["Math_AIME2024"]["flags"] == "no baseline run"

    md = (outputs / R1 / "report.md").read_text()
    assert "| Math_Math500 | 500/500 | 80.0 | 83.0 | +3.0 | 4500 | 3500 | -22.2 | 79.6 -> 83.0 | 4516 -> 3474 |  |" in md
    assert "| Math_AIME2024 | 30/30 | 23.3 | 30.0 | +6.7 | 12000 | 7000 | -41.7 | 23.3 -> 33.3 |  | max length 16000 vs 8000 |" in md
    for model in (R1, "MyModel"):
        png = outputs / model / "report.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000


def test_paper_numbers_are_the_main_table():
    assert len(PAPER) == 9
    assert PAPER[(R1, "Math_Math500")].base_tokens == 4516
    assert PAPER[("Qwen3-14B", "Math_AIME2024")].steer_acc == 73.3


@pytest.mark.parametrize("case, expected", [
    ("missing", "no such folder"),
    ("empty", "no graded runs"),
    ("broken", "not a check.py metrics file"),
])
def test_bad_input_is_one_line(tmp_path, capsys, case, expected):
    folder = tmp_path / "out"
    if case != "missing":
        (folder / "M" / "Math_GSM8K").mkdir(parents=True)
    if case == "broken":
        (folder / "M" / "Math_GSM8K" / "steer_temp0.7_maxlen10.merged.metrics.json").write_text("{}")
    status, err = run_main(report.main, [str(folder / "M") if case == "broken" else str(folder)], capsys)
    assert status == 2 and expected in err and err.count("\n") == 1


def card(commit, **compared):
    base = {"kind": "steered", "model": R1, "dataset": "Math_Math500", "temperature": 0.7, "top_p": 0.95,
            "seed": 42, "max_new_tokens": 16000, "dtype": "bfloat16"}
    return {"compared": {**base, **compared}, "provenance": {"git_commit": commit}}


def test_report_names_the_code_and_what_differs_beyond_the_steering(tmp_path, capsys):
    root = tmp_path / "outputs"
    metrics_file(root, R1, "Math_Math500", "baseline_temp0.7_maxlen16000", 500, 500, 400, 4500.0)
    metrics_file(root, R1, "Math_Math500", "steer_temp0.7_maxlen16000", 500, 500, 415, 3500.0)
    folder = root / R1 / "Math_Math500"
    runs = {"baseline": card("a" * 40, mode="off", coef=None),
            "steer": card("b" * 40, mode="dynamic", coef=-1.0, vector_sha256="c" * 64, seed=7)}
    for name, run_card in runs.items():
        path = folder / f"{name}_temp0.7_maxlen16000.merged.metrics.json"
        data = json.loads(path.read_text())
        path.write_text(json.dumps({**data, "run_card": run_card}))
    status, err = run_main(report.main, [str(root / R1)], capsys)
    assert status == 0, err
    row = rows_by_benchmark(root / R1)["Math_Math500"]
    # mode, coefficient and vector differ by design; the seed does not, and neither should the code
    assert row["flags"] == "seed 42 vs 7; code aaaaaaa vs bbbbbbb"
    assert row["commit"] == "aaaaaaa vs bbbbbbb"
    md = (root / R1 / "report.md").read_text()
    assert "| +3.0 | 4500 | 3500 | -22.2 | 79.6 -> 83.0 | 4516 -> 3474 | seed 42 vs 7; code aaaaaaa vs bbbbbbb | " \
           "aaaaaaa vs bbbbbbb |" in md


def test_each_panel_names_its_steered_run(tmp_path):
    """A folder with a baseline, the dynamic run, a static run and a run id: every panel says which
    run it shows, and a static run is never drawn as ReBalance."""
    import matplotlib.pyplot as plt

    bench = "Organism_Heldout"
    for name, correct, tokens in (("baseline_temp0.0_maxlen192", 40, 80.0), ("steer_temp0.0_maxlen192", 41, 60.0),
                                  ("static-0.5_temp0.0_maxlen192", 30, 50.0), ("b2_steer_temp0.0_maxlen192", 42, 61.0)):
        metrics_file(tmp_path, "Org", bench, name, 48, 48, correct, tokens)
    _, rows = report.build_report(str(tmp_path / "Org"))
    fig = report.figure("Org", rows)
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    legends = [[t.get_text() for t in ax.get_legend().get_texts()] for ax in fig.axes if ax.get_legend()]
    plt.close(fig)
    assert sorted(titles) == sorted([f"{bench}: ReBalance", f"{bench}: b2 ReBalance", f"{bench}: static -0.5"])
    assert sorted(legends) == sorted([["baseline", "ReBalance"], ["baseline", "b2 ReBalance"],
                                      ["baseline", "static -0.5"]])
