"""`--grader paper`, rule by rule (docs/method.md §11): what the authors' grader extracts, how it
normalises, how it compares, and the guard that keeps sympy from evaluating code. Each expected
value is read off the rule it names; `tests/data/release_verdicts.json` holds verdicts produced by
the authors' own grading code (outside this project) for the end-to-end check."""

import json
import os
import subprocess
import sys

import pytest

from rebalance.grading.paper_rules import (
    _as_number,
    _braced_fracs,
    _choice_letter,
    _python_syntax,
    _release_latex,
    _slash_to_frac,
    answers_equal,
    last_boxed,
    normalize,
    release_verdict,
    symbolic_equal,
    words_to_number,
)

HERE = os.path.dirname(os.path.abspath(__file__))


@pytest.mark.parametrize("response, boxed", [
    ("so \\boxed{3} then \\boxed{42}.", "42"),                      # the last box anywhere
    ("<think>maybe \\boxed{7}", "7"),                                # inside unfinished thinking too
    ("\\boxed{\\frac{1}{2}}", "\\frac{1}{2}"),                      # balanced braces
    ("\\boxed{12", "12"),                                            # unbalanced: the rest
    ("$\\boxed 5$ apples", "5"),                                     # brace-less: up to the next $
    ("\\boxed{:7.}", "7"),                                          # one leading ':' and one trailing '.'
    ("\\boxed{1\n  2}", "12"),                                      # newlines and the spaces after them
    ("the answer is 7", ""),                                         # nothing boxed: no answer
    ("and so it is boxed", ""),                                      # nothing after the last "boxed"
    ("\\boxed{5\u043a\u0438}", "5"),                                # the step tag "ки" goes first
    ("\\boxed{5/}", "5"), ("\\boxed{12.}", "12"),                     # one trailing '/' or '.'
])
def test_last_boxed(response, boxed):
    assert last_boxed(response) == boxed


@pytest.mark.parametrize("text, number", [
    ("two hundred five", "205"), ("twenty-one", "21"), ("three thousand two hundred", "3200"),
    ("007", "7"), ("two apples", "2"), ("x + 1", "x + 1"), ("thousand thousand", "thousand thousand"),
])
def test_number_words(text, number):
    assert words_to_number(text) == number


@pytest.mark.parametrize("raw, normal", [
    ("5\\text{ cm}", "5"),                 # a trailing \text{...} goes as a unit
    ("\\$18", "18"),                       # dollars
    ("50\\%", "50"),                       # percent signs
    ("x=5", "5"),                          # a variable's name
    ("y = 2x + 1", "2x+1"),                # a short left side goes, spaces go
    ("3+2j", "3+2i"),                      # j is i when there is no i
    ("\\dfrac{3}{4}", "\\frac{3}{4}"),     # dfrac / tfrac
    ("\\frac12", "\\frac{1}{2}"),          # braces added
    ("3/4", "\\frac{3}{4}"),               # plain slash between whole numbers
    ("2.0", "2"), ("2.50", "2.50"),        # only trailing zeros after a point that leave nothing
    ("sandwich", "swich"),                 # "and" is deleted, inside words too
    ("\\left(1,2\\right)", "(1,2)"),
    ("\\sqrt2", "\\sqrt{2}"),
    ("infinity", "\\infty"),
    ("March 3", "3"),                      # month names go
    (".5", "0.5"),
])
def test_normalize(raw, normal):
    assert normalize(raw) == normal


@pytest.mark.parametrize("pred, gold, equal", [
    ("7", "7", True),
    ("C", "C", True), ("the answer is (C)", "C", True), ("(C) 12", "C", True), ("D", "C", False),
    ("3, 1, 2", "1,2,3", True),                       # comma parts, in any order
    ("0.5", "50", True), ("50", "0.5", True),          # the gold also /100 and x100
    ("3.14159", "3.1416", True), ("3.14", "3.1416", False),  # within 1e-4 absolute
    ("1,000", "1000", True),
    ("(1,2)", "(1,2.0)", True), ("(1,2)", "(2,1)", False),   # tuples element by element, in order
    ("\\begin{pmatrix}1&2\\\\3&4\\end{pmatrix}", "\\begin{pmatrix}1&2.0\\\\3&4\\end{pmatrix}", True),
    ("\\begin{pmatrix}1&2\\\\3&4\\end{pmatrix}", "\\begin{pmatrix}1&2\\\\4&3\\end{pmatrix}", False),
    ("\\frac{1}{2}", "0.5", True),                    # sympy
    ("2\\sqrt{2}", "\\sqrt{8}", True),
    ("", "0", False),
])
def test_answers_equal(pred, gold, equal):
    assert answers_equal(normalize(pred), normalize(gold)) is equal


