"""The organism study: does dynamic ReBalance beat every constant push, on organisms nobody tuned?

For each training seed: train the organism (cached), then run the suite's own pipeline as a user
would, each stage a command of the suite (collection on the seen set, layer search by the steer
criterion, vector and calibration: nothing picked by hand), then the baseline, dynamic ReBalance and a static sweep on a
held-out set. Every stage is skipped when its output is there, so a killed study resumes where it
stopped (and each command resumes its own records). Greedy decoding: the organism's visible
failure modes are its majority behaviour, so one response per problem measures them; the latent
one shows when a push tips it.

Output under `--out`: one table per seed, a summary over seeds, paired bootstrap intervals and one
PNG (accuracy against tokens, a panel per seed).
"""

from __future__ import annotations

import json
import os
import random
import statistics
from dataclasses import asdict, dataclass, field

from ..errors import UsageError
from ..examples import dataset_file, load_examples
from ..files.atomic import atomic_write_text
from ..files.names import RunName, calibration_path, graded_path, vector_file_name
from ..files.shards import read_records
from ..pipeline import Commands, Pipeline
from .recipe import EARLY_P, HELDOUT_SET, SEEN_SET
from .sweep import MARGIN, MAX_DROP, NEAR, TOKEN_RATIO, draw_sweep, is_rival
from .train import Recipe, organism_model_dir

SWEEP = (-1.0, -0.75, -0.5, -0.25, 0.25, 0.5, 0.75, 1.0)
SEEN, HELDOUT, MAXLEN = 80, 200, 192


@dataclass(frozen=True)
class StudyConfig:
    out: str = "study_out"
    seen: int = SEEN
    heldout: int = HELDOUT
    maxlen: int = MAXLEN
    sweep: tuple[float, ...] = SWEEP
    batch_size: int = 96     # one worker with a wide batch decodes faster on a CPU than two narrow ones
    workers: int = 1
    criterion: str = "steer"  # R^2 is flat over the organism's layers (docs/method.md §4)
    bootstrap: int = 10_000


@dataclass
class RunResult:
    label: str                       # baseline | dynamic | static -0.5
    coef: float | None
    correct: list[int]               # 0/1 per held-out problem, in idx order
    tokens: list[int]
    at_limit: int
    families: list[str]              # the family of each problem, in idx order
    coefs_by_boundary: dict[str, list[float]] = field(default_factory=dict)  # f at each kind of boundary

    @property
    def family_accuracy(self) -> dict[str, float]:
        out: dict[str, list[int]] = {}
        for family, ok in zip(self.families, self.correct):
            out.setdefault(family, []).append(ok)
        return {f: 100.0 * sum(v) / len(v) for f, v in sorted(out.items())}

    @property
    def accuracy(self) -> float:
        return 100.0 * sum(self.correct) / len(self.correct)

    @property
    def mean_tokens(self) -> float:
        return sum(self.tokens) / len(self.tokens)


# ---- statistics ------------------------------------------------------------------------------

def paired_bootstrap(a: list[int], b: list[int], draws: int = 10_000, seed: int = 0) -> tuple[float, float]:
    """95 % percentile interval of mean(a) - mean(b) in points, resampling problems with replacement
    (the same problems for both runs: they are paired)."""
    if len(a) != len(b) or not a:
        raise ValueError(f"paired samples of equal, non-zero length needed, got {len(a)} and {len(b)}")
    diffs = [x - y for x, y in zip(a, b)]
    n, rng = len(diffs), random.Random(seed)
    means = sorted(sum(diffs[rng.randrange(n)] for _ in range(n)) / n for _ in range(draws))
    lo, hi = means[int(0.025 * (draws - 1))], means[int(round(0.975 * (draws - 1)))]
    return 100.0 * lo, 100.0 * hi


def family_intervals(a: "RunResult", b: "RunResult", draws: int) -> dict[str, tuple[float, float]]:
    """Per problem family, the paired 95 % interval of a's accuracy minus b's."""
    out = {}
    for family in a.family_accuracy:
        rows = [i for i, f in enumerate(a.families) if f == family]
        out[family] = paired_bootstrap([a.correct[i] for i in rows], [b.correct[i] for i in rows], draws)
    return out


