"""Which answer family each benchmark's responses are read with (docs/method.md §11). The graders
know families only; this table is the one place that knows benchmark names."""

from __future__ import annotations

from ..errors import UsageError
from .answers import FAMILIES

DATASET_FAMILIES = {
    "Math_AIME2024": "math", "Math_AIME2025": "math", "Math_AMC23": "math", "Math_Math500": "math",
    "Math_Olympiad": "math", "Math_Train": "math",
    "Math_GSM8K": "gsm8k", "Chinese_GSM8KZH": "gsm8k",
    "Organism_Seen": "gsm8k", "Organism_Heldout": "gsm8k",
    "Science_GPQA": "gpqa", "Commensense_StrategyQA": "yesno",
}


def family_of(data_name: str, override: str | None = None) -> str:
    if override is not None:
        if override not in FAMILIES:
            raise UsageError(f"--family must be one of {', '.join(FAMILIES)}, got {override!r}")
        return override
    if data_name not in DATASET_FAMILIES:
        raise UsageError(f"--data_name {data_name!r} is not a known benchmark; known: "
                         f"{', '.join(sorted(DATASET_FAMILIES))} (or pass --family {'|'.join(FAMILIES)})")
    return DATASET_FAMILIES[data_name]