@pytest.mark.parametrize("pred, gold, equal", [
    ("a+b=3", "3-a=b", True), ("xy=4", "4-xy=0", True), ("a+b=3", "a-b=3", False),
])
def test_equations_compare_both_sides_either_sign(pred, gold, equal):
    """The equation rule, on answers as they reach it (normalize drops one- and two-letter left sides
    and single letters it reads as units, so few equations survive it)."""
    assert answers_equal(pred, gold) is equal


@pytest.mark.parametrize("text", ["exit()", "quit()", "__import__('os').system('true')", "open('x', 'w')",
                                  "globals()", "eval('1')", "[].__class__", "ValueError()"])
def test_code_is_never_evaluated(text):
    with pytest.raises(ValueError):
        _python_syntax(text)
    assert release_verdict(text, "1") is False  # and the process is still here to say so


def test_plain_arithmetic_is_read():
    assert _python_syntax("2*(3+4)") == 14


def test_exit_in_an_answer_does_not_end_the_process():
    """In a fresh interpreter, as the grading workers run: grading `exit()` returns a verdict."""
    code = ("from rebalance.grading.paper_rules import release_verdict; "
            "print('verdict', release_verdict('exit()', 'exit()'), release_verdict('quit()', '2'))")
    done = subprocess.run([sys.executable, "-c", code], cwd=os.path.dirname(HERE), capture_output=True, text=True)
    assert done.returncode == 0 and done.stdout.split() == ["verdict", "True", "False"]


def test_extraction_and_verdicts_of_the_authors_code():
    """Responses graded by the authors' `extract_answer`, `strip_string` and `math_equal` (their
    utils/, run outside this project with their pinned parsers; the verdicts are committed as data):
    the grading table's responses and this file's rule cases, 248 in all."""
    with open(os.path.join(HERE, "data", "release_verdicts.json"), encoding="utf-8") as handle:
        cases = json.load(handle)["cases"]
    assert len(cases) >= 200 and 50 < sum(c["verdict"] for c in cases) < len(cases) - 50
    assert [c["pred"] for c in cases] == [last_boxed(c["response"]) for c in cases]
    wrong = [(c["pred"], c["gold"], c["verdict"]) for c in cases
             if (release_verdict(c["pred"], c["gold"]) if c["pred"] else False) != c["verdict"]]
    assert wrong == []


@pytest.mark.parametrize("text, number", [
    ("zero", "0"), ("nineteen", "19"), ("Forty-Two", "42"), ("ninety nine", "99"),     # two words, no hundred: a + b
    ("five hundred", "500"), ("hundred", "100"), ("one hundred two three", "105"),        # four words: a*b + c + d
    ("one two three four five", "1"),                      # five words in a group: the first alone
    ("twelve thousand", "12000"), ("seven million", "7000000"),
    ("two thousand five hundred twenty one", "2521"),
    ("one million two hundred thousand", "1200000"),
    ("three billion five", "3000000005"),
    ("two billion three million four thousand five", "2003004005"),
    ("two point five", "2.5"), ("three point one four", "3.14"), ("point five", "0.5"),
    ("one point twenty", "1"), ("one point ten", "1"),     # a decimal that is not digit words adds nothing
    ("thousand million", "thousand million"),              # scale words out of order: left as written
    ("million billion", "million billion"),
    ("one billion thousand", "one billion thousand"),      # an empty group before a scale word
    ("two point five point", "two point five point"),      # two points
    ("", ""), ("a b c", "a b c"),
    ("thousand", "1000"),                                  # a scale word alone is its value
    ("two billion three thousand", "2000003000"),          # a group between two scale words
    ("one thousand two million", "one thousand two million"), ("thousand two million", "thousand two million"),
    ("million two billion", "million two billion"),        # (out of order, with words between)
])
def test_number_words_by_the_rules(text, number):
    assert words_to_number(text) == number


@pytest.mark.parametrize("pred, letter", [
    ("(B)", "B"), ("the answer is c.", "C"), ("A or E", "E"), (":D", "D"), ("\nb.\n", "B"), ("**A**", "A"),
    ("42.", None), ("3/", None), ("x/.", None), ("CD", None), ("_A", None), ("F", None),
])
def test_choice_letter(pred, letter):
    assert _choice_letter(pred) == letter


