"""The numbers the paper reports, to put beside a reproduction (and nowhere else in the code).

Source: ReBalance, "Efficient Reasoning with Balanced Thinking" (ICLR 2026), main results table:
pass@1 in % and average response tokens, without -> with ReBalance, sampled at temperature 0.7,
top-p 0.95, 16,000 new tokens. Only the cells quoted here; a token count the paper gives only as
a per-model average change is left out rather than guessed.
"""

from __future__ import annotations

from dataclasses import dataclass

SOURCE = "ReBalance (ICLR 2026), main results table"


@dataclass(frozen=True)
class PaperCell:
    base_acc: float
    steer_acc: float
    base_tokens: float | None = None
    steer_tokens: float | None = None


# (model folder name, benchmark folder name) -> baseline -> ReBalance
PAPER: dict[tuple[str, str], PaperCell] = {
    ("DeepSeek-R1-Distill-Qwen-1.5B", "Math_Math500"): PaperCell(79.6, 83.0, 4516, 3474),
    ("DeepSeek-R1-Distill-Qwen-1.5B", "Math_AIME2024"): PaperCell(23.3, 33.3),
    ("DeepSeek-R1-Distill-Qwen-1.5B", "Math_GSM8K"): PaperCell(76.0, 78.3),
    ("DeepSeek-R1-Distill-Qwen-7B", "Math_Math500"): PaperCell(89.8, 92.6, 3699, 2903),
    ("DeepSeek-R1-Distill-Qwen-7B", "Math_AIME2024"): PaperCell(46.7, 53.3),
    ("DeepSeek-R1-Distill-Qwen-7B", "Math_GSM8K"): PaperCell(89.2, 91.6),
    ("Qwen3-14B", "Math_Math500"): PaperCell(93.8, 94.0, 4470, 3641),
    ("Qwen3-14B", "Math_AIME2024"): PaperCell(66.7, 73.3),
    ("Qwen3-14B", "Math_GSM8K"): PaperCell(95.1, 96.3),
}


def paper_cell(model: str, benchmark: str) -> PaperCell | None:
    return PAPER.get((model, benchmark))
