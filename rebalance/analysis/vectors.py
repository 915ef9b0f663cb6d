"""The steering vector and the constants derived with it (docs/method.md §5).

S = mean(overthinking rows) - mean(confident rows), in float32 as the release computed it. A
diagonal LDA in float64 says how far along -S the positive rows must move to cross the class
boundary; those distances become low_val_1 (the mean positive) and low_val_2 (every positive).
"""

from __future__ import annotations

import sys
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch

from ..calibration import generic
from ..control import HIGH_VAL_2

CHUNK = 8192  # rows per float64 chunk: the LDA never holds a float64 copy of all rows


def steering_vector(positive: torch.Tensor, negative: torch.Tensor, normalize: bool = False) -> torch.Tensor:
    """mean(positive) - mean(negative) over rows, float32; unit length when `normalize`."""
    vector = positive.float().mean(dim=0) - negative.float().mean(dim=0)
    if normalize:
        vector = vector / vector.norm()
    return vector.contiguous()


def _moments(rows: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """float64 mean and population variance per dimension, one chunk at a time."""
    total = np.zeros(rows.shape[1], dtype=np.float64)
    for start in range(0, rows.shape[0], CHUNK):
        total += rows[start:start + CHUNK].double().sum(dim=0).numpy()
    mean = total / rows.shape[0]
    squares = np.zeros_like(mean)
    for start in range(0, rows.shape[0], CHUNK):
        squares += ((rows[start:start + CHUNK].double().numpy() - mean) ** 2).sum(axis=0)
    return mean, squares / rows.shape[0]


@dataclass(frozen=True)
class LdaDiagnostics:
    alpha_mean: float  # distance along -S/||S||, in units of ||S||, that moves the mean positive across
    alpha_all: float   # the same for the furthest positive row
    threshold: float
    w_dot_u: float
    norm_s: float      # ||mu1 - mu0|| in float64
    accuracy: float    # share of labelled rows on their own side of the midpoint (w.mu1 + w.mu0)/2

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


def lda_diagnostics(positive: torch.Tensor, negative: torch.Tensor) -> LdaDiagnostics:
    """docs/method.md §5's diagonal LDA, including the release's threshold sign (t = -(w.mu1 + w.mu0)/2):
    the released constants were derived with it."""
    mu1, var1 = _moments(positive)
    mu0, var0 = _moments(negative)
    w = (mu1 - mu0) / (var1 + var0 + 1e-12)
    threshold = -(w @ mu1 + w @ mu0) / 2
    s = mu1 - mu0
    norm_s = float(np.linalg.norm(s))
    w_dot_u = float(w @ (s / norm_s))
    scores_pos = np.concatenate([positive[i:i + CHUNK].double().numpy() @ w for i in range(0, positive.shape[0], CHUNK)])
    scores_neg = np.concatenate([negative[i:i + CHUNK].double().numpy() @ w for i in range(0, negative.shape[0], CHUNK)])
    alpha_mean = max((w @ mu1 - threshold) / w_dot_u, 0.0) / norm_s
    alpha_all = float(np.max((scores_pos - threshold) / w_dot_u)) / norm_s
    midpoint = (w @ mu1 + w @ mu0) / 2  # the textbook boundary, for a readable separation figure
    correct = (scores_pos > midpoint).sum() + (scores_neg <= midpoint).sum()
    accuracy = float(correct) / (len(scores_pos) + len(scores_neg))
    return LdaDiagnostics(float(alpha_mean), float(alpha_all), float(threshold), w_dot_u, norm_s, accuracy)


def save_vector(vector: torch.Tensor, path: str) -> None:
    """A plain float32 tensor, like the released `steer_vector_layer{L}_conf_mixed.pt`."""
    import os

    from ..files.atomic import atomic_torch_save

    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    atomic_torch_save(vector.detach().to(torch.float32).cpu().clone(), path)


def low_values(lda: LdaDiagnostics, normalize: bool = False, layer: int | None = None) -> dict[str, Any]:
    """low_val_1 = -alpha_mean and low_val_2 = -alpha_all (docs/method.md §6), in units of the saved vector:
    the alphas count multiples of S, so a unit vector (`--normalize`) needs them times ||S||.
    When the release's threshold sign leaves alpha_mean at 0, those would make F1 flat and the
    control function undefined; the generic pair is used instead and the file says so."""
    if lda.alpha_mean > 0:
        scale = lda.norm_s if normalize else 1.0
        return {"low_val_1": -lda.alpha_mean * scale, "low_val_2": -lda.alpha_all * scale, "high_val_2": HIGH_VAL_2,
                "low_values_from": "lda" + (" (x ||S||: unit vector)" if normalize else "")}
    fallback = generic()
    where = "" if layer is None else f"layer {layer}: "
    print(f"warning: {where}alpha_mean is 0 (the mean positive row is already past the LDA threshold), so "
          f"low_val_1/low_val_2 fall back to the generic {fallback['low_val_1']}/{fallback['low_val_2']}",
          file=sys.stderr)
    return {"low_val_1": fallback["low_val_1"], "low_val_2": fallback["low_val_2"], "high_val_2": HIGH_VAL_2,
            "low_values_from": "generic defaults (alpha_mean = 0)"}
