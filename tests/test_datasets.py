"""Converters from each benchmark's hub source to the project format, on local rows shaped like the
sources (the hub is unreachable here), compared field by field with ../shared/data where it has the
same benchmark; and the fetch command's file handling without the network."""

import json
import os
import re

import pytest
from conftest import SHARED_DATA

from rebalance.datasets import fetch
from rebalance.datasets.sources import (
    SOURCES,
    convert_gpqa,
    convert_gsm8k,
    convert_gsm8k_zh,
    convert_math_train,
    convert_olympiad,
    convert_plain,
    convert_strategyqa,
)
from rebalance.errors import UsageError

needs_shared = pytest.mark.skipif(not os.path.isdir(SHARED_DATA),
                                  reason="../shared/data (the nine benchmarks) is not beside this checkout")


def shared(name, count=3):
    with open(os.path.join(SHARED_DATA, name, "test.jsonl")) as handle:
        return [json.loads(next(handle)) for _ in range(count)]


def test_every_benchmark_and_the_seen_set_has_a_source():
    assert set(SOURCES) == {"Math_AIME2024", "Math_AIME2025", "Math_AMC23", "Math_GSM8K", "Math_Math500",
                            "Math_Olympiad", "Science_GPQA", "Commensense_StrategyQA", "Chinese_GSM8KZH", "Math_Train"}
    assert SOURCES["Science_GPQA"].gated and not SOURCES["Math_Math500"].gated


@needs_shared
def test_gsm8k_matches_the_distributed_copy():
    want = shared("Math_GSM8K")
    rows = [{"question": w["problem"], "answer": f"{w['cot']}\n#### {w['answer']}"} for w in want]
    assert convert_gsm8k(rows) == want


@needs_shared
def test_math500_aime_amc_keep_their_columns():
    for name in ("Math_Math500", "Math_AIME2024", "Math_AMC23"):
        want = shared(name)
        got = convert_plain([dict(w) for w in want])
        assert got == want, name
    assert shared("Math_AMC23", 1)[0]["answer"] == 27.0  # kept as the source's float
    aime25 = shared("Math_AIME2025")
    assert convert_plain([{"question": w["problem"], "answer": w["answer"]} for w in aime25],
                         problem="question") == aime25


@needs_shared
def test_strategyqa_builds_the_facts_prompt():
    want = shared("Commensense_StrategyQA")
    rows = []
    for w in want:
        facts = re.findall(r"^- (.*)$", w["problem"].split("\nQ: ")[0], flags=re.M)
        question = w["problem"].split("\nQ: ")[1][: -len("\nA:")]
        rows.append({"qid": "x", "question": question, "answer": w["answer"] == "Yes", "facts": facts})
    got = convert_strategyqa(rows)
    assert [(g["problem"], g["answer"]) for g in got] == [(w["problem"], w["answer"]) for w in want]
    assert got[0]["qid"] == "x"


@needs_shared
def test_gsm8k_zh_and_olympiad():
    zh = shared("Chinese_GSM8KZH")
    got = convert_gsm8k_zh([{"question_zh": w["problem"], "answer_only": w["answer"], "split": "train"} for w in zh])
    assert [(g["problem"], g["answer"]) for g in got] == [(w["problem"], w["answer"]) for w in zh]
    oly = shared("Math_Olympiad", 6)
    rows = [{"id": w["id"], "question": w["problem"], "final_answer": [w["answer"]], "language": "English"} for w in oly]
    got = convert_olympiad(rows)
    assert [(g["id"], g["problem"], g["answer"]) for g in got] == [(w["id"], w["problem"], w["answer"]) for w in oly]
    assert convert_olympiad([{"id": 1, "question": "q", "final_answer": ["$1$", "$2$"]}])[0]["answer"] == "$1$, $2$"


def gpqa_row(i):
    return {"Record ID": f"rec{i}", "Question": f"Question {i}?", "Correct Answer": f"right {i}",
            "Incorrect Answer 1": "wrong a", "Incorrect Answer 2": "wrong b", "Incorrect Answer 3": "wrong c"}


def test_gpqa_shuffles_with_a_fixed_seed_per_question():
    rows = [gpqa_row(i) for i in range(40)]
    first, again = convert_gpqa(rows), convert_gpqa(list(reversed(rows)))[::-1]
    assert first == again  # the order of a question's choices depends on the question alone
    for rec in first:
        letter = rec["answer"]
        assert re.search(rf"^{letter}\. right \d+$", rec["problem"], flags=re.M)
        assert rec["problem"].endswith("with \\boxed{} in the end.")
    letters = {rec["answer"] for rec in first}
    assert letters == set("ABCD")  # not always A, unlike the distributed copy


def test_math_train_draws_a_fixed_sample_with_boxed_answers():
    rows = [{"problem": f"p{i}", "solution": f"so $\\boxed{{\\frac{{{i}}}{{2}}}}$", "level": "Level 1",
             "type": "Algebra"} for i in range(800)]
    got = convert_math_train(rows)
    assert len(got) == 500 and got == convert_math_train(rows)
    assert got[0]["answer"] == f"\\frac{{{got[0]['source_index']}}}{{2}}"
    assert len({g["source_index"] for g in got}) == 500


def test_fetch_writes_each_dataset_and_reports_failures(tmp_path, monkeypatch, capsys):
    def fake_download(source, cache_dir=None):
        if source.gated:
            raise UsageError(f"{source.name}: {source.repo_id} is gated. Accept its terms")
        return [{"problem": "1+1?", "answer": "2", "solution": "$\\boxed{2}$"}]

    monkeypatch.setattr(fetch, "download_source", fake_download)
    with pytest.raises(UsageError, match="not fetched: Science_GPQA"):
        fetch.fetch_data(str(tmp_path), ["Math_Math500", "Science_GPQA", "Math_AIME2024"])
    out, err = capsys.readouterr()
    assert "Math_Math500: 1 records" in out and "is gated" in err
    rows = [json.loads(line) for line in open(tmp_path / "Math_Math500" / "test.jsonl")]
    assert rows == [{"problem": "1+1?", "answer": "2", "solution": "$\\boxed{2}$"}]
    with pytest.raises(UsageError, match="unknown dataset 'Nope'"):
        fetch.fetch_data(str(tmp_path), ["Nope"])


def test_parquet_shards_are_read_in_order(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    for shard, start in (("0010.parquet", 10), ("0002.parquet", 2)):
        pq.write_table(pa.table({"problem": [f"p{start}"], "answer": [str(start)]}), tmp_path / shard)
    rows = fetch.read_parquet_rows([str(tmp_path / "0010.parquet"), str(tmp_path / "0002.parquet")])
    assert [r["problem"] for r in rows] == ["p2", "p10"]


@pytest.mark.parametrize("error, message", [
    ("offline", "Math_GSM8K: cannot reach the Hugging Face hub for openai/gsm8k"),
    ("gated", "Math_GSM8K: openai/gsm8k is gated. Accept its terms on https://huggingface.co/datasets/openai/gsm8k"),
])
def test_hub_failures_are_one_sentence(monkeypatch, error, message):
    import huggingface_hub
    from huggingface_hub.errors import GatedRepoError, LocalEntryNotFoundError

    def failing(**kwargs):
        if error == "offline":
            raise LocalEntryNotFoundError("Got: ConnectError")
        raise GatedRepoError.__new__(GatedRepoError)  # its __init__ wants an HTTP response object

    monkeypatch.setattr(huggingface_hub, "snapshot_download", failing)
    with pytest.raises(UsageError, match=re.escape(message)):
        fetch.download_source(SOURCES["Math_GSM8K"])
