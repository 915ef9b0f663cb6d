"""Grading a merged generation file (docs/method.md §11): join to the gold answers by idx, extract, judge,
count tokens, and reduce to the paper's numbers (accuracy, average tokens)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Sequence

from tqdm import tqdm

from ..errors import UsageError
from ..examples import Example, read_jsonl
from .answers import extract_answer, gold_text
from .equivalence import math_verify_all, quick_judge
from .paper_rules import last_boxed, release_worker


@dataclass
class GradedRecord:
    idx: int
    gold: str
    answers: list[str | None]
    correct: list[bool]
    tokens: list[int]
    think_tokens: list[int]
    closed: list[bool]
    hit_length: list[bool]

    def as_json(self) -> dict[str, Any]:
        return {"idx": self.idx, "extracted_answers": self.answers, "gold_answer": self.gold,
                "is_correct": self.correct, "num_tokens": self.tokens, "num_think_tokens": self.think_tokens,
                "think_closed": self.closed}


@dataclass
class Graded:
    records: list[GradedRecord]
    n: int                      # the dataset size: the accuracy denominator
    missing: list[int]
    unknown: list[int] = field(default_factory=list)  # idx in the file but not in the dataset
    timed_out: int = 0
    thinking_model: bool = True


def read_generations(path: str, n_sampling: int | None) -> list[tuple[int, list[str], dict[str, Any]]]:
    """(idx, responses, record) per line; the first record of a repeated idx wins, as in merging."""
    seen, out = set(), []
    for line_no, obj in read_jsonl(path):
        idx, responses = obj.get("idx"), obj.get("generated_responses")
        if not isinstance(idx, int):
            raise UsageError(f"{path}:{line_no}: record has no whole-number 'idx' (grading joins on it)")
        if isinstance(responses, str):
            responses = [responses]
        if not isinstance(responses, list) or not all(isinstance(r, str) for r in responses):
            raise UsageError(f"{path}:{line_no}: 'generated_responses' must be a list of strings")
        if idx in seen:
            continue
        seen.add(idx)
        out.append((idx, responses[:n_sampling] if n_sampling else responses, obj))
    return out


def think_text(response: str) -> str:
    """The thinking part: everything before `</think>` (the whole response when it never closed)."""
    return response.split("</think>", 1)[0]


def count_tokens(tokenizer, texts: Sequence[str], batch: int = 256) -> tuple[list[int], list[int]]:
    """Response tokens and thinking tokens of each text from one tokenization where that is exact:
    a response that never closed `</think>` thinks throughout, and when `</think>` is an added token
    of a fast tokenizer no token spans it, so the thinking tokens are those that start before it.
    Otherwise the thinking part is tokenized on its own."""
    totals: list[int] = []
    thinks: list[int] = []
    split_at_tag = getattr(tokenizer, "is_fast", False) and "</think>" in tokenizer.get_added_vocab()
    for start in range(0, len(texts), batch):
        chunk = list(texts[start:start + batch])
        encoded = tokenizer(chunk, add_special_tokens=False, return_offsets_mapping=split_at_tag)
        lengths = [len(ids) for ids in encoded["input_ids"]]
        cuts = [len(think_text(t)) for t in chunk]
        if split_at_tag:
            counts = [sum(1 for begin, _ in offsets if begin < cut) for offsets, cut in zip(encoded["offset_mapping"], cuts)]
        else:
            again = [i for i, (t, cut) in enumerate(zip(chunk, cuts)) if cut < len(t)]
            counts = list(lengths)
            if again:
                parts = tokenizer([chunk[i][:cuts[i]] for i in again], add_special_tokens=False)["input_ids"]
                for i, ids in zip(again, parts):
                    counts[i] = len(ids)
        totals.extend(lengths)
        thinks.extend(counts)
    return totals, thinks


def grade(path: str, examples: Sequence[Example], family: str, tokenizer, thinking_model: bool,
          grader: str = "strict", n_sampling: int | None = None, workers: int | None = None) -> Graded:
    """`strict`: the family's extraction, then plain values here and math-verify in workers.
    `paper`: the authors' rules (last box anywhere, their normaliser and comparisons) in workers,
    against the gold as they read it (`str(answer)`)."""
    paper = grader == "paper"
    gold = {ex.idx: (str(ex.answer) if paper else gold_text(ex.answer)) for ex in examples}
    rows = read_generations(path, n_sampling)
    unknown = [idx for idx, _, _ in rows if idx not in gold]
    rows = [row for row in rows if row[0] in gold]
    present = {idx for idx, _, _ in rows}
    graded, hard = [], []
    for idx, responses, obj in tqdm(rows, desc="extracting answers", unit="rec", leave=False):
        if paper:
            answers: list[str | None] = [last_boxed(r) for r in responses]
            verdicts: list[bool | None] = [None] * len(answers)
        else:
            answers = [extract_answer(r, family, thinking_model) for r in responses]
            verdicts = [quick_judge(a, gold[idx], family) for a in answers]
        for k, verdict in enumerate(verdicts):
            if verdict is None:
                hard.append((len(graded), k, answers[k], gold[idx]))
        finish = obj.get("finish_reason")
        graded.append(GradedRecord(idx, gold[idx], answers, verdicts, [], [], ["</think>" in r for r in responses],
                                   [finish == "length"] * len(responses)))
    unique = sorted({(a, g) for _, _, a, g in hard})
    verdict_of, timeouts = {}, []
    if unique:
        results, timeouts = math_verify_all(unique, workers, judge=release_worker if paper else None)
        verdict_of = dict(zip(unique, results))
    for row, k, answer, g in hard:
        graded[row].correct[k] = verdict_of[(answer, g)]
    texts = [r for _, responses, _ in rows for r in responses]
    totals, thinks = count_tokens(tokenizer, texts)
    pos = 0
    for rec in graded:
        width = len(rec.answers)
        rec.tokens, rec.think_tokens = totals[pos:pos + width], thinks[pos:pos + width]
        pos += width
    missing = sorted(set(gold) - present)
    return Graded(graded, len(examples), missing, unknown, len(timeouts), thinking_model)


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k from n samples with c correct (Chen et al., 2021)."""
    if n - c < k:
        return 1.0
    return 1.0 - math.prod(1.0 - k / i for i in range(n - c + 1, n + 1))


