"""Which reasoning steps count as overthinking or underthinking (docs/method.md §5): the reflection lexicon,
the confidence and variance quantiles, and the two labelling rules."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ..errors import UsageError

LEXICON = (
    "alternatively", "alternative", "another", "perhaps", "maybe", "wait", "but", "think again",
    "make sure", "just to ensure", "there any other", "some other", "should consider", "about whether",
    "if they have", "i was", "any errors", "or something", "let me check", "hold on", "double check",
    "however", "confusing", "differently", "careful", "sometimes", "alternate",
)
# words that also match their inflections; every other word matches only as written
INFLECTED = {
    "alternative": "alternative(?:s|ly)?", "alternatively": "alternative(?:s|ly)?",
    "confusing": "confus(?:e|es|ed|ing)", "differently": "different(?:ly)?", "careful": "careful(?:ly)?",
    "sometimes": "sometimes?", "alternate": "alternat(?:e|es|ed|ing)",
}


def _term_pattern(term: str) -> str:
    words = [INFLECTED.get(word, re.escape(word)) for word in term.split()]
    return r"\b" + r"[\s\-]+".join(words) + r"\b"


LEXICON_RE = re.compile("|".join(f"(?:{_term_pattern(term)})" for term in LEXICON))
_NORMALISE = str.maketrans({"\u2018": "'", "\u2019": "'", "\u201c": '"', "\u201d": '"', "\u2013": "-", "\u2014": "-"})


def has_reflection(text: str) -> bool:
    """Whether a step's text uses the reflection lexicon (whole words, any case, curly quotes and
    long dashes treated as plain ones)."""
    return LEXICON_RE.search(text.translate(_NORMALISE).lower()) is not None


def release_step_texts(response: str) -> list[str]:
    """The release's step texts, for records without `step_texts`: the response before the first
    `</think>`, split on runs of blank lines, stripped, empty pieces dropped."""
    thinking = response.split("</think>", 1)[0]
    return [piece.strip() for piece in re.split(r"\n\n+", thinking) if piece.strip()]


def step_variances(confidences: Sequence[float]) -> list[float]:
    """v_j = (c_j - c_{j-1})^2 / 4, and 0 for the first step (docs/method.md §2)."""
    return [0.0] + [(b - a) ** 2 / 4 for a, b in zip(confidences, confidences[1:])]


@dataclass(frozen=True)
class Quantiles:
    q25c: float
    q75c: float
    q25v: float
    q75v: float


def quantiles(all_confidences: Sequence[Sequence[float]], offset: int) -> Quantiles:
    """Percentiles 25/75 (numpy's linear rule) of every step confidence, and of the variances of
    consecutive steps j >= offset, over every record given."""
    conf = np.asarray([c for record in all_confidences for c in record], dtype=np.float64)
    start = max(offset, 1)
    var = np.asarray([v for record in all_confidences for v in step_variances(record)[start:]], dtype=np.float64)
    if conf.size == 0 or var.size == 0:
        raise UsageError("the jsonl holds too few step confidences to compute the quantiles "
                         "(need at least one record with two steps)")
    q25c, q75c = np.percentile(conf, [25, 75])
    q25v, q75v = np.percentile(var, [25, 75])
    return Quantiles(float(q25c), float(q75c), float(q25v), float(q75v))


POSITIVE, NEGATIVE, DROPPED = 1, 0, -1
LABEL_RULES = ("conf_mixed", "paper")


def label_step(rule: str, text: str, c: float, v: float, q: Quantiles) -> int:
    """POSITIVE (overthinking), NEGATIVE (underthinking / confident) or DROPPED.

    conf_mixed (the release): positive when the text reflects or c < q25c; negative when it does
    not reflect and c > q75c. paper: positive when c <= q25c and v >= q75v; negative when
    c >= q75c and v <= q25v.
    """
    if rule == "conf_mixed":
        reflects = has_reflection(text)
        if reflects or c < q.q25c:
            return POSITIVE
        return NEGATIVE if c > q.q75c else DROPPED
    if rule == "paper":
        if c <= q.q25c and v >= q.q75v:
            return POSITIVE
        return NEGATIVE if c >= q.q75c and v <= q.q25v else DROPPED
    raise ValueError(f"unknown label rule {rule!r}")


def record_labels(rule: str, confidences: Sequence[float], texts: Sequence[str] | None, response: str,
                  n_rows: int, offset: int, q: Quantiles) -> list[int]:
    """Labels of a record's rows: row j is judged by step j + offset."""
    texts = list(texts) if texts is not None else release_step_texts(response)
    variances = step_variances(confidences)
    labels = []
    for j in range(n_rows):
        step = j + offset
        text = texts[step] if step < len(texts) else ""
        labels.append(label_step(rule, text, confidences[step], variances[step], q))
    return labels
