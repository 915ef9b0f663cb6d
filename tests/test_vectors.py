"""The steering vector and the LDA diagnostics (docs/method.md §5), against independent numpy computations."""

import numpy as np
import pytest
import torch

from rebalance.analysis.vectors import CHUNK, lda_diagnostics, save_vector, steering_vector


def independent_lda(pos: np.ndarray, neg: np.ndarray) -> tuple[float, float]:
    pos, neg = pos.astype(np.float64), neg.astype(np.float64)
    mu1, mu0 = pos.mean(0), neg.mean(0)
    w = (mu1 - mu0) / (pos.var(0) + neg.var(0) + 1e-12)
    t = -(w @ mu1 + w @ mu0) / 2
    s = mu1 - mu0
    u = s / np.linalg.norm(s)
    alpha_mean = max((w @ mu1 - t) / (w @ u), 0) / np.linalg.norm(s)
    alpha_all = max((h @ w - t) / (w @ u) for h in pos) / np.linalg.norm(s)
    return alpha_mean, alpha_all


@pytest.mark.parametrize("rows", [50, CHUNK + 37])  # one chunk, and several
def test_lda_alphas_match_numpy(rows):
    rng = np.random.default_rng(0)
    pos = rng.normal(2.0, 1.0, size=(rows, 12)).astype(np.float32)
    neg = rng.normal(0.5, 0.7, size=(rows // 2 + 3, 12)).astype(np.float32)
    lda = lda_diagnostics(torch.from_numpy(pos), torch.from_numpy(neg))
    alpha_mean, alpha_all = independent_lda(pos, neg)
    assert alpha_mean > 0
    assert lda.alpha_mean == pytest.approx(alpha_mean, rel=1e-9)
    assert lda.alpha_all == pytest.approx(alpha_all, rel=1e-9)
    assert lda.alpha_all >= lda.alpha_mean
    assert lda.accuracy > 0.8


def test_alpha_mean_is_clamped_at_zero():
    rng = np.random.default_rng(1)
    pos = rng.normal(1.0, 1.0, size=(40, 4)).astype(np.float32)  # release sign: t lies past the mean
    neg = rng.normal(-5.0, 1.0, size=(40, 4)).astype(np.float32)
    lda = lda_diagnostics(torch.from_numpy(pos), torch.from_numpy(neg))
    assert lda.alpha_mean == 0.0 and independent_lda(pos, neg)[0] == 0.0


def test_vector_is_the_float32_mean_difference():
    rng = np.random.default_rng(2)
    pos = torch.from_numpy(rng.normal(size=(30, 8)).astype(np.float32))
    neg = torch.from_numpy(rng.normal(size=(20, 8)).astype(np.float32))
    vector = steering_vector(pos, neg)
    assert vector.dtype == torch.float32
    assert torch.equal(vector, pos.mean(0) - neg.mean(0))
    unit = steering_vector(pos, neg, normalize=True)
    assert unit.norm().item() == pytest.approx(1.0, abs=1e-6)
    assert torch.allclose(unit * vector.norm(), vector, atol=1e-6)


def test_saved_vector_loads_as_the_same_plain_tensor(tmp_path):
    vector = steering_vector(torch.randn(5, 6), torch.randn(4, 6))
    path = tmp_path / "vectors" / "steer_vector_layer3_conf_mixed.pt"
    save_vector(vector, str(path))
    loaded = torch.load(path, weights_only=True)
    assert type(loaded) is torch.Tensor and loaded.dtype == torch.float32 and torch.equal(loaded, vector)


def test_lda_on_four_rows_by_hand():
    """One dimension. Positive rows 1 and 3, negative -1 and 1: mu1 = 2, mu0 = 0, both variances 1, so
    w = 2 / (1 + 1) = 1; the release's threshold t = -(w mu1 + w mu0) / 2 = -1; S = 2, u = 1.
    alpha_mean = (w mu1 - t) / (w.u) / |S| = 3 / 2; alpha_all = (3 w - t) / (w.u) / |S| = 4 / 2 = 2.
    Midpoint 1: positive 3 and both negatives are on their side, positive 1 is not: 3 of 4."""
    pos, neg = torch.tensor([[1.0], [3.0]]), torch.tensor([[-1.0], [1.0]])
    lda = lda_diagnostics(pos, neg)
    assert (lda.alpha_mean, lda.alpha_all, lda.threshold, lda.w_dot_u, lda.norm_s, lda.accuracy) == \
           pytest.approx((1.5, 2.0, -1.0, 1.0, 2.0, 0.75), abs=1e-9)
    assert steering_vector(pos, neg).tolist() == [2.0]
    assert steering_vector(pos, neg, normalize=True).tolist() == [1.0]