def metrics(graded: Graded, k: int = 1) -> dict[str, Any]:
    """Accuracy over the whole dataset (missing examples count as wrong), tokens over what exists."""
    recs = graded.records
    pass1 = sum(sum(rec.correct) / len(rec.correct) for rec in recs if rec.correct)
    passk = sum(pass_at_k(len(rec.correct), sum(rec.correct), k) for rec in recs if len(rec.correct) >= k)
    tokens = [t for rec in recs for t in rec.tokens]
    thinks = [t for rec in recs for t in rec.think_tokens]
    if graded.thinking_model:
        truncated = [not c for rec in recs for c in rec.closed]
    else:
        truncated = [h for rec in recs for h in rec.hit_length]
    mean = lambda xs: sum(xs) / len(xs) if xs else 0.0  # noqa: E731
    return {
        "n": graded.n,
        "graded": len(recs),
        "samples": sum(len(rec.answers) for rec in recs),
        "accuracy": 100.0 * pass1 / graded.n,
        "pass_at_k": {str(k): 100.0 * passk / graded.n},
        "avg_tokens": mean(tokens),
        "avg_think_tokens": mean(thinks),
        "truncated": mean([float(t) for t in truncated]),
        "missing": graded.missing,
        "wrong": [rec.idx for rec in recs if not any(rec.correct)],
        "unknown_idx": graded.unknown,
        "timed_out": graded.timed_out,
    }