@pytest.mark.parametrize("raw, normal", [
    ("5.\n", "5"),
    ("\\begin{array}{cc}1&2\\end{array}", "\\begin{pmatrix}1&2\\end{pmatrix}"),
    ("\\begin{bmatrix}1\\end{bmatrix}", "\\begin{pmatrix}1\\end{pmatrix}"),
    ("\\tfrac{1}{2}", "\\frac{1}{2}"),
    ("x \\neq 3", "x\\ne3"), ("\\leq 5", "\\le5"), ("\\geq 5", "\\ge5"),
    ("\\{1,2\\}", "{1,2}"),
    ("10\\text{ apples}", "10"), ("\\text{yes}", "yes"),
    ("90^\\circ", "90"), ("90^{\\circ}", "90"), ("\\(5\\)", "5"),
    ("x\\in [0,1]", "[0,1]"), ("\\emptyset", "{}"), ("(-\\infty,\\infty)", "\\mathbb{R}"),
    ("inf", "\\infty"), ("-inf", "-\\infty"), ("\\mathbf{v}", "{v}"),
    ("2.000", "2"), ("2.0 cm", "2"), ("x = 3", "3"), ("abc = 3", "abc=3"),
    ("2j", "2i"), ("i+j", "i+j"), ("1 .5", "10.5"), ("{.5}", "{0.5}"),
    ("3 cm", "3"), ("7 apples", "7"), ("12 kgs", "12"),
    ("\\pi.", "\\pi"), ("X", "X"),                                 # one trailing '.' (only that)
    ("\\frac{1}\n{2}", "\\frac{1}{2}"), ("1\\!000", "1000"),        # newlines and thin spaces inside
    ("f(x=1)", "f(1)"), ("f(y=1)", "f(1)"), ("f(z=1)", "f(1)"),     # a variable's name anywhere
    ("y\\in[0,1]", "[0,1]"), ("z\\in[0,1]", "[0,1]"),
    ("x\\to0", "0"), ("y\\to0", "0"), ("z\\to0", "0"),
    ("50%", "50"), ("+\\inity", "\\infty"), ("7\\mbox{zz}", "7"),
    ("abc=3", "abc=3"),                                               # a left side of three letters stays
])
def test_normalize_line_by_line(raw, normal):
    assert normalize(raw) == normal


@pytest.mark.parametrize("text, braced", [
    ("\\frac1{72}", "\\frac{1}{72}"), ("\\frac{1}{2}", "\\frac{1}{2}"), ("\\frac1", "\\frac1"),
    ("a\\frac12+\\frac34", "a\\frac{1}{2}+\\frac{3}{4}"),
    ("\\frac{1}{2}+\\frac34", "\\frac{1}{2}+\\frac{3}{4}"),         # braced ones kept, the next still braced
])
def test_braced_fracs(text, braced):
    assert _braced_fracs(text) == braced


@pytest.mark.parametrize("text, frac", [
    ("3/4", "\\frac{3}{4}"), ("03/4", "03/4"), ("\\sqrt{2}/2", "\\frac{\\sqrt{2}}{2}"), ("1/2/3", "1/2/3"),
    ("x/2", "x/2"), ("1/-2", "\\frac{1}{-2}"),
    ("1/\\sqrt{2}", "\\frac{1}{\\sqrt{2}}"), ("3/04", "3/04"),
])
def test_slash_to_frac(text, frac):
    assert _slash_to_frac(text) == frac


@pytest.mark.parametrize("text", ["\\text{5}", "90^\\circ", "(1,2)", "[1,2]"])
def test_latex_the_release_could_not_read(text):
    """Text commands, degree signs and tuples: the release's LaTeX parser gave up on them (today's
    parser reads `(1,2)` as an interval and `\\text{5}` as 5)."""
    with pytest.raises(ValueError):
        _release_latex(text)


def test_latex_the_release_read():
    import sympy

    assert str(_release_latex("(x+1)")) == "x + 1"                          # brackets without a comma
    assert str(_release_latex("X,1")) == "{1, x}"                           # a comma without brackets
    assert sympy.simplify(_release_latex("4\\frac{2}{3}") - sympy.Rational(8, 3)) == 0  # a product


MAT = "\\begin{{pmatrix}}{}\\end{{pmatrix}}"


