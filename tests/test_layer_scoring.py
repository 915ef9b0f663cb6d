"""PCA + Ridge layer scoring (docs/method.md §4) on a synthetic run where one layer encodes confidence."""

import os

import numpy as np
import pytest
from sklearn.decomposition import PCA
from sklearn.linear_model import Ridge
from sklearn.model_selection import train_test_split
from synthetic import stacked, write_synthetic

from rebalance.analysis.layer_scoring import RidgeSettings, best_layer, parse_layers, ridge_r2
from rebalance.errors import UsageError
from rebalance.stages.select_layer import SelectJob, run


def release_r2(X, y, alpha=1.0, components=64, test_size=0.2, seed=42):
    """The release's calls, written out once more."""
    a, b, ya, yb = train_test_split(X, y, test_size=test_size, random_state=seed)
    pca = PCA(n_components=min(components, a.shape[0], a.shape[1]), random_state=seed)
    za = pca.fit_transform(a)  # fit_transform, as the release: fit() then transform() differs in the last digits
    return Ridge(alpha=alpha).fit(za, ya).score(pca.transform(b), yb)


def test_planted_layer_is_best_and_scores_equal_the_release_calls(tmp_path, capsys):
    syn = write_synthetic(str(tmp_path), confidence_layer=3)
    result = run(SelectJob(syn.jsonl, syn.hidden_dir, "all", settings=RidgeSettings(pca_components=8)))
    out = capsys.readouterr().out.strip().splitlines()
    assert out[-1] == "3"
    assert result["best"] == 3
    assert result["scores"][3] > 0.95
    assert max(result["scores"][k] for k in (0, 1, 4)) < 0.2  # pure-noise layers
    for layer in range(syn.layers):
        X, y = stacked(syn, layer)
        assert result["scores"][layer] == release_r2(X, y, components=8)
    assert os.path.getsize(result["png"]) > 1000
    with open(result["csv"]) as handle:
        assert handle.readline().strip() == "layer,r2" and len(handle.readlines()) == syn.layers


def test_layer_subset_and_max_files(tmp_path, capsys):
    syn = write_synthetic(str(tmp_path))
    result = run(SelectJob(syn.jsonl, syn.hidden_dir, "0,2-3", max_files=10, plot=False))
    assert sorted(result["scores"]) == [0, 2, 3]
    X, y = stacked(syn, 2, skip=tuple(range(10, 40)))
    assert result["scores"][2] == release_r2(X, y)
    assert "png" not in result


@pytest.mark.parametrize("spec, expected", [
    ("all", [0, 1, 2, 3, 4]), ("0-2", [0, 1, 2]), ("4,0,2-3", [0, 2, 3, 4]), ("1, 1", [1]),
])
def test_parse_layers(spec, expected):
    assert parse_layers(spec, [0, 1, 2, 3, 4]) == expected


@pytest.mark.parametrize("spec, message", [
    ("0-9", "layer 5 is out of range; the hidden files hold layers 0-4"),
    ("3-1", "runs backwards"), ("x", "cannot read 'x'"),
])
def test_parse_layers_rejects(spec, message):
    with pytest.raises(UsageError, match=message):
        parse_layers(spec, [0, 1, 2, 3, 4])


def test_ridge_r2_and_tie_break():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 6)).astype(np.float32)
    y = (X @ np.arange(6)).astype(np.float32)
    assert ridge_r2(X, y, RidgeSettings(alpha=1e-6, pca_components=6)) == pytest.approx(1.0, abs=1e-6)
    assert best_layer({4: 0.5, 2: 0.5, 7: 0.1}) == 2


def test_ridge_r2_is_held_out():
    """Pure noise, as many PCA components as rows allow and almost no regularisation: a fit that was
    scored on its own rows would read about 1; held out, noise predicts worse than the mean."""
    rng = np.random.default_rng(1)
    X = rng.normal(size=(100, 60)).astype(np.float32)
    y = rng.normal(size=100).astype(np.float32)
    assert ridge_r2(X, y, RidgeSettings(alpha=1e-6, pca_components=60)) < 0.0


def test_pca_keeps_only_the_largest_directions():
    """y is read off a direction with a thousandth of the others' spread: with as many components as
    large directions PCA drops it (R^2 about 0), with one more it is kept (R^2 about 1)."""
    rng = np.random.default_rng(2)
    loud = rng.normal(scale=1000.0, size=(400, 5))
    quiet = rng.normal(scale=1.0, size=(400, 1))
    X = np.hstack([loud, quiet]).astype(np.float32)
    y = quiet[:, 0].astype(np.float32)
    assert ridge_r2(X, y, RidgeSettings(alpha=1e-6, pca_components=5)) < 0.05
    assert ridge_r2(X, y, RidgeSettings(alpha=1e-6, pca_components=6)) > 0.99