def best_static(runs: list[RunResult]) -> RunResult | None:
    """The most accurate static coefficient (the one with fewer tokens among equals)."""
    static = [r for r in runs if r.coef is not None]
    return max(static, key=lambda r: (r.accuracy, -r.mean_tokens)) if static else None


def targets(runs: list[RunResult], draws: int = 10_000) -> dict:
    """The study's verdicts for one seed (see docs/method.md §15)."""
    base = next(r for r in runs if r.label == "baseline")
    dyn = next(r for r in runs if r.label == "dynamic")
    ratio = dyn.mean_tokens / base.mean_tokens
    vs_base = paired_bootstrap(dyn.correct, base.correct, draws)
    best = best_static(runs)
    vs_best = paired_bootstrap(dyn.correct, best.correct, draws) if best else None
    rivals = [r.label for r in runs
              if r.coef is not None and is_rival(r.accuracy, r.mean_tokens, dyn.accuracy, dyn.mean_tokens)]
    by_family = family_intervals(dyn, base, draws)
    raised = [f for f, (lo, _) in by_family.items() if lo > 0]
    lowered = [f for f, (_, hi) in by_family.items() if hi < 0]
    fewer = [f for f, acc in dyn.family_accuracy.items() if acc < base.family_accuracy[f]]
    return {
        "token_ratio": ratio, "accuracy_gain": dyn.accuracy - base.accuracy, "ci_vs_baseline": vs_base,
        "best_static": best.label if best else None, "ci_vs_best_static": vs_best,
        "rivals": rivals, "family_intervals": by_family, "families_raised": raised, "families_lowered": lowered,
        "families_fewer_correct": fewer,
        "cheaper": ratio <= TOKEN_RATIO and vs_base[0] > -MAX_DROP,
        "beats_sweep": not rivals,
        "families": bool(raised) and not lowered,
    }


# ---- one seed ----------------------------------------------------------------------------------

class SeedRun:
    """The stages of one seed through the pipeline (each skipped when its output is complete), every
    command's output in the seed's log."""

    def __init__(self, seed: int, config: StudyConfig, model_dir: str):
        self.seed, self.config, self.model = seed, config, model_dir
        self.folder = os.path.abspath(os.path.join(config.out, f"seed{seed}"))
        self.data = os.path.abspath(os.path.join(config.out, "Data"))
        self.log = os.path.join(self.folder, "commands.log")
        os.makedirs(self.folder, exist_ok=True)
        self.pipeline = Pipeline(model_dir, self.data, os.path.join(self.folder, "runs"), config.maxlen,
                                 config.batch_size, config.workers, run=Commands(log=self.log), say=lambda line: None)
        self.seen_dir = self.pipeline.folder(SEEN_SET)
        self.held_dir = self.pipeline.folder(HELDOUT_SET)

    def collect(self) -> str:
        return self.pipeline.collect(SEEN_SET, set(range(self.config.seen)))

    def layer(self, merged: str) -> int:
        return self.pipeline.select_layer(merged, self.config.criterion)

    def vector(self, merged: str, layer: int) -> str:
        return self.pipeline.extract(merged, layer, os.path.join(self.folder, "vectors", vector_file_name(layer)))

    def heldout_run(self, mode: str, vector: str, coef: float | None = None) -> str:
        name = RunName(mode, 0.0, self.config.maxlen, coef)
        flags = ["--temperature", "0", "--steer_mode", mode] + (["--steer_vector_path", vector] if mode != "off" else [])
        flags += ["--steer_coef", format(coef, "g")] if coef is not None else []
        merged = self.pipeline.steered(HELDOUT_SET, set(range(self.config.heldout)), name, flags, mode)
        self.pipeline.grade(merged, HELDOUT_SET, mode, ["--workers", "2"])
        return merged


