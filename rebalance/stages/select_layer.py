"""Stage 2, layer selection (`hidden_config_ridge.py`): how well each layer's hidden state at a step
start predicts the step's confidence (PCA + Ridge, held-out R^2), or, with --criterion steer,
which layer's own push moves the model's next step from overthinking to confident. Prints a table;
the last line is the chosen layer id alone, so a shell script can capture it with `| tail -n 1`
(docs/method.md §4)."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from ..analysis.collected import (
    DEFAULT_PATTERN,
    LayerStack,
    Pairing,
    available_layers,
    open_collection,
    paired_confidences,
    report_pairing,
    require_usable,
)
from ..analysis.labels import NEGATIVE, POSITIVE, quantiles, record_labels
from ..analysis.layer_scoring import (
    RidgeSettings,
    best_layer,
    format_steer_table,
    format_table,
    parse_layers,
    plot_scores,
    ridge_r2,
    write_csv,
)
from ..analysis.layer_steering import FedBackRuns, best_steering_layer, fed_back, steer_score
from ..analysis.vectors import lda_diagnostics, low_values, steering_vector
from ..decoding.steering import site_index
from ..errors import UsageError, cli_entry, writable
from ..examples import prompt_ids, read_jsonl
from ..files.names import ridge_paths
from ..models import load_model
from .flags import add_collection_input_flags, fraction, positive_int

CRITERIA = ("ridge", "steer")


@dataclass(frozen=True)
class SelectJob:
    jsonl_path: str
    hidden_dir: str
    layers: str = "all"
    max_files: int | None = None
    offset: int = 1
    settings: RidgeSettings = RidgeSettings()
    plot: bool = True
    verbose: bool = False
    tmp_dir: str | None = None
    pattern: str = DEFAULT_PATTERN
    criterion: str = "ridge"
    model_name: str | None = None       # --criterion steer feeds the responses back through it
    trust_remote_code: bool = False
    steer_records: int = 16
    labels: str = "conf_mixed"

    def __post_init__(self) -> None:
        if self.criterion not in CRITERIA:
            raise UsageError(f"--criterion must be one of {', '.join(CRITERIA)}, got {self.criterion!r}")
        if self.criterion == "steer" and not self.model_name:
            raise UsageError("--criterion steer feeds the collected responses back through the model: "
                             "give --model_name_or_path")


def build_parser(description: str = __doc__) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=description)
    add_collection_input_flags(parser)
    parser.add_argument("--layers", default="all", help="'all', a range '0-28' or a list '0,3,7-10'")
    parser.add_argument("--alpha", type=float, default=1.0, help="Ridge regularisation")
    parser.add_argument("--pca_components", type=positive_int, default=64)
    parser.add_argument("--test_size", type=fraction, default=0.2, help="held-out share of the rows")
    parser.add_argument("--random_state", type=int, default=42)
    parser.add_argument("--no_plot", action="store_true", help="skip the PNG and CSV beside the jsonl")
    parser.add_argument("--tmp_dir", default=None, help="where the per-layer row arrays are kept while scoring")
    parser.add_argument("--file_pattern", default=DEFAULT_PATTERN, help="name of each hidden file, with {idx}")
    parser.add_argument("--criterion", choices=CRITERIA, default="ridge",
                        help="ridge: the layer that best predicts step confidence (the paper's rule). steer: the "
                             "layer whose own calibrated push, added at the boundaries of the collected responses, "
                             "most lowers the next overthinking step's probability against the confident ones' "
                             "(for models where R^2 is flat over layers; needs --model_name_or_path)")
    parser.add_argument("--model_name_or_path", default=None, help="the collection's model (--criterion steer)")
    parser.add_argument("--trust_remote_code", action="store_true",
                        help="allow the model's own code (--criterion steer; off by default)")
    parser.add_argument("--steer_records", type=positive_int, default=16,
                        help="records fed back per layer by --criterion steer (the first N usable, "
                             "up to 4 boundaries each)")
    return parser


def make_job(args: argparse.Namespace) -> SelectJob:
    return SelectJob(args.jsonl_path, args.hidden_dir, args.layers, args.max_files, args.expected_offset,
                     RidgeSettings(args.alpha, args.pca_components, args.test_size, args.random_state),
                     plot=not args.no_plot, verbose=args.verbose, tmp_dir=args.tmp_dir, pattern=args.file_pattern,
                     criterion=args.criterion, model_name=args.model_name_or_path,
                     trust_remote_code=args.trust_remote_code, steer_records=args.steer_records)


def run(job: SelectJob) -> dict[str, Any]:
    """R^2 of every requested layer (and with criterion `steer`, what each layer's own push does,
    see analysis/layer_steering.py); prints the table, then the chosen layer id alone as the last line."""
    records, files, pairing = open_collection(job.jsonl_path, job.hidden_dir, job.max_files, job.offset, job.pattern)
    chosen = parse_layers(job.layers, available_layers(files, pairing))
    scores: dict[int, float] = {}
    with LayerStack(pairing, files, chosen, job.tmp_dir) as stack:
        require_usable(pairing)
        print(report_pairing(pairing, job.verbose))
        y = paired_confidences(pairing, job.offset)
        if len(y) < 5:
            raise UsageError(f"only {len(y)} rows to fit: R^2 needs more (raise --max_files or collect more)")
        for layer in tqdm(chosen, desc="scoring layers", unit="layer"):
            scores[layer] = ridge_r2(stack.float32(layer), y, job.settings)
        steer = steering_scores(job, records, pairing, stack, chosen) if job.criterion == "steer" else None
    result: dict[str, Any] = {"scores": scores, "best": best_layer(scores)}
    if steer is not None:
        result.update(steer_scores=steer, best=best_steering_layer(steer))
        print(format_steer_table(scores, steer))
    else:
        print(format_table(scores))
    if job.plot:
        csv_path, png_path = ridge_paths(job.jsonl_path)
        with writable(csv_path, "--no_plot skips the CSV and PNG"):
            result["csv"] = write_csv(scores, csv_path, result.get("steer_scores"))
            result["png"] = plot_scores(scores, png_path, steer=result.get("steer_scores"))
        print(f"wrote {result['csv']} and {result['png']}")
    print(result["best"])
    return result


def steering_scores(job: SelectJob, records, pairing: Pairing, stack: LayerStack,
                    layers: list[int]) -> dict[int, tuple[float, float, float]]:
    """The `steer` criterion's numbers per layer: the first `limit` usable records fed back through
    the model, unsteered and then with each layer's calibrated push at every boundary. The rows
    come from the stack R^2 was scored on, so the hidden files are read once for both."""
    offset, limit = job.offset, job.steer_records

    q = quantiles([rec.confidences for rec in records], offset)
    labelled = [(rec, record_labels(job.labels, rec.confidences, rec.step_texts, rec.response, n_rows, offset, q))
                for rec, n_rows in pairing.used]
    row_labels = np.asarray([label for _, labels in labelled for label in labels])  # the stack's row order
    questions = {obj.get("idx", position): obj.get("question") for position, (_, obj) in
                 enumerate(read_jsonl(job.jsonl_path))}
    model, tokenizer = load_model(job.model_name, trust_remote_code=job.trust_remote_code)
    items = []
    for rec, labels in labelled:
        if len(items) == limit:
            break
        if rec.step_texts is None or not isinstance(questions.get(rec.idx), str):
            continue
        encoded = tokenizer("".join(rec.step_texts), add_special_tokens=False, return_offsets_mapping=True)
        item = fed_back(prompt_ids(tokenizer, questions[rec.idx]), encoded["input_ids"],
                        [start for start, _ in encoded["offset_mapping"]], [len(t) for t in rec.step_texts], labels,
                        offset)
        if item is not None:
            items.append(item)
    kinds = {label for item in items for label in item.labels}
    if kinds != {POSITIVE, NEGATIVE}:
        raise UsageError(f"{job.jsonl_path}: --criterion steer needs records with 'question' and 'step_texts' and both "
                         "overthinking and confident steps among the first --steer_records of them")
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    runs = FedBackRuns(model, items, pad)
    base = runs.logprobs()
    step_labels = np.asarray([label for item in items for label in item.labels])
    n_sites = model.config.num_hidden_layers + 1
    out = {}
    for layer in tqdm(layers, desc="steering each layer", unit="layer"):
        out[layer] = (float("nan"),) * 3
        if layer >= n_sites - 1:  # after the final norm: no block reads it back, nothing to steer
            continue
        rows = torch.from_numpy(stack.float32(layer))
        positive, negative = rows[row_labels == POSITIVE], rows[row_labels == NEGATIVE]
        if positive.shape[0] == 0 or negative.shape[0] == 0:
            continue
        coef = low_values(lda_diagnostics(positive, negative), layer=layer)["low_val_1"]
        push = (site_index(n_sites, layer, "input"), coef * steering_vector(positive, negative))
        out[layer] = steer_score(base, runs.logprobs(push), step_labels)
    return out


@cli_entry
def main(argv: list[str] | None = None, description: str = __doc__) -> int:
    run(make_job(build_parser(description).parse_args(argv)))
    return 0
