"""Which layer encodes step confidence best (docs/method.md §4): PCA + Ridge R^2 per layer.

The calls and their order follow the release so its numbers come out to the last digit:
`train_test_split` on the stacked rows, PCA fitted on the train part, Ridge on the components,
R^2 on the test part.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass

import numpy as np

from ..errors import UsageError


@dataclass(frozen=True)
class RidgeSettings:
    alpha: float = 1.0
    pca_components: int = 64
    test_size: float = 0.2
    random_state: int = 42


def ridge_r2(X: np.ndarray, y: np.ndarray, settings: RidgeSettings = RidgeSettings()) -> float:
    """Held-out R^2 of predicting y from the leading principal components of X."""
    from sklearn.decomposition import PCA
    from sklearn.linear_model import Ridge
    from sklearn.model_selection import train_test_split

    X_train, X_test, y_train, y_test = train_test_split(
        X, y, test_size=settings.test_size, random_state=settings.random_state)
    components = min(settings.pca_components, X_train.shape[0], X_train.shape[1])
    pca = PCA(n_components=components, random_state=settings.random_state)
    Z_train = pca.fit_transform(X_train)
    ridge = Ridge(alpha=settings.alpha).fit(Z_train, y_train)
    return float(ridge.score(pca.transform(X_test), y_test))


def parse_layers(spec: str, available: list[int]) -> list[int]:
    """`all` (0 .. the largest available layer) or a list like `0-28` / `0,3,7-10`."""
    top = max(available)
    if spec.strip().lower() == "all":
        return list(range(top + 1))
    layers: list[int] = []
    for part in spec.split(","):
        match = re.fullmatch(r"\s*(\d+)\s*(?:-\s*(\d+)\s*)?", part)
        if not match:
            raise UsageError(f"--layers: cannot read {part!r} (use 'all', '0-28' or '0,3,7-10')")
        lo = int(match.group(1))
        hi = int(match.group(2)) if match.group(2) is not None else lo
        if hi < lo:
            raise UsageError(f"--layers: range {part.strip()!r} runs backwards")
        layers.extend(range(lo, hi + 1))
    check_layers(layers, available, "--layers")
    return sorted(set(layers))


def check_layers(layers: list[int], available: list[int], flag: str) -> None:
    missing = [layer for layer in layers if layer not in available]
    if missing:
        raise UsageError(f"{flag}: layer {missing[0]} is out of range; the hidden files hold layers "
                         f"{min(available)}-{max(available)}")


def best_layer(scores: dict[int, float]) -> int:
    """Highest R^2; the lowest layer wins a tie (stable and reproducible)."""
    return max(sorted(scores), key=lambda layer: scores[layer])


def format_table(scores: dict[int, float]) -> str:
    best = best_layer(scores)
    lines = ["layer      R^2"]
    lines += [f"{layer:>5}  {r2:>8.4f}{'  <- best' if layer == best else ''}" for layer, r2 in sorted(scores.items())]
    return "\n".join(lines)


def format_steer_table(r2: dict[int, float], steer: dict[int, tuple[float, float, float]]) -> str:
    """R^2 beside the `steer` criterion's shifts (nats) and score; the arrow marks the score's pick."""
    from .layer_steering import best_steering_layer

    best = best_steering_layer(steer)
    lines = ["layer      R^2   shift before confident   shift before overthinking     score"]
    for layer, (confident, overthinking, score) in sorted(steer.items()):
        mark = "  <- best" if layer == best else ""
        lines.append(f"{layer:>5}  {r2[layer]:>7.4f}  {confident:>23.3f}  {overthinking:>26.3f}  {score:>8.3f}{mark}")
    return "\n".join(lines)


def write_csv(scores: dict[int, float], path: str, steer: dict[int, tuple[float, float, float]] | None = None) -> str:
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["layer", "r2"] + (["shift_confident", "shift_overthinking", "steer_score"] if steer else []))
        for layer, r2 in sorted(scores.items()):
            writer.writerow([layer, repr(r2)] + ([repr(v) for v in steer[layer]] if steer else []))
    return path


def plot_scores(scores: dict[int, float], path: str, title: str = "",
                steer: dict[int, tuple[float, float, float]] | None = None) -> str:
    """R^2 per layer; with the `steer` criterion its score on a second axis, and its pick marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    layers = sorted(scores)
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(layers, [scores[layer] for layer in layers], marker="o", ms=3, label="R^2")
    ax.set_xlabel("layer (HF hidden_states index)")
    ax.set_ylabel("held-out R^2 (PCA + Ridge)")
    ax.set_title(title or "How well each layer encodes step confidence")
    ax.grid(alpha=0.3)
    if steer is None:
        best = best_layer(scores)
        ax.scatter([best], [scores[best]], color="crimson", zorder=3, label=f"best: layer {best}")
    else:
        from .layer_steering import best_steering_layer

        best = best_steering_layer(steer)
        twin = ax.twinx()
        twin.plot(layers, [steer[layer][2] for layer in layers], marker="s", ms=3, color="darkorange",
                  label="steer score")
        twin.scatter([best], [steer[best][2]], color="crimson", zorder=3, label=f"chosen (steer): layer {best}")
        twin.set_ylabel("steer score (nats)")
        twin.legend(loc="lower right")
    ax.legend(loc="lower left")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
