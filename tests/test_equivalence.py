"""The comparison rules one by one, as hand-written tables: what is decided without symbolic maths,
the tolerance on numbers, and math-verify's verdict on LaTeX (the time-limited pool around it is
tested in test_grading.py)."""

import pytest

from rebalance.grading.equivalence import _as_math, _worker, math_verify_equal, numbers_equal, quick_judge


@pytest.mark.parametrize("pred, gold, family, expected", [
    (None, "5", "math", False),
    ("   ", "5", "math", False),
    (" c ", "C", "gpqa", True),
    ("B", "C", "gpqa", False),
    ("Yes", "yes ", "yesno", True),
    ("no", "yes", "yesno", False),
    ("5", "5.0", "math", True),
    ("1,000", "1000", "gsm8k", True),
    ("\\$18", "18", "gsm8k", True),
    ("\\frac{1}{2}", "0.5", "math", True),
    ("5", "6", "gsm8k", False),       # two plain numbers that differ: settled for GSM8K
    ("5", "6", "math", None),         # ... but math-verify may still read a MATH answer otherwise
    ("x = 5", "5", "math", None),     # not a plain number: math-verify decides
    ("5", "x", "gsm8k", None),
])
def test_quick_judge(pred, gold, family, expected):
    assert quick_judge(pred, gold, family) is expected


@pytest.mark.parametrize("pred, gold, expected", [
    (0.0, 0.0, True),
    (1e-12, 0.0, True),       # a zero gold gets an absolute tolerance of 1e-9
    (1e-8, 0.0, False),
    (1e-12, 1e-11, False),    # otherwise relative only: small numbers are not all equal
    (1 + 1e-10, 1.0, True),
    (1.001, 1.0, False),
    (-3.0, 3.0, False),
])
def test_numbers_equal(pred, gold, expected):
    assert numbers_equal(pred, gold) is expected


@pytest.mark.parametrize("text, expected", [(" $x$ ", "$x$"), ("x", "$x$"), ("$$x+1$$", "$x+1$"), ("X", "$X$")])
def test_as_math(text, expected):
    assert _as_math(text) == expected


@pytest.mark.parametrize("pred, gold, expected", [
    ("\\frac{1}{2}", "0.5", True),
    ("x^{2}", "x^2", True),
    ("\\sqrt{4}", "2", True),
    ("2", "3", False),
    ("", "3", False),          # nothing to parse on one side: not a match
])
def test_math_verify_equal(pred, gold, expected):
    assert math_verify_equal(pred, gold) is expected


def test_an_answer_the_library_cannot_handle_is_not_a_match():
    assert _worker((None, "1")) is False
    assert _worker(("\\frac{1}{2}", "1/2")) is True
