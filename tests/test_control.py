import math

import pytest
import torch

from rebalance.calibration import RELEASED, generic, released, resolve
from rebalance.control import ControlFunction


def constants(model):
    return RELEASED[model][1:]


@pytest.mark.parametrize("model, k", [("DeepSeek-R1-Distill-Qwen-1.5B", 15.43), ("DeepSeek-R1-Distill-Qwen-7B", 18.00),
                                      ("QwQ-32B", 22.40), ("Qwen3-14B", 30.24)])
def test_released_k_and_baseline_anchors(model, k):
    f = ControlFunction(*constants(model))
    assert f.k == pytest.approx(k, abs=1e-2)
    q25c, q75c, low1 = f.q25c, f.q75c, f.low_val_1
    anchors = f.baseline(torch.tensor([q25c, q75c, 1.0], dtype=torch.float64)).tolist()
    assert anchors == pytest.approx([low1, 0.0, 0.01], abs=1e-6)


def test_gate_regimes():
    f = ControlFunction(*constants("DeepSeek-R1-Distill-Qwen-1.5B"))
    # low confidence, high variance: overthinking, pushed all the way to low_val_2
    assert f(0.3, 0.05) == pytest.approx(-1.91, abs=1e-6)
    # high confidence, low variance: underthinking, close to high_val_2
    assert f(0.99, 0.0) == pytest.approx(0.1, abs=2e-3)
    # low confidence but calm: the baseline curve alone, at low_val_1
    assert f(0.3, 0.0) == pytest.approx(float(f.baseline(torch.tensor(0.3))), abs=1e-6)
    # the clamp range
    assert f(0.0, 1.0) >= -1.91 - 1e-6 and f(1.0, 0.0) <= 0.1 + 1e-6


def test_floats_and_tensors_agree_and_keep_shape():
    f = ControlFunction(*generic().values())
    c = torch.tensor([[0.2, 0.7], [0.95, float("nan")]])
    v = torch.tensor([[0.02, 0.0], [0.0, 0.001]])
    out = f(c, v)
    assert out.shape == (2, 2) and out.dtype == torch.float32
    assert out[0, 1].item() == f(0.7, 0.0)
    # NaN confidence: F1 reads it as 0.5, but the gates take c as it is, so f is NaN. The controller
    # never asks: only a step with at least one token gets a coefficient (an empty one keeps the last)
    assert float(f.baseline(torch.tensor(float("nan")))) == float(f.baseline(torch.tensor(0.5)))
    assert math.isnan(out[1, 1].item()) and math.isnan(f(float("nan"), 0.0))


def test_types_in_and_out():
    """Floats in, a float out; any tensor in, a float32 tensor out (as the release computed it)."""
    f = ControlFunction(*generic().values())
    assert type(f(0.5, 0.0)) is float
    for c, v in ((torch.tensor(0.5), 0.0), (0.5, torch.tensor(0.0)),
                 (torch.tensor([0.5], dtype=torch.float64), torch.tensor([0.0], dtype=torch.float64))):
        out = f(c, v)
        assert torch.is_tensor(out) and out.dtype == torch.float32
    # F1 clamps c to [0, 1] before the curve (a gentle curve, so the ends are not saturated anyway)
    gentle = ControlFunction(0.01, 0.99, -1.0, 1.0, 2.0, -1.0)
    assert float(gentle.baseline(torch.tensor(-0.5))) == float(gentle.baseline(torch.tensor(0.0)))
    assert float(gentle.baseline(torch.tensor(1.5))) == float(gentle.baseline(torch.tensor(1.0)))
    assert float(gentle.baseline(torch.tensor(0.0))) != float(gentle.baseline(torch.tensor(0.01)))


@pytest.mark.parametrize("values, message", [
    ((0.6, 0.6, -1.0, 0.0005, 0.01, -2.0), "need q25c < q75c and q25v < q75v, got 0.6, 0.6, 0.0005, 0.01"),
    ((0.6, 0.9, -1.0, 0.01, 0.01, -2.0), "need q25c < q75c and q25v < q75v, got 0.6, 0.9, 0.01, 0.01"),
    ((0.6, 0.9, 0.0, 0.0005, 0.01, -2.0), "low_val_1 must be negative, got 0.0"),
    ((0.6, 0.9, 0.5, 0.0005, 0.01, -2.0), "low_val_1 must be negative, got 0.5"),
])
def test_degenerate_constants_are_refused_with_the_values(values, message):
    with pytest.raises(ValueError, match=message.replace(".", r"\.")):
        ControlFunction(*values)


def test_bad_constants_are_refused():
    with pytest.raises(ValueError):
        ControlFunction(0.9, 0.6, -1.0, 0.0005, 0.01, -2.0)
    with pytest.raises(ValueError):
        ControlFunction(0.6, 0.9, 1.0, 0.0005, 0.01, -2.0)


