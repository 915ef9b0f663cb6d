"""A model's results table: every graded run under OUTPUT_DIR/MODEL, baseline beside ReBalance per
benchmark, and the paper's numbers where it reports that model and benchmark.

  python -m rebalance.reports.report OUTPUT_DIR/MODEL [more model folders, or OUTPUT_DIR for all of them]

Reads the `*.metrics.json` that check.py writes beside each merged run. Writes report.md,
report.csv and report.png into the model folder. Accuracy is over the examples graded (so a
`--limit` pass reads as a percentage of what ran); a pair of runs that differ in examples graded,
length limit, temperature or grader is flagged in the table, not silently compared.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import sys
from dataclasses import dataclass, field

from ..errors import UsageError, cli_entry, writable
from ..files.atomic import atomic_write_text
from ..files.cards import differences
from ..files.names import RunName, graded_runs_below, parse_stem, stem_of
from .paper import SOURCE, PaperCell, paper_cell

# compared card fields that differ between a baseline and its ReBalance run by design, or that the
# table flags from the run names already
EXPECTED_TO_DIFFER = {"mode", "vector_sha256", "steer_layer", "inject_at", "constants", "coef", "temperature",
                      "max_new_tokens"}


@dataclass(frozen=True)
class Run:
    benchmark: str
    name: RunName       # what its stem says: mode, temperature, length limit, coefficient, run id
    graded: int         # examples with a record
    n: int              # examples in the dataset
    accuracy: float     # % of the graded examples
    tokens: float       # average response tokens
    grader: str
    compared: dict | None = None  # the run card's compared fields, when the run has a card
    commits: tuple[str, ...] = ()  # git commits of the code that made its records

    @property
    def label(self) -> str:
        return self.name.stem  # e.g. steer_temp0.7_maxlen16000

    @property
    def mode(self) -> str:
        """Its side of the comparison: baseline (mode off) or steer (dynamic or static)."""
        return "baseline" if self.name.mode == "off" else "steer"

    @property
    def temperature(self) -> float:
        return self.name.temperature

    @property
    def max_tokens(self) -> int:
        return self.name.max_new_tokens

    @property
    def tag(self) -> str:
        """What tells a steered run from the release's name: run id, static coefficient."""
        return "_".join(([self.name.run_id] if self.name.run_id else [])
                        + ([f"static{self.name.coef:g}"] if self.name.mode == "static" else []))

    @property
    def commit(self) -> str:
        return " + ".join(c[:7] for c in self.commits)

    @property
    def display_name(self) -> str:
        """What a reader calls the run: baseline, ReBalance (dynamic) or static <coef>, with its run id."""
        name = self.name
        kind = f"static {name.coef:g}" if name.mode == "static" else {"off": "baseline"}.get(name.mode, "ReBalance")
        return f"{name.run_id} {kind}" if name.run_id else kind


@dataclass
class ReportRow:
    benchmark: str
    base: Run | None
    steer: Run | None
    paper: PaperCell | None
    flags: list[str] = field(default_factory=list)

    @property
    def delta_points(self) -> float | None:
        return self.steer.accuracy - self.base.accuracy if self.base and self.steer else None

    @property
    def delta_tokens(self) -> float | None:
        if not (self.base and self.steer) or not self.base.tokens:
            return None
        return 100.0 * (self.steer.tokens - self.base.tokens) / self.base.tokens


def read_run(path: str) -> Run | None:
    """A check.py metrics file as a Run; None for files that are not a run of this suite."""
    stem = stem_of(path)
    name = parse_stem(stem)
    if name is None or name.mode == "collection":
        return None
    try:
        with open(path, encoding="utf-8") as handle:
            m = json.load(handle)
        correct = m["accuracy"] * m["n"] / 100.0  # check.py counts missing examples as wrong
        graded = int(m["graded"])
        card = m.get("run_card") or {}
        prov = card.get("provenance", {})
        commits = prov.get("git_commits") or [prov.get("git_commit")]
        return Run(m.get("data_name") or os.path.basename(os.path.dirname(path)), name, graded, int(m["n"]),
                   100.0 * correct / graded if graded else 0.0, float(m["avg_tokens"]), m.get("grader", "strict"),
                   card.get("compared"), tuple(str(c) for c in commits if c and c != "None"))
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as err:
        raise UsageError(f"{path}: not a check.py metrics file ({type(err).__name__}: {err})") from None


def pair_runs(model: str, runs: list[Run]) -> list[ReportRow]:
    """One row per benchmark and steered run, each beside the benchmark's baseline."""
    rows = []
    for benchmark in sorted({r.benchmark for r in runs}):
        mine = [r for r in runs if r.benchmark == benchmark]
        bases = sorted((r for r in mine if r.mode == "baseline"), key=lambda r: r.label)
        steers = sorted((r for r in mine if r.mode == "steer"), key=lambda r: (r.tag != "", r.label))
        for base in bases[1:]:
            print(f"note: {benchmark}: several baselines, comparing with {bases[0].label} (not {base.label})",
                  file=sys.stderr)
        base = bases[0] if bases else None
        for steer in steers or [None]:
            row = ReportRow(benchmark, base, steer, paper_cell(model, benchmark))
            row.flags = comparison_flags(base, steer)
            rows.append(row)
    return rows