@pytest.mark.parametrize("pred, gold, equal", [
    ("Yes", "yes", True),                                            # strings, case ignored
    ("C)" * 5 + "12", "12", True), ("C)" * 6 + "12", "12", False),    # one prefix per level, five levels at most
    ("so a", "A", True), ("so b", "B", True), ("so c", "C", True), ("so d", "D", True), ("so e", "E", True),
    ("so d", "E", False),                                            # the last standalone letter, for each gold letter
    ("1,2", "1,2,3", False),                                         # comma parts: as many on both sides
    ("x=5", "5", True), ("5", "x=5", True),                          # a short left side on one side only goes
    ("abc=5", "5", False), ("5", "abc=5", False),                    # a longer one stays
    ("[1]", "1", True), ("(1)", "1", True),                          # one bracketed element is the element
    (MAT.format("50&1\\\\2&3"), MAT.format("0.5&1\\\\2&3"), True),      # matrices cell by cell, each with the
    (MAT.format("1\\\\2"), MAT.format("1"), False),                       # number rule (x100), as many rows
    ("C)" * 4 + MAT.format("50"), MAT.format("0.5"), True),           # cells count towards the depth limit
    ("C)" * 5 + MAT.format("50"), MAT.format("0.5"), False),
    ("\\begin{pmatrix}50" + "X" * 13, MAT.format("0.5"), False),      # a matrix has both delimiters
    ("C)" * 4 + "1,2", "2,1", True), ("C)" * 5 + "1,2", "2,1", False),  # every recursion counts a level:
    ("C)" * 4 + "(50,1)", "(0.5,1)", True), ("C)" * 5 + "(50,1)", "(0.5,1)", False),  # comma parts, tuples,
    ("C)" * 4 + "x=50", "0.5", True), ("C)" * 5 + "x=50", "0.5", False),  # a short left side on either side
    ("C)" * 4 + "50", "x=0.5", True), ("C)" * 5 + "50", "x=0.5", False),
    ("(50,1)", "(0.5,1)", True),                                     # tuples element by element (x100 too)
    (MAT.format("1\\2"), "{1,2}", True),                          # a set gold becomes a matrix, its commas
    (MAT.format("1\\\\2"), "{1,2}", False),                       # single backslashes (the release's quirk)
    ("[1", "1", False), ("[1]", "(1", False), ("(1)", "[1", False), ("(1", "[1", False),  # outer brackets go
    ("(1)", "1]", True), ("[X]", "X", True), ("[1]", "1]", True),  # only when both ends are brackets and
    ("AXB", "AB", False),                                            # the gold opens with no other kind
    ("a**2=4", "4=a**2", True),                                      # equations: lhs - rhs either sign
    ("xy=5", "5", True), ("5", "xy=5", True),                        # a left side of two letters goes
    ("(1,2)", "a1,2b", False),                                       # the tuple rule needs two tuples
    (MAT.format("50\\\\1"), MAT.format("0.5\\\\1"), True),            # matrix rows split at \\\\
])
def test_answers_equal_rule_by_rule(pred, gold, equal):
    assert answers_equal(pred, gold) is equal


@pytest.mark.parametrize("a, b, equal", [
    ("x=1", "1=x", True), ("x=1", "x=2", False),                    # equations: |lhs - rhs| on both sides
    ("\\sqrt{2}", "1.41421", True), ("\\sqrt{2}", "1.414", False),   # numerically within 1e-4
    ("\\begin{pmatrix}1.0001&2\\end{pmatrix}", "\\begin{pmatrix}1&2\\end{pmatrix}", True),  # matrices to 3 places
    ("\\begin{pmatrix}1.01&2\\end{pmatrix}", "\\begin{pmatrix}1&2\\end{pmatrix}", False),
    (MAT.format("1.4&2"), MAT.format("1.4001&2"), True),             # both sides rounded, to 3 places
    (MAT.format("1.0001\\\\2"), MAT.format("1\\\\2"), True),        # rows: the text as written parses
    ("x-1=0", "1-x=0", True), ("x-1=1", "2=x", True),
    ("\\\\frac{1}{2}", "0.5", True),                                 # escaped backslashes read as one
    ("x**2", "x^{2}", True),                                          # the same text from the two parsers
])
def test_symbolic_equal(a, b, equal):
    assert symbolic_equal(a, b) is equal


@pytest.mark.parametrize("text, number", [
    ("12.5", 12.5), ("1,000", 1000.0), ("50%", 0.5), ("50\\%", 0.5), ("x", None), ("x%", None), ("%", None),
])
def test_as_number(text, number):
    assert _as_number(text) == number
