"""check.py end to end: outputs beside the run, the baseline comparison, bad input, and every gold
answer of the nine benchmarks grading itself correct."""

import json
import os

import pytest
from conftest import SHARED_DATA
from test_run import run_main
from tiny import make_tokenizer

import check
from rebalance.examples import load_examples
from rebalance.grading.answers import gold_text
from rebalance.grading.families import DATASET_FAMILIES
from rebalance.grading.grade import grade, metrics


def write_lines(path, records):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return str(path)


@pytest.fixture
def gsm_like(tmp_path):
    answers = ["7", "12", "30", "22", "5", "9"]
    write_lines(tmp_path / "data" / "Math_GSM8K" / "test.jsonl",
                [{"problem": f"p{i}", "answer": a} for i, a in enumerate(answers)])
    long = "Let me think.\n\n" + "Wait, let me check again.\n\n" * 20 + "</think>\n\n"
    run = write_lines(tmp_path / "run" / "steer.merged.jsonl",
                      [{"idx": i, "generated_responses": [f"ok\n</think>\n\n$\\boxed{{{a}}}$"]}
                       for i, a in enumerate(answers) if i != 5])
    base = write_lines(tmp_path / "run" / "baseline.merged.jsonl",
                       [{"idx": i, "generated_responses": [long + f"$\\boxed{{{a if i < 3 else 0}}}$"]}
                        for i, a in enumerate(answers)])
    return str(tmp_path / "data"), run, base


def test_check_with_baseline_writes_metrics_graded_and_plot(tiny_dirs, gsm_like, capsys):
    data_dir, run, base = gsm_like
    status, out = run_main(check.main, ["--model_name_or_path", tiny_dirs["qwen2"], "--data_name", "Math_GSM8K",
                                        "--data_dir", data_dir, "--generation_path", run, "--baseline", base],
                           capsys, "out")
    assert status == 0, out
    stem = run[: -len(".jsonl")]
    with open(stem + ".metrics.json") as handle:
        m = json.load(handle)
    assert m["n"] == 6 and m["missing"] == [5] and m["accuracy"] == pytest.approx(500 / 6)
    with open(base[: -len(".jsonl")] + ".metrics.json") as handle:
        b = json.load(handle)
    assert b["accuracy"] == 50.0 and b["wrong"] == [3, 4, 5] and b["avg_tokens"] > 5 * m["avg_tokens"]
    graded = [json.loads(line) for line in open(stem + ".graded.jsonl")]
    # token counts from the pieces around the </think> token, each tokenized on its own
    from conftest import load

    _, tokenizer = load(tiny_dirs["qwen2"])
    count = lambda text: len(tokenizer(text, add_special_tokens=False)["input_ids"])  # noqa: E731
    think, answer = count("ok\n"), count("\n\n$\\boxed{7}$")
    assert think >= 1 and answer >= 3
    assert graded[0] == {"idx": 0, "extracted_answers": ["7"], "gold_answer": "7", "is_correct": [True],
                         "num_tokens": [think + 1 + answer], "num_think_tokens": [think], "think_closed": [True]}
    assert os.path.getsize(stem + ".lengths.png") > 1000
    delta = [line for line in out.splitlines() if line.startswith("delta")][0]
    assert "+33.33 pts" in delta and "%" in delta
    assert "missing idx (counted wrong): [5]" in out


@pytest.mark.parametrize("argv, message", [
    (["--data_name", "Math_Nope"], "--data_name 'Math_Nope' is not a known benchmark; known: "),
    (["--data_name", "Math_GSM8K", "--generation_path", "nowhere.jsonl"], "--generation_path: no such file"),
    (["--data_name", "Math_GSM8K", "--baseline", "nowhere.jsonl"], "--baseline: no such file"),
    (["--data_name", "Math_AIME2024"], "dataset file not found"),
])
def test_bad_input(tiny_dirs, gsm_like, capsys, argv, message):
    data_dir, run, _ = gsm_like
    full = ["--model_name_or_path", tiny_dirs["qwen2"], "--data_dir", data_dir, "--generation_path", run, *argv]
    status, err = run_main(check.main, full, capsys)
    assert status == 2 and message in err and "Traceback" not in err


def test_malformed_record_names_the_line(tiny_dirs, gsm_like, capsys):
    data_dir, run, _ = gsm_like
    with open(run, "a") as handle:
        handle.write('{"generated_responses": ["x"]}\n')
    status, err = run_main(check.main, ["--model_name_or_path", tiny_dirs["qwen2"], "--data_name", "Math_GSM8K",
                                        "--data_dir", data_dir, "--generation_path", run], capsys)
    assert status == 2 and "steer.merged.jsonl:6: record has no whole-number 'idx'" in err


BENCHMARKS = sorted(name for name in DATASET_FAMILIES if name not in ("Math_Train", "Demo_Seen", "Demo_Heldout", "Organism_Seen", "Organism_Heldout"))


@pytest.mark.skipif(not os.path.isdir(SHARED_DATA), reason="../shared/data (the nine benchmarks) is not beside this checkout")
def test_every_gold_answer_grades_itself_correct(tmp_path, capsys):
    """A response boxing the gold answer must be correct, for every record of every benchmark."""
    tokenizer = make_tokenizer()
    rates = {}
    for name in BENCHMARKS:
        examples = load_examples(SHARED_DATA, name)
        path = write_lines(tmp_path / f"{name}.jsonl", [
            {"idx": ex.idx, "generated_responses": [f"Done.\n</think>\n\n$\\boxed{{{gold_text(ex.answer).strip('$')}}}$"]}
            for ex in examples])
        m = metrics(grade(path, examples, DATASET_FAMILIES[name], tokenizer, True, workers=2))
        rates[name] = (m["accuracy"], m["wrong"])
    with capsys.disabled():
        print("\nself-grading rate per benchmark: " + ", ".join(f"{k} {v[0]:.1f}%" for k, v in rates.items()))
    assert {name: wrong for name, (_, wrong) in rates.items() if wrong} == {}
