"""`check.py --grader paper`: the authors' grading rules, reproduced so that numbers can be set
beside the paper's tables (docs/method.md §11 lists the rules and where they differ from the
default `strict` grader).

Their grader treats every benchmark alike: the answer is the text after the last "boxed" anywhere
in the response (inside an unfinished or closed `<think>` too; nothing boxed means no answer), both
answers are normalised by one long string routine, then compared as strings, as choice letters, as
comma-separated parts, as numbers within 1e-4 absolute (the gold also x100 and /100), and finally
symbolically with sympy. Its blind spots are kept on purpose: an answer stated without a box is
wrong, so is `\\boxed{True}` for a yes/no gold, and units inside a box are not always stripped.
"""

from __future__ import annotations

import builtins
import math
import re

# ---- extraction ---------------------------------------------------------------------------------


def last_boxed(response: str) -> str:
    """What follows the last "boxed": a balanced `{...}` body (the rest, when unbalanced), or for
    `\\boxed 5` the text up to the next `$`; then newlines and the spaces after them dropped, and one
    leading ':' and one trailing '.' and '/' removed. "" when nothing is boxed."""
    response = response.replace("\u043a\u0438", "")
    if "boxed" not in response:
        return ""
    tail = response.split("boxed")[-1]
    if not tail:
        return ""
    if tail[0] == "{":
        depth, body = 1, []
        for char in tail[1:]:
            depth += (char == "{") - (char == "}")
            if depth == 0:
                break
            body.append(char)
        answer = "".join(body)
    else:
        answer = tail.split("$")[0].strip()
    answer = re.sub(r"\n\s*", "", answer)
    if answer.startswith(":"):
        answer = answer[1:]
    for end in (".", "/"):
        if answer.endswith(end):
            answer = answer[:-1]
    return answer


class _Unreadable(ValueError):
    """Text one of the release's readers does not read: the number-word reader leaves it as written,
    the expression parsers move on to their next candidate. Raised bare, as no one sees a message."""


# ---- number words ("two hundred five" -> 205), as the release's normaliser reads them -----------

_UNITS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve",
          "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen"]
_WORDS: dict[str, int] = {w: i for i, w in enumerate(_UNITS)}
_WORDS.update({w: 10 * (i + 2) for i, w in enumerate(["twenty", "thirty", "forty", "fifty", "sixty", "seventy",
                                                      "eighty", "ninety"])})
_WORDS.update({"hundred": 100, "thousand": 1000, "million": 10**6, "billion": 10**9})
_SCALES = ("billion", "million", "thousand")


def _group(words: list[str]) -> int:
    """A group's value by the release's rule: a*b+c+d for four words, a*b+c for three, a*b
    (with hundred) or a+b for two, else the first word alone."""
    values = [_WORDS[w] for w in words]  # an empty group is an IndexError below: the text stays
    if len(values) == 4:
        return values[0] * values[1] + values[2] + values[3]
    if len(values) == 3:
        return values[0] * values[1] + values[2]
    if len(values) == 2:
        return values[0] * values[1] if 100 in values else values[0] + values[1]
    return values[0]


def words_to_number(text: str) -> str:
    """The number written in words anywhere in `text`, as the release converts it before comparing
    (other words are ignored: "two apples" is 2); `text` unchanged when there is none or it is
    malformed. A string of digits comes back as an int ("007" -> "7")."""
    try:
        return str(_words_value(text))
    except (ValueError, IndexError, KeyError):
        return text


