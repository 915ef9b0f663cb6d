"""Where the control constants of a steered run come from (docs/method.md §7): the calibration file
beside the vector, the authors' released table keyed by model name, or the generic fallback."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any

from .control import HIGH_VAL_2
from .errors import UsageError
from .files.atomic import atomic_write_text
from .files.names import calibration_path

CONSTANT_NAMES = ("q25c", "q75c", "low_val_1", "q25v", "q75v", "low_val_2", "high_val_2")

# model: (steer layer, q25c, q75c, low_val_1, q25v, q75v, low_val_2, high_val_2)
RELEASED = {
    "DeepSeek-R1-Distill-Qwen-1.5B": (19, 0.662293, 0.94805, -1.02, 0.000560, 0.011597, -1.91, HIGH_VAL_2),
    "DeepSeek-R1-Distill-Qwen-7B": (22, 0.666017, 0.927745, -1.19, 0.000488, 0.009931, -2.34, HIGH_VAL_2),
    "QwQ-32B": (58, 0.700670, 0.917506, -1.31, 0.000386, 0.007279, -2.73, HIGH_VAL_2),
    "Qwen3-14B": (34, 0.816174, 0.965398, -1.03, 0.000149, 0.003593, -1.13, HIGH_VAL_2),
}
GENERIC = (0.65, 0.90, -1.0, 0.0005, 0.01, -2.0, HIGH_VAL_2)


@dataclass
class Calibration:
    """The calibration file beside a vector (`<vector stem>.json`, written by hidden_analysis_auto.py):
    the seven constants, the layer, and how they were derived, as one JSON object in this order."""

    fields: dict[str, Any]

    @property
    def constants(self) -> dict[str, float]:
        return {name: float(self.fields[name]) for name in CONSTANT_NAMES}

    @property
    def layer(self) -> int | None:
        return self.fields.get("layer")

    def write(self, path: str) -> None:
        atomic_write_text(json.dumps(self.fields, indent=2) + "\n", path)

    @classmethod
    def read(cls, path: str) -> "Calibration":
        """The file's calibration; anything without the seven constants is an error naming the file."""
        try:
            with open(path, encoding="utf-8") as handle:
                calibration = cls(json.load(handle))
            calibration.constants  # every constant present and a number
        except (OSError, json.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError) as err:
            raise UsageError(f"{path}: not a calibration file ({type(err).__name__}: {err})") from None
        return calibration

    @classmethod
    def beside(cls, vector_path: str) -> "Calibration | None":
        path = calibration_path(vector_path)
        return cls.read(path) if os.path.isfile(path) else None


def released(model_name: str) -> tuple[int, dict[str, float]] | None:
    """(layer, constants) for a released model, matched by its basename (case-insensitive)."""
    wanted = model_name.rstrip("/").split("/")[-1].lower()
    for name, (layer, *values) in RELEASED.items():
        if name.lower() == wanted:
            return layer, dict(zip(CONSTANT_NAMES, values))
    return None


def generic() -> dict[str, float]:
    return dict(zip(CONSTANT_NAMES, GENERIC))


def resolve(model_name: str, vector_path: str | None, overrides: dict[str, float | None],
            fallback_model: str | None = None) -> tuple[dict[str, float], int | None, str]:
    """Constants, a default steer layer and a sentence naming their source.

    Order: the `--dyn_*` flags, the calibration file beside the vector, the released table for this
    model (or `fallback_model`'s, the Qwen3 script's default), the generic defaults.
    """
    layer: int | None = None
    calibration = Calibration.beside(vector_path) if vector_path else None
    if calibration is not None:
        values, layer = calibration.constants, calibration.layer
        source = f"calibration file {calibration_path(vector_path)}"
    elif released(model_name) is not None:
        layer, values = released(model_name)
        source = f"released constants for {model_name.rstrip('/').split('/')[-1]}"
    elif fallback_model is not None:
        layer, values = released(fallback_model)
        source = f"released constants for {fallback_model} (this script's default)"
    else:
        values, source = generic(), "generic defaults"
    given = {k: v for k, v in overrides.items() if v is not None}
    values.update(given)
    if given:
        source = f"--dyn_* flags ({', '.join(sorted(given))}) over {source}"
    return values, layer, source
