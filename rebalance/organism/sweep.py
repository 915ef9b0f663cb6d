"""Baseline, dynamic ReBalance and a sweep of static coefficients on one held-out set, side by side:
accuracy, tokens, re-checks per response, responses cut at the length limit, and a PNG of
accuracy against tokens (the static coefficients as a curve, baseline and dynamic as points).
The paper's argument in one picture: no single coefficient does what the control function does.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass

from ..errors import UsageError
from ..files.atomic import atomic_write_text
from ..files.names import merged_of_metrics, metrics_files, parse_stem, stem_of
from ..files.shards import read_records

RECHECK = re.compile(r"\bWait\b")
# what "dynamic beats a constant push" means, here and in the study: dynamic at <= 0.85 x the
# baseline's tokens and at most 2 points less accurate; a static coefficient is a rival when it is
# within 1 point of dynamic's accuracy (or above) at less than 1.1 x dynamic's tokens
TOKEN_RATIO, MAX_DROP, NEAR, MARGIN = 0.85, 2.0, 1.0, 1.1


@dataclass(frozen=True)
class RunSummary:
    label: str            # baseline | dynamic | static -0.5
    coef: float | None    # the static coefficient
    accuracy: float
    tokens: float
    rechecks: float       # "Wait" per response
    at_limit: int         # responses that hit the length limit
    n: int


def summarize(merged: str, metrics_path: str, label: str, coef: float | None) -> RunSummary:
    try:
        with open(metrics_path, encoding="utf-8") as handle:
            metrics = json.load(handle)
        accuracy, tokens = float(metrics["accuracy"]), float(metrics["avg_tokens"])
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise UsageError(f"{metrics_path}: not a check.py metrics file ({type(err).__name__}: {err})") from None
    records = read_records(merged)
    try:
        texts = [r["generated_responses"][0] for r in records]
    except (KeyError, IndexError, TypeError):
        raise UsageError(f"{merged}: a record without generated_responses (not a merged run file)") from None
    rechecks = sum(len(RECHECK.findall(t)) for t in texts) / max(len(texts), 1)
    at_limit = sum(r.get("finish_reason") == "length" for r in records)
    return RunSummary(label, coef, accuracy, tokens, rechecks, at_limit, len(records))


def find_runs(folder: str, suffix: str) -> list[RunSummary]:
    """Graded runs of one length and temperature (`suffix`, e.g. temp0.0_maxlen192) without a run
    id: the baseline, dynamic ReBalance and every static coefficient."""
    runs = []
    for metrics in metrics_files(folder, suffix):
        merged = merged_of_metrics(metrics)
        name = parse_stem(stem_of(merged))
        if name is None or name.run_id or name.suffix != suffix or not os.path.isfile(merged):
            continue
        if name.mode == "off":
            runs.append(summarize(merged, metrics, "baseline", None))
        elif name.mode == "dynamic":
            runs.append(summarize(merged, metrics, "dynamic", None))
        elif name.mode == "static":
            runs.append(summarize(merged, metrics, f"static {name.coef:g}", name.coef))
    order = {"baseline": 0, "dynamic": 1}
    return sorted(runs, key=lambda r: (order.get(r.label, 2), -(r.coef or 0)))


def table(runs: list[RunSummary]) -> str:
    base = next((r for r in runs if r.label == "baseline"), None)
    lines = ["| run | accuracy | tokens | tokens vs baseline | re-checks per response | at length limit |",
             "|---|---|---|---|---|---|"]
    for r in runs:
        ratio = f"{r.tokens / base.tokens:.2f} x" if base and base.tokens else ""
        lines.append(f"| {r.label} | {r.accuracy:.1f} | {r.tokens:.1f} | {ratio} | {r.rechecks:.2f} | {r.at_limit}/{r.n} |")
    return "\n".join(lines)


def verdict(runs: list[RunSummary], token_ratio: float = TOKEN_RATIO, max_drop: float = MAX_DROP) -> list[str]:
    """The organism's targets: dynamic at <= 0.85 x the baseline's tokens, at most 2 points below
    its accuracy, fewer re-checks; and whether a static coefficient is a rival (see MARGIN)."""
    base = next((r for r in runs if r.label == "baseline"), None)
    dyn = next((r for r in runs if r.label == "dynamic"), None)
    if base is None or dyn is None or not base.tokens:
        return ["targets: need a baseline and a dynamic run"]
    ratio = dyn.tokens / base.tokens
    ok = ratio <= token_ratio and dyn.accuracy >= base.accuracy - max_drop and dyn.rechecks < base.rechecks
    out = [f"dynamic: {ratio:.2f} x the baseline's tokens (target <= {token_ratio}), accuracy "
           f"{dyn.accuracy - base.accuracy:+.1f} points (target >= -{max_drop}), re-checks {base.rechecks:.2f} -> "
           f"{dyn.rechecks:.2f}: {'met' if ok else 'NOT met'}"]
    statics = [r for r in runs if r.coef is not None]
    rivals = [r for r in statics if is_rival(r.accuracy, r.tokens, dyn.accuracy, dyn.tokens)]
    if rivals:
        out.append(f"static coefficient(s) within {NEAR:g} point of dynamic's accuracy at < {MARGIN:g} x its tokens: "
                   + ", ".join(r.label for r in rivals))
    elif statics:
        best = max(statics, key=lambda r: (r.accuracy, -r.tokens))
        out.append(f"no static coefficient within {NEAR:g} point of dynamic's accuracy at < {MARGIN:g} x its tokens "
                   f"(the most accurate, {best.label}: {best.accuracy - dyn.accuracy:+.1f} points at "
                   f"{best.tokens / dyn.tokens:.2f} x its tokens)")
    return out


def is_rival(accuracy: float, tokens: float, dynamic_accuracy: float, dynamic_tokens: float) -> bool:
    """A static run that does what the dynamic run does: within NEAR points of its accuracy (or
    above) at less than MARGIN x its tokens."""
    return accuracy >= dynamic_accuracy - NEAR and tokens < MARGIN * dynamic_tokens


def draw_sweep(ax, static: list[tuple[float, float, float]], baseline: tuple[float, float] | None,
               dynamic: tuple[float, float] | None, static_label: str = "static coefficient") -> None:
    """One accuracy-against-tokens panel: the static runs (coef, tokens, accuracy) as a line with
    each point named by its coefficient, baseline and dynamic (tokens, accuracy) as markers."""
    static = sorted(static)
    if static:
        ax.plot([t for _, t, _ in static], [a for _, _, a in static], "-o", color="tab:grey", label=static_label)
        for coef, tokens, accuracy in static:
            ax.annotate(f"{coef:g}", (tokens, accuracy), textcoords="offset points", xytext=(5, 4), fontsize=8)
    if baseline is not None:
        ax.plot(*baseline, "s", color="black", ms=8, label="baseline (unsteered)")
    if dynamic is not None:
        ax.plot(*dynamic, "*", color="tab:blue", ms=12, label="dynamic ReBalance")
    ax.set_xlabel("average tokens per response")
    ax.grid(alpha=0.3)
    ax.margins(0.1)  # room for the coefficient labels at the edges


def plot_sweep(runs: list[RunSummary], path: str, title: str = "") -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.6))
    point = {r.label: (r.tokens, r.accuracy) for r in runs if r.coef is None}
    draw_sweep(ax, [(r.coef, r.tokens, r.accuracy) for r in runs if r.coef is not None], point.get("baseline"),
               point.get("dynamic"))
    ax.set_ylabel("accuracy (%)")
    ax.set_title(title or "accuracy against tokens: dynamic vs static steering")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def compare_runs(folder: str, suffix: str) -> list[RunSummary]:
    if not os.path.isdir(folder):
        raise UsageError(f"{folder}: no such folder (give the folder of the held-out runs)")
    runs = find_runs(folder, suffix)
    if not runs:
        raise UsageError(f"{folder}: no graded run named baseline_{suffix}, steer_{suffix} or "
                         f"static<c>_{suffix} (merge and grade with check.py first; --maxlen and "
                         f"--temperature pick the suffix)")
    text = table(runs)
    lines = verdict(runs)
    png = plot_sweep(runs, os.path.join(folder, "sweep.png"))
    atomic_write_text(text + "\n\n" + "\n".join(lines) + "\n", os.path.join(folder, "sweep.md"))
    print(text)
    print("\n".join(lines))
    print(f"plot: {png}")
    return runs
