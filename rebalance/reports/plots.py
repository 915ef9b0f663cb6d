"""PNG figures: the control surface f(c, v) (the static picture of the authors' interactive demo)."""

from __future__ import annotations

import torch

from ..control import ControlFunction


def plot_control_surface(control: ControlFunction, path: str, title: str = "") -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    c = torch.linspace(0, 1, 201)
    v = torch.linspace(0, 2 * control.q75v, 201)
    cc, vv = torch.meshgrid(c, v, indexing="xy")
    f = control(cc, vv).numpy()
    fig, ax = plt.subplots(figsize=(7, 5))
    from matplotlib.colors import TwoSlopeNorm

    norm = TwoSlopeNorm(vmin=control.lower, vcenter=0.0, vmax=control.upper)  # white = no steering
    mesh = ax.pcolormesh(c.numpy(), v.numpy(), f, cmap="coolwarm_r", shading="auto", norm=norm)
    ax.contour(c.numpy(), v.numpy(), f, levels=[0.0], colors="k", linewidths=0.8)
    for x in (control.q25c, control.q75c):
        ax.axvline(x, color="grey", ls="--", lw=0.8)
    for y in (control.q25v, control.q75v):
        ax.axhline(y, color="grey", ls=":", lw=0.8)
    fig.colorbar(mesh, ax=ax, label="steering coefficient f(c, v)")
    ax.set_xlabel("step confidence c")
    ax.set_ylabel("confidence variance v")
    ax.set_title(title or f"ReBalance control surface (k = {control.k:.2f})")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path



def plot_length_distributions(runs: dict, path: str, title: str = "") -> str:
    """Response lengths of correct and incorrect answers per run: steering that shortens correct
    answers mitigates overthinking; more short wrong answers would mean underthinking introduced."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
    lengths = [t for graded in runs.values() for rec in graded.records for t in rec.tokens] or [1]
    bins = np.linspace(0, max(lengths), 31)
    for ax, want, name in ((axes[0], True, "correct"), (axes[1], False, "incorrect")):
        for label, graded in runs.items():
            values = [t for rec in graded.records for t, ok in zip(rec.tokens, rec.correct) if ok == want]
            mean = f", mean {np.mean(values):.0f}" if values else ""
            ax.hist(values, bins=bins, alpha=0.5, label=f"{label} (n={len(values)}{mean})")
        ax.set_title(f"{name} answers")
        ax.set_xlabel("response tokens")
        ax.legend()
    axes[0].set_ylabel("responses")
    fig.suptitle(title or "Response lengths")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