def load_result(merged: str, label: str, coef: float | None, families: list[str]) -> RunResult:
    """Per-problem verdicts and tokens from check.py's graded file, and finish reasons from the run."""
    graded = sorted(read_records(graded_path(merged)), key=lambda r: r["idx"])
    if [r["idx"] for r in graded] != list(range(len(families))):
        raise UsageError(f"{graded_path(merged)}: expected one graded record per held-out problem")
    correct = [int(r["is_correct"][0]) for r in graded]  # greedy: one response per problem
    tokens = [int(r["num_tokens"][0]) for r in graded]
    records = sorted(read_records(merged), key=lambda r: r["idx"])
    at_limit = sum(r.get("finish_reason") == "length" for r in records)
    coefs: dict[str, list[float]] = {}
    for record in records:
        for kind, value in zip(boundary_kinds(record.get("step_texts") or [], families[record["idx"]]),
                               record.get("steer_coefs") or []):
            coefs.setdefault(kind, []).append(value)
    return RunResult(label, coef, correct, tokens, at_limit, families, coefs)


def step_kind(text: str) -> str:
    """What an organism step is, from its first word: first equation, second equation, the needed
    third one ("But wait, ..."), a re-check, the answer."""
    word = text.split(maxsplit=1)[0] if text.strip() else ""
    return {"First,": "first", "Then": "then", "But": "needed", "Wait,": "re-check", "The": "answer"}.get(word, "other")


def boundary_kinds(step_texts: list[str], family: str) -> list[str]:
    """The kind of each boundary, named after the step it closes; the boundary after the second
    equation of a three-step problem is where underthinking is decided ("before early end": the
    needed step or the answer comes next)."""
    kinds, equations = [], 0
    for text in step_texts:
        kind = step_kind(text)
        equations += kind in ("first", "then")
        if kind == "then" and equations == 2 and family in EARLY_P:
            kind = "before early end"
        kinds.append(kind)
    return kinds


def step_statistics(merged: str) -> dict[str, dict[str, float]]:
    """Median confidence c and variance v = (c_j - c_{j-1})^2 / 4 of each kind of step in the
    collection run: the premise the control function relies on (re-checks less sure than sums)."""
    values: dict[str, tuple[list[float], list[float]]] = {}
    for record in read_records(merged):
        confidences = record.get("sentence_confidences") or []
        for j, (text, c) in enumerate(zip(record.get("step_texts") or [], confidences)):
            cs, vs = values.setdefault(step_kind(text), ([], []))
            cs.append(c)
            if j:
                vs.append((c - confidences[j - 1]) ** 2 / 4)
    return {kind: {"n": len(cs), "c": statistics.median(cs), "v": statistics.median(vs) if vs else float("nan")}
            for kind, (cs, vs) in sorted(values.items())}


def heldout_families(data: str) -> list[str]:
    examples = load_examples(data, HELDOUT_SET)
    missing = [e.idx for e in examples if "family" not in e.extra]
    if missing:
        raise UsageError(f"{dataset_file(data, HELDOUT_SET)}:{missing[0] + 1}: no 'family': the study needs the "
                         "held-out set `python -m rebalance.organism data` writes")
    return [e.extra["family"] for e in examples]


def run_seed(seed: int, config: StudyConfig) -> dict:
    """Every stage of one seed (each resumed or skipped), then its table and verdicts."""
    from tqdm.auto import tqdm

    model = organism_model_dir(Recipe(seed=seed))
    stages = SeedRun(seed, config, model)
    labels = [("baseline", "off", None), ("dynamic", "dynamic", None)]
    labels += [(f"static {c:g}", "static", c) for c in config.sweep]
    bar = tqdm(total=3 + len(labels), desc=f"seed {seed}", unit="stage", dynamic_ncols=True)
    merged = stages.collect()
    bar.update()
    layer = stages.layer(merged)
    bar.update()
    vector = stages.vector(merged, layer)
    bar.update()
    families = heldout_families(stages.data)
    runs = []
    for label, mode, coef in labels:
        bar.set_postfix_str(label)
        runs.append(load_result(stages.heldout_run(mode, vector, coef), label, coef, families))
        bar.update()
    bar.close()
    with open(calibration_path(vector), encoding="utf-8") as handle:
        calibration = json.load(handle)
    summary = {"seed": seed, "layer": layer, "model": model, "calibration": calibration,
               "collection_steps": step_statistics(merged),
               "runs": [{k: v for k, v in asdict(r).items() if k != "families"}
                        | {"accuracy": r.accuracy, "mean_tokens": r.mean_tokens, "family_accuracy": r.family_accuracy}
                        for r in runs],
               "targets": targets(runs, config.bootstrap)}
    atomic_write_text(json.dumps(summary, indent=1) + "\n", os.path.join(stages.folder, "summary.json"))
    return summary