def comparison_flags(base: Run | None, steer: Run | None) -> list[str]:
    if base is None:
        return ["no baseline run"]
    if steer is None:
        return ["no ReBalance run"]
    flags = []
    if base.graded != steer.graded:
        flags.append(f"graded {base.graded} vs {steer.graded} examples")
    if base.max_tokens != steer.max_tokens:
        flags.append(f"max length {base.max_tokens} vs {steer.max_tokens}")
    if base.temperature != steer.temperature:
        flags.append(f"temperature {base.temperature:g} vs {steer.temperature:g}")
    if base.grader != steer.grader:
        flags.append(f"grader {base.grader} vs {steer.grader}")
    if base.compared is not None and steer.compared is not None:
        flags += [f"{field} {a} vs {b}" for field, a, b in differences(base.compared, steer.compared)
                  if field not in EXPECTED_TO_DIFFER]
    for run in (base, steer):
        if len(run.commits) > 1:
            flags.append(f"{run.label} mixes code versions ({run.commit})")
    if base.commits and steer.commits and base.commits != steer.commits:
        flags.append(f"code {base.commit} vs {steer.commit}")
    return flags


def _num(value: float | None, fmt: str) -> str:
    return "" if value is None else format(value, fmt)


def _arrow(a: float | None, b: float | None, fmt: str) -> str:
    return "" if a is None or b is None else f"{a:{fmt}} -> {b:{fmt}}"


COLUMNS = ["benchmark", "graded", "baseline acc", "ReBalance acc", "change (pts)", "baseline tokens",
           "ReBalance tokens", "change (%)", "paper acc", "paper tokens", "flags", "commit"]


def table_cells(row: ReportRow) -> list[str]:
    runs = [r for r in (row.base, row.steer) if r is not None]
    graded = " / ".join(dict.fromkeys(f"{r.graded}/{r.n}" for r in runs))
    paper = row.paper
    return [row.benchmark + (f" ({row.steer.tag})" if row.steer and row.steer.tag else ""),
            graded,
            _num(row.base and row.base.accuracy, ".1f"), _num(row.steer and row.steer.accuracy, ".1f"),
            _num(row.delta_points, "+.1f"),
            _num(row.base and row.base.tokens, ".0f"), _num(row.steer and row.steer.tokens, ".0f"),
            _num(row.delta_tokens, "+.1f"),
            _arrow(paper and paper.base_acc, paper and paper.steer_acc, ".1f"),
            _arrow(paper and paper.base_tokens, paper and paper.steer_tokens, ".0f"),
            "; ".join(row.flags), row_commit(row)]


def row_commit(row: ReportRow) -> str:
    """The code that made the row's runs: one commit, or both when they differ."""
    return " vs ".join(dict.fromkeys(r.commit for r in (row.base, row.steer) if r is not None and r.commit))


def markdown(model: str, rows: list[ReportRow]) -> str:
    lines = [f"# {model}: baseline vs ReBalance", "",
             "Accuracy: pass@1 in % of the examples graded; tokens: average response length. "
             f"Paper: {SOURCE}, where it reports this model and benchmark.", "",
             "| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(table_cells(row)) + " |" for row in rows]
    settings = sorted({(r.temperature, r.max_tokens, r.grader) for row in rows for r in (row.base, row.steer) if r})
    lines += ["", "Runs: " + ", ".join(f"temperature {t:g}, max length {m}, {g} grader" for t, m, g in settings)]
    return "\n".join(lines) + "\n"


def csv_text(model: str, rows: list[ReportRow]) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["model", "benchmark", "run", "graded", "n", "base_acc", "steer_acc", "delta_pts", "base_tokens",
                     "steer_tokens", "delta_tokens_pct", "paper_base_acc", "paper_steer_acc", "paper_base_tokens",
                     "paper_steer_tokens", "flags", "commit"])
    for row in rows:
        run = row.steer or row.base
        p = row.paper
        writer.writerow([model, row.benchmark, row.steer.label if row.steer else "", run.graded, run.n,
                         _num(row.base and row.base.accuracy, ".4f"), _num(row.steer and row.steer.accuracy, ".4f"),
                         _num(row.delta_points, ".4f"), _num(row.base and row.base.tokens, ".2f"),
                         _num(row.steer and row.steer.tokens, ".2f"), _num(row.delta_tokens, ".4f"),
                         _num(p and p.base_acc, "g"), _num(p and p.steer_acc, "g"),
                         _num(p and p.base_tokens, "g"), _num(p and p.steer_tokens, "g"), "; ".join(row.flags),
                         row_commit(row)])
    return out.getvalue()


