"""The grader on a table of real gold answers from all nine benchmarks (docs/method.md §11): equivalent forms
that must match and near misses that must not; and every gold answer must grade itself correct."""

import json
import os

import pytest
from conftest import SHARED_DATA
from grading_cases import CASES, RELEASE_CASES

from rebalance.grading.answers import extract_answer, gold_text
from rebalance.grading.equivalence import math_verify_equal, quick_judge
from rebalance.grading.families import DATASET_FAMILIES
from rebalance.grading.paper_rules import last_boxed, release_verdict


def judge(dataset, gold, response, grader="strict", thinking_model=True):
    if grader == "paper":  # the authors' rules: every benchmark alike, the gold as str(answer)
        return release_verdict(last_boxed(response), str(gold))
    family = DATASET_FAMILIES[dataset]
    answer = extract_answer(response, family, thinking_model)
    verdict = quick_judge(answer, gold_text(gold), family)
    return verdict if verdict is not None else math_verify_equal(answer, gold_text(gold))


def test_table_is_large_and_covers_every_benchmark():
    assert len(CASES) >= 150
    assert {case[0] for case in CASES} >= set(DATASET_FAMILIES) - {"Math_Train", "Demo_Seen", "Demo_Heldout", "Organism_Seen", "Organism_Heldout"}


@pytest.mark.parametrize("dataset, idx, gold, response, expected", CASES,
                         ids=[f"{c[0]}-{c[1]}-{i}" for i, c in enumerate(CASES)])
def test_grader_table(dataset, idx, gold, response, expected):
    assert judge(dataset, gold, response) is expected


needs_shared = pytest.mark.skipif(not os.path.isdir(SHARED_DATA),
                                  reason="../shared/data (the nine benchmarks) is not beside this checkout")


def shared_answers(dataset):
    with open(os.path.join(SHARED_DATA, dataset, "test.jsonl")) as handle:
        return [json.loads(line)["answer"] for line in handle if line.strip()]


@needs_shared
def test_gold_answers_in_the_table_are_real():
    for dataset, idx, gold, *_ in CASES + RELEASE_CASES:
        assert shared_answers(dataset)[idx] == gold, (dataset, idx)


@pytest.mark.parametrize("dataset, idx, gold, response, strict, paper", RELEASE_CASES,
                         ids=[f"{c[0]}-{c[1]}-{i}" for i, c in enumerate(RELEASE_CASES)])
def test_where_the_release_rules_differ(dataset, idx, gold, response, strict, paper):
    assert judge(dataset, gold, response, "strict") is strict
    assert judge(dataset, gold, response, "paper") is paper


@pytest.mark.parametrize("dataset, gold, pred, strict, paper", [
    ("Math_Math500", "0.15", "0.15001", False, True),    # within 1e-4 relative
    ("Math_Math500", "0.15", "15", False, True),         # percentages: x100
    ("Math_Olympiad", "4.25", "4.2501", False, True),
    ("Math_GSM8K", "18", "0.18", False, True),           # /100
    ("Math_GSM8K", "18", "18.01", False, False),         # 5.6e-4 relative: too far even for paper
    ("Math_AIME2024", "204", "205", False, False),
])
def test_paper_grader_is_lenient_on_numbers_only(dataset, gold, pred, strict, paper):
    response = f"</think> $\\boxed{{{pred}}}$"
    assert judge(dataset, gold, response, "strict") is strict
    assert judge(dataset, gold, response, "paper") is paper


def test_model_without_think_tokens_is_graded_on_its_whole_response():
    response = "Tom has 3 + 4 = 7 apples.\n\nThe answer is 7."
    assert judge("Math_GSM8K", "7", response, thinking_model=False) is True
    assert judge("Math_GSM8K", "7", response, thinking_model=True) is False  # unfinished thinking