def test_constants_resolution_order(tmp_path):
    vector = tmp_path / "v.pt"
    values, layer, source = resolve("/models/DeepSeek-R1-Distill-Qwen-7B", None, {})
    assert (layer, values["q25c"], source) == (22, 0.666017, "released constants for DeepSeek-R1-Distill-Qwen-7B")
    values, layer, source = resolve("my-model", None, {"q25c": 0.5})
    assert values == {**generic(), "q25c": 0.5} and layer is None and source.startswith("--dyn_* flags (q25c)")
    values, layer, _ = resolve("my-model", None, {}, fallback_model="Qwen3-14B")
    assert layer == 34 and values == released("Qwen3-14B")[1]
    (tmp_path / "v.json").write_text('{"layer": 7, "q25c": 0.1, "q75c": 0.2, "low_val_1": -0.5, "q25v": 0.001,'
                                     ' "q75v": 0.002, "low_val_2": -0.7, "high_val_2": 0.1}')
    values, layer, source = resolve("DeepSeek-R1-Distill-Qwen-7B", str(vector), {})
    assert layer == 7 and values["low_val_2"] == -0.7 and "calibration file" in source
    assert math.isclose(values["q25v"], 0.001)


def reference_f(c, v, q25c, q75c, low_val_1, q25v, q75v, low_val_2, high_val_2):
    """docs/method.md §7 written out once more in plain float64 Python, with k found by a plain
    bisection of its own: F1 through (q25c, low_val_1) and (q75c, 0) with F1(1) = 0.01, and the two
    gates (slopes 1200 per IQR, the high one normalised at c = 1 with slope 12)."""
    m, s = (q25c + q75c) / 2, (q75c - q25c) / 2
    a, target = low_val_1 / 2, 2 * (0.01 - low_val_1 / 2) / (-low_val_1)
    lo, hi = 1e-9, 1000.0
    for _ in range(200):  # the ratio tanh(k(1 - m)) / tanh(k s) falls as k grows
        k = (lo + hi) / 2
        lo, hi = (k, hi) if math.tanh(k * (1 - m)) / math.tanh(k * s) > target else (lo, k)
    b = -low_val_1 / (2 * math.tanh(k * s))
    f1 = a + b * math.tanh(k * (min(max(c, 0.0), 1.0) - m))
    sig = lambda x: 1 / (1 + math.exp(-min(max(x, -60.0), 60.0)))  # noqa: E731
    iqr_c, iqr_v = q75c - q25c, q75v - q25v
    w_low = min(1.0, sig((q25c - c) / iqr_c * 1200) * sig((v - q75v) / iqr_v * 1200) / 0.25)
    w_high = min(1.0, sig((c - q75c) / iqr_c * 1200) * sig((q25v - v) / iqr_v * 1200) / (sig((1 - q75c) / iqr_c * 12) * 0.5))
    f = f1 + (low_val_2 - low_val_1) * w_low + (high_val_2 - 0.01) * w_high
    return min(max(f, min(low_val_1, low_val_2)), max(0.01, high_val_2))


def grid(q25c, q75c, q25v, q75v):
    """Points in every regime and on both gates' slopes (where a wrong constant shows)."""
    iqr_c, iqr_v = q75c - q25c, q75v - q25v
    cs = [0.0, 0.2, q25c - 2e-3 * iqr_c, q25c - 5e-4 * iqr_c, q25c, q25c + 5e-4 * iqr_c, (q25c + q75c) / 2,
          q75c - 5e-4 * iqr_c, q75c, q75c + 5e-4 * iqr_c, q75c + 2e-3 * iqr_c, 0.999, 1.0]
    vs = [0.0, q25v - 5e-4 * iqr_v, q25v, q25v + 5e-4 * iqr_v, (q25v + q75v) / 2, q75v - 5e-4 * iqr_v, q75v,
          q75v + 5e-4 * iqr_v, 2 * q75v]
    return [(c, v) for c in cs for v in vs]


INVERTED = (0.65, 0.90, -2.0, 0.0005, 0.01, -1.0, 0.1)  # low_val_2 above low_val_1: the low gate pushes up


@pytest.mark.parametrize("model", list(RELEASED) + ["generic", "inverted"])
def test_f_equals_the_written_out_formula_everywhere(model):
    values = {"generic": tuple(generic().values()), "inverted": INVERTED}.get(model) or constants(model)
    f = ControlFunction(*values)
    c, v = (torch.tensor(column, dtype=torch.float32) for column in zip(*grid(f.q25c, f.q75c, f.q25v, f.q75v)))
    got = f(c, v).tolist()
    want = [reference_f(x, y, *values) for x, y in zip(c.tolist(), v.tolist())]  # the same float32 inputs
    assert got == pytest.approx(want, abs=1e-4)  # float32 arithmetic against float64, on slopes of ~1e3
    assert len({round(x, 3) for x in want}) > 12  # the grid reaches gates part-open, not only the plateaus
