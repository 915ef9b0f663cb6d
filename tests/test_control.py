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
