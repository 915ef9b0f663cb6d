"""Answer extraction rule by rule, as tables of input and expected output written by hand (the
benchmark cases with real gold answers are in test_grading_table.py)."""

import pytest

from rebalance.grading.answers import (
    Region,
    _strip_wrappers,
    answer_region,
    boxed_contents,
    extract_gsm8k,
    extract_letter,
    extract_yesno,
    gold_text,
    parse_number,
)


@pytest.mark.parametrize("text, expected", [
    ("\\boxed{5}", ["5"]),
    ("\\boxed 5 and then \\boxed{6}", ["5", "6"]),        # a brace-less box does not end the search
    ("\\boxed{\\frac{1}{2}} or \\fbox{3}", ["\\frac{1}{2}", "3"]),
    ("\\boxed {x}", ["x"]),
    ("\\boxed{unclosed", []),
    ("no box", []),
])
def test_boxed_contents(text, expected):
    assert boxed_contents(text) == expected


@pytest.mark.parametrize("response, thinking, expected", [
    ("<think>a</think>b</think>c", True, Region("c", True)),   # after the last </think>
    ("<think>a</think>b", False, Region("b", True)),
    ("plain answer", False, Region("plain answer", True)),
    ("plain answer", True, Region("plain answer", False)),     # a thinking model that never closed
    ("<think>still going", False, Region("<think>still going", False)),
])
def test_answer_region(response, thinking, expected):
    assert answer_region(response, thinking) == expected


@pytest.mark.parametrize("text, expected", [
    ("$\\text{C}$", "C"),
    ("  $$\\mathbf{42}$$ ", "42"),
    ("\\textbf {yes}", "yes"),
    ("X", "X"),
])
def test_wrappers_come_off(text, expected):
    assert _strip_wrappers(text) == expected


@pytest.mark.parametrize("text, expected", [
    ("18", 18.0),
    ("1,000", 1000.0),
    ("1{,}000", 1000.0),
    ("1\\!000", 1000.0),
    ("\\$18", 18.0),
    ("-\\$5", -5.0),
    ("-$5", -5.0),
    ("18 dollars", 18.0),
    ("-3.5", -3.5),
    ("\\frac{3}{4}", 0.75),
    ("\\frac {3} {4}", 0.75),
    ("\\dfrac{1}{2}", 0.5),
    ("-\\frac{3}{4}", -0.75),
    ("\\frac{3}{1}", 3.0),
    ("\\frac{3}{0}", None),
    ("5\\sqrt{2}", None),
    ("x = 5", None),
    ("50\\%", None),
    ("(1,8,19)", None),
])
def test_parse_number(text, expected):
    assert parse_number(text) == expected


@pytest.mark.parametrize("region, expected", [
    (Region("so it is 12, then 14.", True), "14"),
    (Region("the total is 1,000.", True), "1,000"),
    (Region("\\boxed{7} after 9", True), "7"),
    (Region("counting 3, 4", False), None),            # unfinished: a stray number is not an answer
    (Region("no numbers", True), None),
])
def test_extract_gsm8k(region, expected):
    assert extract_gsm8k(region) == expected


@pytest.mark.parametrize("region, expected", [
    (Region("\\boxed{C}", True), "C"),
    (Region("\\boxed{c}", True), "C"),
    (Region("\\boxed{(B)}", True), "B"),
    (Region("\\boxed{\\text{D. a cat}}", True), "D"),
    (Region("\\boxed{42}", True), "42"),                # not a letter: left for the comparison
    (Region("the answer is (b)", True), "B"),
    (Region("Answer: A, though option C tempted me", True), "C"),
    (Region("no letter here", True), None),
    (Region("the answer is (b)", False), None),
])
def test_extract_letter(region, expected):
    assert extract_letter(region) == expected


@pytest.mark.parametrize("region, expected", [
    (Region("\\boxed{No}. yes", True), "no"),            # the box wins over later words
    (Region("Yes, I think \\boxed{no}", True), "no"),    # ... and over earlier ones
    (Region("\\boxed{Yes, not no}", True), "yes"),       # in a box, the first word
    (Region("no... well, yes", True), "yes"),            # unboxed, the last word
    (Region("\\boxed{True}", True), "yes"),
    (Region("\\boxed{false}", True), "no"),
    (Region("\\boxed{maybe}", True), "maybe"),
    (Region("yes", False), None),
    (Region("nothing", True), None),
])
def test_extract_yesno(region, expected):
    assert extract_yesno(region) == expected


@pytest.mark.parametrize("answer, expected", [
    (True, "Yes"), (False, "No"), (27.0, "27"), (2.5, "2.5"), ([1.0, "a"], "1, a"), (" 7 ", "7"),
])
def test_gold_text(answer, expected):
    assert gold_text(answer) == expected