def _words_value(text: str) -> int | float:
    text = text.replace("-", " ").lower()
    if text.isdigit():
        return int(text)
    found = [w for w in text.split() if w in _WORDS or w == "point"]
    if not found or any(found.count(w) > 1 for w in (*_SCALES, "point")):
        raise _Unreadable
    at = found.index("point") if "point" in found else len(found)
    found, decimals = found[:at], found[at + 1:]
    # where each scale word stands (-1: absent); one out of order ("thousand two million") needs no
    # check of its own: the group before it would start after it, and `_group` refuses an empty group
    b, m, t = (found.index(w) if w in found else -1 for w in _SCALES)
    if len(found) == 1:
        total: int | float = _WORDS[found[0]]  # a scale word alone is its value ("thousand": 1000)
    else:
        # each scale multiplies the group between the previous scale word and itself
        total = sum(_group(found[start + 1:end]) * scale
                    for start, end, scale in ((-1, b, 10**9), (b, m, 10**6), (max(b, m), t, 1000)) if end > -1)
        last = max(b, m, t)
        if last < len(found) - 1:
            total += _group(found[last + 1:])
    if decimals:
        digits = [_WORDS[w] for w in decimals if w in _UNITS[:10]]
        total += float("0." + "".join(map(str, digits))) if len(digits) == len(decimals) else 0
    return total


# ---- the normaliser ------------------------------------------------------------------------------

_UNIT_WORDS = [
    "east", "degree", "mph", "kmph", "ft", "m sqaure", " m east", "sq m", "deg", "mile", "q .", "monkey", "prime",
    "ratio", "profit of rs", "rd", "o", "gm", "p . m", "lb", "tile", "per", "dm", "lt", "gain", "ab", "way", "west",
    "a .", "b .", "c .", "d .", "e .", "f .", "g .", "h .", "t", "a", "h", "no change", "men", "soldier", "pie", "bc",
    "excess", "st", "inches", "noon", "percent", "by", "gal", "kmh", "c", "acre", "rise", "a . m", "th", "π r 2",
    "sq", "mark", "l", "toy", "coin", "sq . m", "gallon", "° f", "profit", "minw", "yr", "women", "feet", "am",
    "pm", "hr", "cu cm", "square", "v â € ™", "are", "rupee", "rounds", "cubic", "cc", "mtr", "s", "ohm", "number",
    "kmph", "day", "hour", "minute", "min", "second", "man", "woman", "sec", "cube", "mt", "sq inch", "mp",
    "∏ cm ³", "hectare", "more", "sec", "unit", "cu . m", "cm 2", "rs .", "rs", "kg", "g", "month", "km", "m", "cm",
    "mm", "apple", "liter", "loss", "yard", "pure", "year", "increase", "decrease", "d", "less", "Surface", "litre",
    "pi sq m", "s .", "metre", "meter", "inch",
]
_UNIT_WORDS += [w + "s" for w in _UNIT_WORDS]  # plurals follow the whole list, as in the release
_UNIT_RES = [re.compile(r"(^|\W)" + w + r"($|\W)") for w in _UNIT_WORDS]  # unescaped, as there: "q ." is a regex
_MONTHS = re.compile(r"\b(January|February|March|April|May|June|July|August|September|October|November|December)\b",
                     re.IGNORECASE)


def _braced_fracs(text: str) -> str:
    """`\\frac12` -> `\\frac{1}{2}`, `\\frac1{72}` -> `\\frac{1}{72}`; a `\\frac` with under two
    characters after it leaves the whole text as it was."""
    head, *rest = text.split("\\frac")
    out = head
    for part in rest:
        out += "\\frac"
        if part.startswith("{"):
            out += part
            continue
        if len(part) < 2:
            return text
        a, b, tail = part[0], part[1], part[2:]
        out += "{" + a + "}" + ("{" + b + "}" + tail if b != "{" else b + tail)
    return out


def _slash_to_frac(text: str) -> str:
    """`3/4` -> `\\frac{3}{4}` when both sides are whole numbers written plainly (or hold a sqrt)."""
    parts = text.split("/")
    if len(parts) != 2:
        return text
    a, b = parts
    try:
        a2 = a if "sqrt" in a else str(int(a))
        b2 = b if "sqrt" in b else str(int(b))
    except ValueError:
        return text
    if f"{a2}/{b2}" != text:
        return text
    return "\\frac{" + a2 + "}{" + b2 + "}"