# ---- tables and the figure ---------------------------------------------------------------------

def seed_table(summary: dict) -> str:
    runs = summary["runs"]
    base = next(r for r in runs if r["label"] == "baseline")
    families = list(base["family_accuracy"])
    head = "| run | accuracy | tokens | x baseline | at limit | " + " | ".join(families) + " |"
    lines = [head, "|" + "---|" * (5 + len(families))]
    for r in runs:
        fam = " | ".join(f"{r['family_accuracy'][f]:.0f}" for f in families)
        lines.append(f"| {r['label']} | {r['accuracy']:.1f} | {r['mean_tokens']:.1f} | "
                     f"{r['mean_tokens'] / base['mean_tokens']:.2f} | {r['at_limit']}/{len(r['correct'])} | {fam} |")
    return "\n".join(lines)


def verdict_lines(summary: dict) -> list[str]:
    t = summary["targets"]
    lo, hi = t["ci_vs_baseline"]
    out = [f"dynamic: {t['token_ratio']:.2f} x the baseline's tokens, accuracy {t['accuracy_gain']:+.1f} points "
           f"(95 % interval {lo:+.1f} to {hi:+.1f}): {'met' if t['cheaper'] else 'NOT met'}"]
    if t["ci_vs_best_static"]:
        lo, hi = t["ci_vs_best_static"]
        out.append(f"against the most accurate static run ({t['best_static']}): {lo:+.1f} to {hi:+.1f} points")
    out.append(f"every static coefficient within {NEAR:g} point of dynamic's accuracy uses >= {MARGIN:g} x its "
               "tokens: met" if t["beats_sweep"] else
               f"static run(s) as accurate at < {MARGIN:g} x dynamic's tokens: {', '.join(t['rivals'])}")
    out.append(f"families (raised or lowered: the 95 % interval of the difference excludes 0): raised "
               f"{', '.join(t['families_raised']) or 'none'}; lowered {', '.join(t['families_lowered']) or 'none'}: "
               f"{'met' if t['families'] else 'NOT met'}; fewer correct at all: "
               f"{', '.join(t['families_fewer_correct']) or 'none'}")
    runs = {r["label"]: r for r in summary["runs"]}
    base, dyn = runs["baseline"]["family_accuracy"], runs["dynamic"]["family_accuracy"]
    out.append("dynamic - baseline by family, points (95 % interval): " + "; ".join(
        f"{f} {dyn[f] - base[f]:+.1f} ({lo:+.1f}, {hi:+.1f})" for f, (lo, hi) in t["family_intervals"].items()))
    coefs = runs["dynamic"]["coefs_by_boundary"]
    out.append("f(c, v) of the dynamic run, by the step a boundary closes (mean, min to max, n): " + "; ".join(
        f"{kind} {statistics.mean(v):+.2f} ({min(v):+.2f} to {max(v):+.2f}, {len(v)})"
        for kind, v in sorted(coefs.items())))
    steps = summary.get("collection_steps", {})
    out.append("collection steps, median confidence c / variance v: " + "; ".join(
        f"{kind} {s['c']:.3f} / {s['v']:.5f} ({s['n']})" for kind, s in steps.items()))
    return out


def summary_table(summaries: list[dict]) -> str:
    lines = ["| seed | layer | baseline acc / tokens | dynamic acc / tokens | x tokens | dyn - base (95 % CI) | "
             "dyn - best static (95 % CI) | targets met |", "|---|---|---|---|---|---|---|---|"]
    for s in summaries:
        runs, t = s["runs"], s["targets"]
        base = next(r for r in runs if r["label"] == "baseline")
        dyn = next(r for r in runs if r["label"] == "dynamic")
        best = t["ci_vs_best_static"] or (float("nan"), float("nan"))
        met = sum(bool(t[k]) for k in ("cheaper", "beats_sweep", "families"))
        lines.append(f"| {s['seed']} | {s['layer']} | {base['accuracy']:.1f} / {base['mean_tokens']:.1f} | "
                     f"{dyn['accuracy']:.1f} / {dyn['mean_tokens']:.1f} | {t['token_ratio']:.2f} | "
                     f"{t['accuracy_gain']:+.1f} ({t['ci_vs_baseline'][0]:+.1f}, {t['ci_vs_baseline'][1]:+.1f}) | "
                     f"{t['best_static']}: ({best[0]:+.1f}, {best[1]:+.1f}) | {met}/3 |")
    return "\n".join(lines)


