"""Answer extraction per benchmark family (docs/method.md §11): what a response answered, before any
equivalence is judged.

The answer is looked for after `</think>` when the response closed its thinking. A response cut off
inside `<think>` counts only with a `\\boxed{}` answer: a stray number in unfinished reasoning is
not an answer.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

FAMILIES = ("math", "gsm8k", "gpqa", "yesno")  # how an answer is read; benchmarks map to one (families.py)


def boxed_contents(text: str) -> list[str]:
    """Every `\\boxed{...}` / `\\fbox{...}` body in order, nested braces balanced; also the
    brace-less `\\boxed 5`."""
    found = []
    for match in re.finditer(r"\\(?:boxed|fbox)\s*(\{)?", text):
        if match.group(1) is None:
            bare = re.match(r"[^\s$]+", text[match.end():])
            if bare:
                found.append(bare.group(0))
            continue
        depth, start = 1, match.end()
        for pos in range(start, len(text)):
            if text[pos] == "{":
                depth += 1
            elif text[pos] == "}":
                depth -= 1
                if depth == 0:
                    found.append(text[start:pos])
                    break
    return found


@dataclass(frozen=True)
class Region:
    text: str       # where the answer is looked for
    finished: bool  # False when the response stopped inside <think>


def answer_region(response: str, thinking_model: bool) -> Region:
    """After the last `</think>`; a thinking model's response without it is unfinished."""
    if "</think>" in response:
        return Region(response.rsplit("</think>", 1)[1], True)
    unfinished = thinking_model or "<think>" in response
    return Region(response, not unfinished)


def _strip_wrappers(text: str) -> str:
    text = text.strip().strip("$").strip()
    text = re.sub(r"\\(?:text|textbf|mathrm|mathbf)\s*\{([^{}]*)\}", r"\1", text)
    return text.strip()


NUMBER_RE = re.compile(r"-?\d{1,3}(?:,\d{3})+(?:\.\d+)?|-?\d+(?:\.\d+)?|-?\.\d+")


def parse_number(text: str) -> float | None:
    """The value of an answer that is one plain number, perhaps with a currency sign or unit words
    (`1,000`, `\\$18`, `18 dollars`, `-3.5`, `\\frac{3}{4}`); None for anything else (`5\\sqrt{2}`,
    `x = 5`, `50\\%`, `(1,8,19)`), which is left to math-verify."""
    text = _strip_wrappers(text).replace("\\$", "").replace("$", "").replace("\\!", "").replace("{,}", ",")
    frac = re.fullmatch(r"(-?)\\d?frac\{(\d+)\}\{(\d+)\}", text.replace(" ", ""))
    if frac and int(frac.group(3)) != 0:
        return (-1 if frac.group(1) else 1) * int(frac.group(2)) / int(frac.group(3))
    numbers = NUMBER_RE.findall(text)
    rest = NUMBER_RE.sub(" ", text)
    if len(numbers) != 1 or not re.fullmatch(r"[^\W\d]*(?:[\s.][^\W\d]*)*\.?", rest.strip()):
        return None
    return float(numbers[0].replace(",", ""))


def extract_math(region: Region) -> str | None:
    boxes = boxed_contents(region.text)
    return boxes[-1].strip() if boxes else None


def extract_gsm8k(region: Region) -> str | None:
    """The last box; else, in a finished response, the last number written."""
    boxed = extract_math(region)
    if boxed is not None:
        return boxed
    if not region.finished:
        return None
    numbers = NUMBER_RE.findall(region.text)
    return numbers[-1] if numbers else None


LETTER_RE = re.compile(r"(?:answer|choice|option)\s*(?:is|:)?\s*[:\-]?\s*\(?\**\s*([A-D])\b", re.IGNORECASE)


def extract_letter(region: Region) -> str | None:
    """A choice letter A-D: boxed (`\\boxed{C}`, `\\boxed{(C)}`, `\\boxed{\\text{C. ...}}`), else
    stated ("the answer is (C)", "Answer: C") in a finished response."""
    boxed = extract_math(region)
    if boxed is not None:
        match = re.match(r"\(?([A-Da-d])\)?(?:[.:)\s]|$)", _strip_wrappers(boxed))
        return match.group(1).upper() if match else _strip_wrappers(boxed)
    if not region.finished:
        return None
    stated = LETTER_RE.findall(region.text)
    return stated[-1].upper() if stated else None


YESNO_RE = re.compile(r"\b(yes|no|true|false)\b", re.IGNORECASE)


def extract_yesno(region: Region) -> str | None:
    """yes / no: boxed, else the last yes/no word of a finished response (true/false read as yes/no)."""
    boxed = extract_math(region)
    text = _strip_wrappers(boxed) if boxed is not None else (region.text if region.finished else "")
    words = YESNO_RE.findall(text)
    if not words:
        return _strip_wrappers(boxed) if boxed is not None else None
    word = (words[0] if boxed is not None else words[-1]).lower()
    return {"true": "yes", "false": "no"}.get(word, word)


EXTRACTORS = {"math": extract_math, "gsm8k": extract_gsm8k, "gpqa": extract_letter, "yesno": extract_yesno}


def extract_answer(response: str, family: str, thinking_model: bool) -> str | None:
    return EXTRACTORS[family](answer_region(response, thinking_model))


def gold_text(answer) -> str:
    """The gold answer as text: floats that are whole numbers lose their `.0` (AMC's 27.0 is 27)."""
    if isinstance(answer, bool):
        return "Yes" if answer else "No"
    if isinstance(answer, float) and answer.is_integer():
        return str(int(answer))
    if isinstance(answer, list):
        return ", ".join(gold_text(a) for a in answer)
    return str(answer).strip()
