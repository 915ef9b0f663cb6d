"""The dynamic control function f(c, v) of docs/method.md §7: from a step's confidence c and the confidence
variance v to a signed steering coefficient (negative: push towards thinking less; positive, small:
towards thinking more)."""

from __future__ import annotations

import math

import torch

HIGH_VAL_1 = 0.01  # F1 at c = 1: fixed by the release


def _tanh_ratio(k: float, centre: float, half_width: float) -> float:
    return math.tanh(k * (1.0 - centre)) / math.tanh(k * half_width)


def solve_k(q25c: float, q75c: float, low_val_1: float) -> float:
    """Steepness k so that F1(1) = 0.01, by the release's bisection (the ratio falls as k grows)."""
    centre, half_width = (q25c + q75c) / 2, (q75c - q25c) / 2
    target = 2 * (HIGH_VAL_1 - low_val_1 / 2) / (0.0 - low_val_1)
    lo, hi = 1e-6, 1.0
    while _tanh_ratio(hi, centre, half_width) > target:
        hi *= 2
    for _ in range(80):
        mid = (lo + hi) / 2
        if _tanh_ratio(mid, centre, half_width) > target:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


def _gate(x: torch.Tensor) -> torch.Tensor:
    return torch.sigmoid(x.clamp(-60.0, 60.0))


HIGH_VAL_2 = 0.1  # the positive branch's ceiling: the release uses it for every model


class ControlFunction:
    """f(c, v) = F1(c) + gates; call on floats or tensors (same shape out, float32 like the release).

    F1 is a tanh through (q25c, low_val_1) and (q75c, 0) reaching 0.01 at c = 1. The low gate opens
    for low confidence with high variance (overthinking: push to low_val_2), the high gate for high
    confidence with low variance (underthinking: allow up to high_val_2).
    """

    def __init__(self, q25c: float, q75c: float, low_val_1: float, q25v: float, q75v: float,
                 low_val_2: float, high_val_2: float = HIGH_VAL_2):
        if not q75c > q25c or not q75v > q25v:
            raise ValueError(f"need q25c < q75c and q25v < q75v, got {q25c}, {q75c}, {q25v}, {q75v}")
        if not low_val_1 < 0:
            raise ValueError(f"low_val_1 must be negative, got {low_val_1}")
        self.q25c, self.q75c, self.q25v, self.q75v = q25c, q75c, q25v, q75v
        self.low_val_1, self.low_val_2, self.high_val_2 = low_val_1, low_val_2, high_val_2
        self.k = solve_k(q25c, q75c, low_val_1)
        self.centre = (q25c + q75c) / 2
        self.a = low_val_1 / 2
        self.b = -low_val_1 / (2 * math.tanh(self.k * (q75c - q25c) / 2))
        self.iqr_c, self.iqr_v = q75c - q25c, q75v - q25v
        self.gate_norm = float(_gate(torch.tensor((1 - q75c) / self.iqr_c * 12, dtype=torch.float32))) * 0.5
        self.lower = min(low_val_1, low_val_2)
        self.upper = max(HIGH_VAL_1, high_val_2)

    def baseline(self, c: torch.Tensor) -> torch.Tensor:
        """F1(c), with c clamped to [0, 1] and NaN read as 0.5."""
        c = torch.nan_to_num(c, nan=0.5).clamp(0.0, 1.0)
        return self.a + self.b * torch.tanh(self.k * (c - self.centre))

    def __call__(self, c, v):
        as_float = not torch.is_tensor(c) and not torch.is_tensor(v)
        c = torch.as_tensor(c, dtype=torch.float32)
        v = torch.as_tensor(v, dtype=torch.float32, device=c.device)
        w_low = (_gate((self.q25c - c) / self.iqr_c * 1200) * _gate((v - self.q75v) / self.iqr_v * 1200) / 0.25)
        w_high = (_gate((c - self.q75c) / self.iqr_c * 1200) * _gate((self.q25v - v) / self.iqr_v * 1200)
                  / self.gate_norm)
        f = (self.baseline(c) + (self.low_val_2 - self.low_val_1) * w_low.clamp(max=1.0)
             + (self.high_val_2 - HIGH_VAL_1) * w_high.clamp(max=1.0))
        f = f.clamp(self.lower, self.upper)
        return float(f) if as_float else f