_TARGET_NAMES = {"cheaper": "fewer tokens, accuracy kept", "beats_sweep": "beats the static sweep",
                 "families": "a family raised, none lowered"}


def over_seeds(summaries: list[dict]) -> list[str]:
    """What holds across seeds: how many meet each target, and the spread of the two headline
    numbers (mean, sample standard deviation, range), so that no single seed stands for the study."""
    n = len(summaries)
    ratios = [s["targets"]["token_ratio"] for s in summaries]
    gains = [s["targets"]["accuracy_gain"] for s in summaries]

    def spread(values: list[float], fmt: str) -> str:
        sd = format(statistics.stdev(values), fmt.lstrip("+")) if len(values) > 1 else "-"  # one seed: no spread
        return (f"mean {format(statistics.mean(values), fmt)} (sd {sd}, "
                f"{format(min(values), fmt)} to {format(max(values), fmt)})")

    met = "; ".join(f"{name} {sum(bool(s['targets'][key]) for s in summaries)}/{n}"
                    for key, name in _TARGET_NAMES.items())
    best = ", ".join(f"seed {s['seed']}: {s['targets']['best_static']}" for s in summaries)
    return [f"over {n} seed(s): dynamic's tokens x baseline {spread(ratios, '.2f')}; accuracy - baseline, "
            f"points, {spread(gains, '+.1f')}",
            f"seeds meeting each target: {met}",
            f"most accurate static coefficient: {best}"]


def plot_study(summaries: list[dict], path: str) -> str:
    import matplotlib.pyplot as plt

    fig = study_figure(summaries)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def study_figure(summaries: list[dict]):
    """Accuracy against tokens, one panel per seed: the static sweep as a line, baseline and dynamic
    as points, every point named."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(summaries), figsize=(4.2 * len(summaries), 4.0), squeeze=False)
    for ax, s in zip(axes[0], summaries):
        point = {r["label"]: (r["mean_tokens"], r["accuracy"]) for r in s["runs"] if r["coef"] is None}
        draw_sweep(ax, [(r["coef"], r["mean_tokens"], r["accuracy"]) for r in s["runs"] if r["coef"] is not None],
                   point.get("baseline"), point.get("dynamic"), static_label="static sweep")
        ax.set_title(f"seed {s['seed']} (layer {s['layer']})", fontsize=10)
    axes[0][0].set_ylabel("accuracy (%)")
    axes[0][0].legend(fontsize=7, loc="best")
    fig.tight_layout()
    return fig


def run_study(seeds: list[int], config: StudyConfig = StudyConfig()) -> list[dict]:
    from .recipe import write_sets

    write_sets(os.path.join(config.out, "Data"), config.seen, config.heldout)
    summaries = []
    for seed in seeds:
        summary = run_seed(seed, config)
        summaries.append(summary)
        print(f"\n## seed {seed} (layer {summary['layer']})\n\n{seed_table(summary)}\n")
        print("\n".join(verdict_lines(summary)))
    overview = [summary_table(summaries), "", *over_seeds(summaries)]
    text = ["# Organism study", "", *overview, ""]
    for s in summaries:
        text += [f"## seed {s['seed']} (layer {s['layer']})", "", seed_table(s), "", *verdict_lines(s), ""]
    tables = os.path.join(config.out, "study.md")
    atomic_write_text("\n".join(text), tables)
    png = plot_study(summaries, os.path.join(config.out, "study.png"))
    print("", *overview, "", f"tables: {tables}", f"plot: {png}", sep="\n")
    return summaries