def normalize(answer: str) -> str:
    """The release's answer normaliser, step for step (its quirks included: "and" is deleted inside
    words, single letters such as "a", "c", "m", "s" are dropped as units, `\\text{...}` at the end
    goes first as a unit, j becomes i when there is no i)."""
    s = str(answer).strip().replace("\n", "").rstrip(".").replace("\\!", "")
    s = re.sub(r"\\begin\{array\}\{.*?\}", r"\\begin{pmatrix}", s)
    s = re.sub(r"\\end\{array\}", r"\\end{pmatrix}", s).replace("bmatrix", "pmatrix")
    s = s.replace("tfrac", "frac").replace("dfrac", "frac")
    s = s.replace("\\neq", "\\ne").replace("\\leq", "\\le").replace("\\geq", "\\ge")
    s = s.replace("\\left", "").replace("\\right", "").replace("\\{", "{").replace("\\}", "}")
    without_unit = re.sub(r"\\text{.*?}$", "", s).strip()
    if without_unit not in ("", s):
        s = without_unit
    for unit in _UNIT_RES:
        stripped = unit.sub(r"\1\2", s)
        if stripped != "":
            s = stripped
    s = s.replace("^{\\circ}", "").replace("^\\circ", "")
    s = s.replace("\\$", "").replace("$", "").replace("\\(", "").replace("\\)", "")
    s = words_to_number(s)
    s = re.sub(r"\\text\{(.*?)\}", r"\1", s)
    for key in ("x=", "y=", "z=", "x\\in", "y\\in", "z\\in", "x\\to", "y\\to", "z\\to"):
        s = s.replace(key, "")
    s = s.replace("\\emptyset", r"{}").replace("(-\\infty,\\infty)", "\\mathbb{R}")
    s = s.replace("\\%", "").replace("%", "")
    s = _MONTHS.sub("", s)
    s = s.replace(" .", " 0.").replace("{.", "{0.")
    # (the release then strips brackets around an alphanumeric string, which never fires: brackets
    # are not alphanumeric)
    s = s.replace("infinity", "\\infty")
    if "\\infty" not in s:
        s = s.replace("inf", "\\infty")
    s = s.replace("+\\inity", "\\infty").replace("and", "").replace("\\mathbf", "")
    s = re.sub(r"\\mbox{.*?}", "", s)
    if "j" in s and "i" not in s:
        s = s.replace("j", "i")
    s = re.sub(r"(\d+)\.0*([^\d])", r"\1\2", s)
    s = re.sub(r"(\d+)\.0*$", r"\1", s)
    if not s:
        return s
    if s[0] == ".":
        s = "0" + s
    if len(s.split("=")) == 2 and len(s.split("=")[0]) <= 2:
        s = s.split("=")[1]
    s = re.sub(r"\\sqrt(\w+)", r"\\sqrt{\1}", s).replace(" ", "")
    return _slash_to_frac(_braced_fracs(s))


# ---- comparison ---------------------------------------------------------------------------------

_CHOICE_PREFIXES = [re.compile(p) for letter in "ABCDE" for p in
                    (rf"^\({letter}\)", rf"^{letter}\.", rf"^{letter}\)", rf"^\*\*{letter}\*\*", rf"^{letter}:")]
_MAX_DEPTH = 5


def _choice_letter(pred: str) -> str | None:
    """The last standalone letter A-E in the prediction, case ignored; None when there is none.
    (The release also stripped dots, slashes, colons and spaces and fell back to the stripped text,
    which can only equal a letter when the search below already found it.)"""
    letters = re.findall(r"\b([A-E])\b", pred.upper())
    return letters[-1] if letters else None