def plot(model: str, rows: list[ReportRow], path: str) -> str:
    import matplotlib.pyplot as plt

    fig = figure(model, rows)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def figure(model: str, rows: list[ReportRow]):
    """One panel per row, titled by benchmark and steered run: tokens on x, accuracy on y, an arrow
    baseline -> steered run (the paper's beside it when the paper gives both numbers; its
    accuracies as dashed lines otherwise)."""
    import math

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = min(3, len(rows))
    nrows = math.ceil(len(rows) / cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(4.2 * cols, 3.6 * nrows), squeeze=False)
    for ax, row in zip(axes.flat, rows):
        xs, ys = [], []
        ours = [r for r in (row.base, row.steer) if r is not None]
        for run, colour in ((row.base, "tab:grey"), (row.steer, "tab:blue")):
            if run is not None:
                ax.plot(run.tokens, run.accuracy, "o", color=colour, label=run.display_name)
        if row.base and row.steer:
            ax.annotate("", xy=(row.steer.tokens, row.steer.accuracy), xytext=(row.base.tokens, row.base.accuracy),
                        arrowprops=dict(arrowstyle="->", color="tab:blue", lw=1.6))
        xs += [r.tokens for r in ours]
        ys += [r.accuracy for r in ours]
        p = row.paper
        if p is not None and p.base_tokens is not None:
            ax.annotate("", xy=(p.steer_tokens, p.steer_acc), xytext=(p.base_tokens, p.base_acc),
                        arrowprops=dict(arrowstyle="->", color="tab:orange", lw=1.2, ls="--"))
            ax.plot([p.base_tokens, p.steer_tokens], [p.base_acc, p.steer_acc], "s", color="tab:orange", ms=4,
                    label="paper")
            xs += [p.base_tokens, p.steer_tokens]
            ys += [p.base_acc, p.steer_acc]
        elif p is not None:
            ax.axhline(p.base_acc, color="tab:orange", ls=":", lw=1, label="paper baseline acc")
            ax.axhline(p.steer_acc, color="tab:orange", ls="--", lw=1, label="paper ReBalance acc")
            ys += [p.base_acc, p.steer_acc]
        if xs:
            pad = 0.08 * (max(xs) - min(xs) or max(xs) or 1)
            ax.set_xlim(min(xs) - pad, max(xs) + pad)
        if ys:
            pad = 0.1 * (max(ys) - min(ys) or 5)
            ax.set_ylim(max(0, min(ys) - pad), min(100, max(ys) + pad))
        title = row.benchmark + (f": {row.steer.display_name}" if row.steer else "")
        title += " (flagged)" if row.flags and row.base and row.steer else ""
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("average tokens")
        ax.set_ylabel("accuracy (%)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="best")
    for ax in list(axes.flat)[len(rows):]:
        ax.axis("off")
    fig.suptitle(f"{model}: baseline -> steered runs", fontsize=11)
    fig.tight_layout()
    return fig


def model_dirs(paths: list[str]) -> list[str]:
    """Model folders: those given, or each folder of a given output folder that holds graded runs."""
    found = []
    for path in paths:
        if not os.path.isdir(path):
            raise UsageError(f"{path}: no such folder (give OUTPUT_DIR/MODEL)")
        if graded_runs_below(path, 1):
            found.append(path)
            continue
        inner = sorted({os.path.dirname(os.path.dirname(p)) for p in graded_runs_below(path, 2)})
        if not inner:
            raise UsageError(f"{path}: no graded runs (*.metrics.json from check.py) in its benchmark folders")
        found += inner
    return found


def build_report(model_dir: str) -> tuple[str, list[ReportRow]]:
    model = os.path.basename(os.path.normpath(model_dir))
    runs = [run for path in graded_runs_below(model_dir, 1) if (run := read_run(path)) is not None]
    if not runs:
        raise UsageError(f"{model_dir}: no graded baseline_/steer_ runs")
    return model, pair_runs(model, runs)


def write_report(model_dir: str) -> dict[str, str]:
    model, rows = build_report(model_dir)
    text = markdown(model, rows)
    paths = {kind: os.path.join(model_dir, f"report.{kind}") for kind in ("md", "csv", "png")}
    with writable(paths["md"], "the report goes into the model folder"):
        atomic_write_text(text, paths["md"])
        atomic_write_text(csv_text(model, rows), paths["csv"])
        plot(model, rows, paths["png"])
    print(text)
    print("written: " + ", ".join(paths.values()))
    return paths


@cli_entry
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m rebalance.reports.report", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folders", nargs="+", help="OUTPUT_DIR/MODEL (or OUTPUT_DIR: every model in it)")
    args = parser.parse_args(argv)
    for folder in model_dirs(args.folders):
        write_report(folder)
    return 0


if __name__ == "__main__":
    sys.exit(main())
