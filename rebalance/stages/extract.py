"""Stage 3, the steering vector and its calibration (`hidden_analysis_auto.py`): label the steps of a
collection run as overthinking or confident, take the difference of the mean hidden states at the
chosen layer, and derive the control function's constants; writes the vector and
`<save_path stem>.json` (the calibration file) beside it (docs/method.md §5-§6)."""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass
from typing import Any

import torch

from ..analysis.collected import (
    HiddenFiles,
    Pairing,
    available_layers,
    iter_hidden,
    model_name_from_path,
    open_collection,
    report_pairing,
    require_usable,
)
from ..analysis.labels import LABEL_RULES, NEGATIVE, POSITIVE, Quantiles, quantiles, record_labels
from ..analysis.layer_scoring import check_layers
from ..analysis.vectors import lda_diagnostics, low_values, save_vector, steering_vector
from ..calibration import Calibration
from ..errors import UsageError, cli_entry, writable
from ..files.names import calibration_path
from .flags import add_collection_input_flags, add_ignored_flag


@dataclass(frozen=True)
class ExtractJob:
    jsonl_path: str
    hidden_dir: str
    layer: int
    save_path: str
    max_files: int | None = None
    offset: int = 1
    labels: str = "conf_mixed"
    normalize: bool = False
    model_name: str | None = None   # recorded in the calibration (default: from the path)
    verbose: bool = False

    def __post_init__(self) -> None:
        if self.labels not in LABEL_RULES:
            raise UsageError(f"--labels must be one of {', '.join(LABEL_RULES)}, got {self.labels!r}")


def build_parser(description: str = __doc__) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=description)
    add_collection_input_flags(parser)
    parser.add_argument("--layer_id", type=int, required=True, help="HF hidden_states index (hidden_config_ridge.py's pick)")
    parser.add_argument("--save_path", required=True, help="e.g. vectors/MODEL/steer_vector_layer19_conf_mixed.pt")
    parser.add_argument("--labels", choices=LABEL_RULES, default="conf_mixed",
                        help="conf_mixed: the release (lexicon or confidence); paper: confidence and variance")
    parser.add_argument("--normalize", action="store_true", help="save S/||S|| (the paper's variant)")
    parser.add_argument("--model_name", default=None, help="recorded in the calibration (default: from the path)")
    add_ignored_flag(parser, "--threshold", type=float,
                     why="the labels use the q25 and q75 confidence quantiles of the run (the authors' script "
                         "marks it deprecated and ignores it too)")
    return parser


def make_job(args: argparse.Namespace) -> ExtractJob:
    return ExtractJob(args.jsonl_path, args.hidden_dir, args.layer_id, args.save_path, args.max_files,
                      args.expected_offset, args.labels, args.normalize, args.model_name, args.verbose)


def _labelled_rows(pairing: Pairing, files: HiddenFiles, layer: int, offset: int, rule: str,
                   q: Quantiles) -> tuple[torch.Tensor, torch.Tensor]:
    """The positive and negative rows of one layer, as float32 copies (one layer in memory)."""
    positive: list[torch.Tensor] = []
    negative: list[torch.Tensor] = []
    width = 0
    for rec, per_layer in iter_hidden(pairing, files, [layer]):
        rows = per_layer[layer]
        width = rows.shape[1]
        labels = record_labels(rule, rec.confidences, rec.step_texts, rec.response, rows.shape[0], offset, q)
        for wanted, out in ((POSITIVE, positive), (NEGATIVE, negative)):
            picked = [j for j, label in enumerate(labels) if label == wanted]
            if picked:
                out.append(rows[picked].float())  # advanced indexing copies: the file is released
    require_usable(pairing)
    join = lambda parts: torch.cat(parts) if parts else torch.zeros(0, width)  # noqa: E731
    return join(positive), join(negative)


def run(job: ExtractJob) -> dict[str, Any]:
    """Write the vector to `job.save_path` and the calibration beside it; returns the calibration."""
    records, files, pairing = open_collection(job.jsonl_path, job.hidden_dir, job.max_files, job.offset)
    check_layers([job.layer], available_layers(files, pairing), "--layer_id")
    q = quantiles([rec.confidences for rec in records], job.offset)  # over every record of the jsonl
    positive, negative = _labelled_rows(pairing, files, job.layer, job.offset, job.labels, q)
    print(report_pairing(pairing, job.verbose))
    for name, rows, hint in (("positive (overthinking)", positive, "reflective or low-confidence"),
                             ("negative (confident)", negative, "high-confidence, non-reflective")):
        if rows.shape[0] == 0:
            other = "conf_mixed" if job.labels == "paper" else "paper"
            raise UsageError(f"no {name} steps under --labels {job.labels}: the usable records have no {hint} "
                             f"steps; use more records (--max_files, a larger collection run) or try --labels {other}")
    vector = steering_vector(positive, negative, job.normalize)
    lda = lda_diagnostics(positive, negative)
    with writable(job.save_path, "check --save_path"):
        save_vector(vector, job.save_path)
    calibration = {
        "model": job.model_name or model_name_from_path(job.jsonl_path),
        "layer": job.layer,
        "hidden_size": int(vector.shape[0]),
        "q25c": q.q25c, "q75c": q.q75c, "q25v": q.q25v, "q75v": q.q75v,
        **low_values(lda, job.normalize, job.layer),
        "n_positive": int(positive.shape[0]), "n_negative": int(negative.shape[0]),
        "vector_norm": float(vector.norm()),
        "lda": lda.as_dict(),
        "inputs": {"jsonl_path": os.path.abspath(job.jsonl_path), "hidden_dir": os.path.abspath(files.folder),
                   "records_in_jsonl": len(records), "records_used": len(pairing.used),
                   "records_skipped": len(pairing.skipped), "rows_used": pairing.n_rows},
        "settings": {"labels": job.labels, "normalize": job.normalize, "max_files": job.max_files,
                     "expected_offset": job.offset},
        "vector_path": os.path.abspath(job.save_path),
    }
    path = calibration_path(job.save_path)
    Calibration(calibration).write(path)
    print(format_calibration(calibration))
    print(f"vector: {job.save_path}\ncalibration: {path}")
    return calibration


def format_calibration(cal: dict[str, Any]) -> str:
    lda = cal["lda"]
    return "\n".join([
        f"layer {cal['layer']}: {cal['n_positive']} positive vs {cal['n_negative']} negative steps "
        f"(labels {cal['settings']['labels']}), ||S|| = {cal['vector_norm']:.4f}",
        f"confidence quantiles q25c={cal['q25c']:.6f} q75c={cal['q75c']:.6f}; "
        f"variance q25v={cal['q25v']:.6f} q75v={cal['q75v']:.6f}",
        f"LDA: w.u={lda['w_dot_u']:.6g} t={lda['threshold']:.6g} separation accuracy={lda['accuracy']:.3f}",
        f"LDA: alpha_mean={lda['alpha_mean']:.4f} alpha_all={lda['alpha_all']:.4f} "
        f"-> low_val_1={cal['low_val_1']:.4f} low_val_2={cal['low_val_2']:.4f} high_val_2={cal['high_val_2']}",
    ])


@cli_entry
def main(argv: list[str] | None = None, description: str = __doc__) -> int:
    run(make_job(build_parser(description).parse_args(argv)))
    return 0