def _as_number(text: str) -> float | None:
    text = text.replace(",", "")
    try:
        return float(text)
    except ValueError:
        pass
    if text.endswith("%"):
        text = text[:-1].removesuffix("\\")
        try:
            return float(text) / 100
        except ValueError:
            return None
    return None


def _near(a: float, b: float) -> bool:
    return math.isclose(b, a, abs_tol=1e-4)


def answers_equal(pred: str, ref: str, depth: int = 0) -> bool:
    """The release's equivalence of two normalised answers (string, choice letter, unordered
    comma parts, number within 1e-4 absolute with the gold also x100 and /100, tuples element by
    element, matrices, equations, then sympy)."""
    if depth > _MAX_DEPTH:
        return False
    if pred.strip().lower() == ref.strip().lower():
        return True
    if ref in ("A", "B", "C", "D", "E") and _choice_letter(pred) == ref:
        return True
    for prefix in _CHOICE_PREFIXES:
        if prefix.match(pred) and answers_equal(prefix.sub("", pred, count=1).strip(), ref, depth + 1):
            return True
    if "," in pred and "," in ref:
        p_parts = sorted(part.strip() for part in pred.split(","))
        r_parts = sorted(part.strip() for part in ref.split(","))
        if len(p_parts) == len(r_parts) and all(answers_equal(a, b, depth + 1) for a, b in zip(p_parts, r_parts)):
            return True
    p_num, r_num = _as_number(pred), _as_number(ref)
    if p_num is not None and r_num is not None:
        return any(_near(p_num, r) for r in (r_num / 100, r_num, r_num * 100))
    if not pred:
        return False
    ref, pred = ref.strip(), pred.strip()
    if "pmatrix" in pred and "pmatrix" not in ref:
        ref = ", ".join("\\begin{pmatrix}" + m.strip("{}").replace(",", "\\") + "\\end{pmatrix}"
                        for m in re.findall(r"\{.*,.*\}", ref))
    p_str, r_str = pred, ref
    if ((pred.startswith("[") and pred.endswith("]") and not ref.startswith("("))
            or (pred.startswith("(") and pred.endswith(")") and not ref.startswith("["))):
        p_str, r_str = p_str.strip("[]()"), r_str.strip("[]()")
    for bracket in "{}()":
        p_str, r_str = p_str.replace(bracket, ""), r_str.replace(bracket, "")
    if p_str.lower() == r_str.lower():
        return True
    tuple_re = re.compile(r"(\(|\[).+(\)|\])")
    if tuple_re.match(pred) and tuple_re.match(ref):
        p_parts, r_parts = pred[1:-1].split(","), ref[1:-1].split(",")
        if len(p_parts) == len(r_parts) and all(answers_equal(a, b, depth + 1) for a, b in zip(p_parts, r_parts)):
            return True
    if _matrices_equal(pred, ref, depth):
        return True
    if pred.count("=") == 1 and ref.count("=") == 1:
        p_l, p_r = pred.split("=")
        r_l, r_r = ref.split("=")
        p_eq, r_eq = f"{p_l.strip()} - ({p_r.strip()})", f"{r_l.strip()} - ({r_r.strip()})"
        if symbolic_equal(p_eq, r_eq) or symbolic_equal(f"-({p_eq})", r_eq):
            return True
    elif pred.count("=") == 1 and len(pred.split("=")[0].strip()) <= 2 and "=" not in ref:
        if answers_equal(pred.split("=")[1], ref, depth + 1):
            return True
    elif ref.count("=") == 1 and len(ref.split("=")[0].strip()) <= 2 and "=" not in pred:
        if answers_equal(pred, ref.split("=")[1], depth + 1):
            return True
    return symbolic_equal(pred, ref)


_MATRIX_HEADS = ("\\begin{pmatrix}", "\\begin{bmatrix}")
_MATRIX_TAILS = ("\\end{pmatrix}", "\\end{bmatrix}")


