"""The nine benchmarks and the seen set, from their public Hugging Face dataset repositories, in the
project's format (docs/method.md §1): `problem`, `answer`, and the source's other fields.

Each source is read from the hub's parquet conversion of the dataset (`refs/convert/parquet`,
`{config}/{split}/*.parquet`), so one reader serves every repository whatever its own file layout.
Repository ids, configs, splits and columns are those of the dataset cards named below. Converters
are pure functions from source rows to records, tested on local rows shaped like each source.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from typing import Any, Callable, Iterable

from ..grading.answers import boxed_contents

SourceRow = dict[str, Any]

GPQA_INSTRUCTION = ("Please reason step-by-step and put your choice letter without any other text with "
                    "\\boxed{} in the end.")
SEEN_SIZE, SEEN_SEED = 500, 42


def _rest(row: SourceRow, used: Iterable[str]) -> SourceRow:
    """The source's other fields, kept beside problem and answer."""
    used = set(used)
    return {k: v for k, v in row.items() if k not in used}


def convert_plain(rows: list[SourceRow], problem: str = "problem", answer: str = "answer") -> list[SourceRow]:
    """Sources that already have a problem and an answer column (MATH-500, AIME, AMC)."""
    return [{"problem": r[problem], "answer": r[answer], **_rest(r, (problem, answer))} for r in rows]


def convert_gsm8k(rows: list[SourceRow]) -> list[SourceRow]:
    """openai/gsm8k: `answer` is the worked solution ending `#### 18`; keep it as `cot`."""
    out = []
    for i, r in enumerate(rows):
        cot, _, final = r["answer"].rpartition("####")
        out.append({"problem": r["question"], "answer": final.strip(),
                    "cot": cot.strip(), "id": f"gsm8k-test-{i}", **_rest(r, ("question", "answer"))})
    return out


def convert_gsm8k_zh(rows: list[SourceRow]) -> list[SourceRow]:
    """meta-math/GSM8K_zh: the Chinese question and the number-only answer."""
    return [{"problem": r["question_zh"], "answer": str(r["answer_only"]).strip(),
             **_rest(r, ("question_zh", "answer_only"))} for r in rows]


def convert_olympiad(rows: list[SourceRow]) -> list[SourceRow]:
    """OlympiadBench (text-only, English, competition maths): `final_answer` is a list of LaTeX answers."""
    out = []
    for r in rows:
        final = r["final_answer"]
        answer = ", ".join(a.strip() for a in final) if isinstance(final, (list, tuple)) else str(final).strip()
        out.append({"id": r.get("id"), "problem": r["question"], "answer": answer,
                    **_rest(r, ("id", "question", "final_answer"))})
    return out


def convert_strategyqa(rows: list[SourceRow]) -> list[SourceRow]:
    """wics/strategy-qa: the facts go into the problem; the boolean answer becomes Yes / No."""
    out = []
    for r in rows:
        facts = "\n".join(f"- {fact}" for fact in r["facts"])
        out.append({"problem": f"Facts:\n{facts}\nQ: {r['question']}\nA:", "answer": "Yes" if r["answer"] else "No",
                    **_rest(r, ("question", "answer"))})
    return out


def convert_gpqa(rows: list[SourceRow], seed: int = 0) -> list[SourceRow]:
    """Idavidrein/gpqa (diamond): the four choices shuffled with a fixed seed per question (the copy
    the authors distributed always put the correct one first, as A), letter as the answer."""
    out = []
    for i, r in enumerate(rows):
        key = r.get("Record ID", i)
        correct = r["Correct Answer"].strip()
        choices = [correct] + [r[f"Incorrect Answer {k}"].strip() for k in (1, 2, 3)]
        random.Random(f"{seed}:{key}").shuffle(choices)
        letters = "ABCD"
        listing = "\n".join(f"{letters[k]}. {c}" for k, c in enumerate(choices))
        out.append({"id": key, "problem": f"{r['Question'].strip()}\n\n\n{listing}\n\n{GPQA_INSTRUCTION}",
                    "answer": letters[choices.index(correct)]})
    return out


def convert_math_train(rows: list[SourceRow], size: int = SEEN_SIZE, seed: int = SEEN_SEED) -> list[SourceRow]:
    """The seen set: `size` problems of the MATH training split drawn with a fixed seed; the answer is
    the last `\\boxed{}` of the reference solution."""
    picked = random.Random(seed).sample(range(len(rows)), min(size, len(rows)))
    out = []
    for i in picked:
        r = rows[i]
        boxes = boxed_contents(r["solution"])
        out.append({"problem": r["problem"], "answer": boxes[-1] if boxes else "", "source_index": i,
                    **_rest(r, ("problem",))})
    return out


@dataclass(frozen=True)
class Source:
    name: str
    repo_id: str
    configs: tuple[str, ...]
    split: str
    convert: Callable[[list[SourceRow]], list[SourceRow]]
    gated: bool = False


SOURCES = {s.name: s for s in [
    Source("Math_AIME2024", "HuggingFaceH4/aime_2024", ("default",), "train", convert_plain),
    Source("Math_AIME2025", "opencompass/AIME2025", ("AIME2025-I", "AIME2025-II"), "test",
           lambda rows: convert_plain(rows, problem="question")),
    Source("Math_AMC23", "AI-MO/aimo-validation-amc", ("default",), "train", convert_plain),
    Source("Math_GSM8K", "openai/gsm8k", ("main",), "test", convert_gsm8k),
    Source("Math_Math500", "HuggingFaceH4/MATH-500", ("default",), "test", convert_plain),
    Source("Math_Olympiad", "Hothan/OlympiadBench", ("OE_TO_maths_en_COMP",), "train", convert_olympiad),
    Source("Science_GPQA", "Idavidrein/gpqa", ("gpqa_diamond",), "train", convert_gpqa, gated=True),
    Source("Commensense_StrategyQA", "wics/strategy-qa", ("strategyQA",), "test", convert_strategyqa),
    Source("Chinese_GSM8KZH", "meta-math/GSM8K_zh", ("default",), "train", convert_gsm8k_zh),
    Source("Math_Train", "DigitalLearningGmbH/MATH-lighteval", ("default",), "train", convert_math_train),
]}


def sort_parquet_files(paths: list[str]) -> list[str]:
    """Shards in numeric order (0000.parquet, 0001.parquet, ...)."""
    return sorted(paths, key=lambda p: [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", p)])