def _matrices_equal(pred: str, ref: str, depth: int) -> bool:
    if not all(x.startswith(_MATRIX_HEADS) and x.endswith(_MATRIX_TAILS) for x in (pred, ref)):
        return False
    rows = lambda m: [r.strip() for r in m[len(_MATRIX_HEADS[0]):-len(_MATRIX_TAILS[0])].split("\\\\")  # noqa: E731
                      if r.strip()]
    p_rows, r_rows = rows(pred), rows(ref)
    if len(p_rows) != len(r_rows):
        return False
    for p_row, r_row in zip(p_rows, r_rows):
        p_cells, r_cells = p_row.split("&"), r_row.split("&")
        if len(p_cells) != len(r_cells) or not all(answers_equal(a, b, depth + 1) for a, b in zip(p_cells, r_cells)):
            return False
    return True


_PLAIN_EXPRESSION = re.compile(r"[\w\s.+\-*/^()\[\]{}=,]*")
_ARITHMETIC_BUILTINS = {"abs", "min", "max", "pow", "round", "sum", "int", "float", "complex", "divmod"}
_UNSAFE_NAMES = set(dir(builtins)) - _ARITHMETIC_BUILTINS


def _python_syntax(text: str):
    """sympy's Python-syntax parser, which evaluates what it reads: only plain arithmetic gets there,
    with no quotes, no dunders and no builtin but the arithmetic ones (`exit()` would end the process)."""
    from sympy.parsing.sympy_parser import parse_expr

    names = set(re.findall(r"[A-Za-z_]\w*", text))
    if "__" in text or not _PLAIN_EXPRESSION.fullmatch(text) or names & _UNSAFE_NAMES:
        raise _Unreadable
    return parse_expr(text)


def _release_latex(text: str):
    """`latex2sympy2_extended` held to what the release's older LaTeX parser read: that parser
    rejected text commands, degree signs and tuples, and read `4\\frac{2}{3}` as a product."""
    from latex2sympy2_extended import latex2sympy

    if "\\text" in text or "\\circ" in text or (text[:1] in "([" and "," in text):
        raise _Unreadable
    return latex2sympy(re.sub(r"(\d)\s*\\frac", r"\1 \\cdot \\frac", text))


def _parse(text: str):
    """A sympy expression, as the release tries them: Python syntax first, then LaTeX; the text itself
    when neither parses. (The release also tried sympy's own LaTeX parser first, which its pinned
    ANTLR runtime cannot load, so it never succeeded.)"""
    for parser in (_python_syntax, _release_latex):
        for candidate in (text.replace("\\\\", "\\"), text):
            try:
                return parser(candidate)
            except Exception:  # noqa: BLE001 - anything unparsable goes on to the next parser
                continue
    return text


def symbolic_equal(a: str, b: str) -> bool:
    from sympy import N, simplify

    x, y = _parse(a), _parse(b)
    checks = (
        lambda: str(x) == str(y) or x == y,
        lambda: x.equals(y) or simplify(x - y) == 0,
        lambda: (abs(x.lhs - x.rhs)).equals(abs(y.lhs - y.rhs)),
        lambda: _near(float(N(x)), float(N(y))),
        lambda: x.shape == y.shape and x.applyfunc(lambda v: round(v, 3)).equals(y.applyfunc(lambda v: round(v, 3))),
    )
    for check in checks:
        try:
            if check():
                return True
        except Exception:  # noqa: BLE001 - a check that does not apply to these objects is skipped
            continue
    return False


def release_verdict(pred: str, gold: str) -> bool:
    """The release's verdict on an extracted answer against the gold answer's text."""
    return answers_equal(normalize(pred), normalize(gold))


def release_worker(pair: tuple[str, str]) -> bool:
    """`release_verdict` for the worker pool (each comparison there runs under a time limit)."""
    try:
        return release_verdict(*pair)
    except Exception:  # noqa: BLE001 - an answer the rules cannot handle is not a match
        return False
