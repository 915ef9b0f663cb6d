"""The two offline stages as functions the scripts call: pick the layer and extract the vector with
its calibration (docs/method.md §4-§6). Printing and file writing live here; the mathematics lives
in layer_scoring, labels and vectors."""

from __future__ import annotations

import os
import sys
from dataclasses import replace
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from ..calibration import Calibration, generic
from ..control import HIGH_VAL_2
from ..errors import UsageError, writable
from ..files.cards import read_card_beside
from ..files.names import calibration_path, ridge_paths
from .collected import (
    DEFAULT_PATTERN,
    HiddenFiles,
    LayerStack,
    Pairing,
    available_layers,
    iter_hidden,
    locate_hidden,
    pair_records,
    paired_confidences,
    read_calibration_records,
    report_pairing,
    require_usable,
)
from .labels import LABEL_RULES, NEGATIVE, POSITIVE, Quantiles, quantiles, record_labels
from .layer_scoring import (
    RidgeSettings,
    best_layer,
    check_layers,
    format_steer_table,
    format_table,
    parse_layers,
    plot_scores,
    ridge_r2,
    write_csv,
)
from .layer_steering import FedBackRuns, best_steering_layer, fed_back, steer_score
from .vectors import LdaDiagnostics, lda_diagnostics, save_vector, steering_vector


def model_name_from_path(jsonl_path: str) -> str:
    """Collection runs live in `{output_path}/{model}/{dataset}/`: the model is two folders up."""
    parts = os.path.normpath(os.path.abspath(jsonl_path)).split(os.sep)
    return parts[-3] if len(parts) >= 3 else "unknown"


def _open(jsonl_path: str, hidden_dir: str, max_files: int | None, offset: int, pattern: str = DEFAULT_PATTERN):
    """The records, where their hidden files are (said on stdout), and the pairing."""
    if offset < 0:
        raise UsageError(f"--expected_offset must be 0 or more, got {offset}")
    records = read_calibration_records(jsonl_path)
    considered = records[:max_files] if max_files is not None else records
    files, where = locate_hidden(hidden_dir, [rec.idx for rec in considered], pattern)
    card = read_card_beside(jsonl_path)
    files = replace(files, run=card.fingerprint if card else None)
    print(where)
    return records, files, pair_records(records, files, max_files, offset)


CRITERIA = ("ridge", "steer")


def select_layer(jsonl_path: str, hidden_dir: str, layers: str = "all", max_files: int | None = None,
                 offset: int = 1, settings: RidgeSettings = RidgeSettings(), plot: bool = True,
                 verbose: bool = False, tmp_dir: str | None = None, pattern: str = DEFAULT_PATTERN,
                 criterion: str = "ridge", model_name: str | None = None, steer_records: int = 16,
                 labels: str = "conf_mixed", trust_remote_code: bool = False) -> dict[str, Any]:
    """R^2 of every requested layer (and with criterion `steer`, what each layer's own push does,
    see layer_steering); prints the table, then the chosen layer id alone as the last line."""
    if criterion not in CRITERIA:
        raise UsageError(f"--criterion must be one of {', '.join(CRITERIA)}, got {criterion!r}")
    if criterion == "steer" and not model_name:
        raise UsageError("--criterion steer feeds the collected responses back through the model: "
                         "give --model_name_or_path")
    records, files, pairing = _open(jsonl_path, hidden_dir, max_files, offset, pattern)
    chosen = parse_layers(layers, available_layers(files, pairing))
    scores: dict[int, float] = {}
    with LayerStack(pairing, files, chosen, tmp_dir) as stack:
        require_usable(pairing)
        print(report_pairing(pairing, verbose))
        y = paired_confidences(pairing, offset)
        if len(y) < 5:
            raise UsageError(f"only {len(y)} rows to fit: R^2 needs more (raise --max_files or collect more)")
        for layer in tqdm(chosen, desc="scoring layers", unit="layer"):
            scores[layer] = ridge_r2(stack.float32(layer), y, settings)
        steer = steering_scores(jsonl_path, records, pairing, stack, chosen, offset, labels, model_name,
                                steer_records, trust_remote_code) if criterion == "steer" else None
    result: dict[str, Any] = {"scores": scores, "best": best_layer(scores)}
    if steer is not None:
        result.update(steer_scores=steer, best=best_steering_layer(steer))
        print(format_steer_table(scores, steer))
    else:
        print(format_table(scores))
    if plot:
        csv_path, png_path = ridge_paths(jsonl_path)
        with writable(csv_path, "--no_plot skips the CSV and PNG"):
            result["csv"] = write_csv(scores, csv_path, result.get("steer_scores"))
            result["png"] = plot_scores(scores, png_path, steer=result.get("steer_scores"))
        print(f"wrote {result['csv']} and {result['png']}")
    print(result["best"])
    return result


def steering_scores(jsonl_path: str, records, pairing: Pairing, stack: LayerStack, layers: list[int], offset: int,
                    rule: str, model_name: str, limit: int,
                    trust_remote_code: bool = False) -> dict[int, tuple[float, float, float]]:
    """The `steer` criterion's numbers per layer: the first `limit` usable records fed back through
    the model, unsteered and then with each layer's calibrated push at every boundary. The rows
    come from the stack R^2 was scored on, so the hidden files are read once for both."""
    from ..examples import prompt_ids, read_jsonl
    from ..models import load_model
    from ..steering import site_index

    q = quantiles([rec.confidences for rec in records], offset)
    labelled = [(rec, record_labels(rule, rec.confidences, rec.step_texts, rec.response, n_rows, offset, q))
                for rec, n_rows in pairing.used]
    row_labels = np.asarray([label for _, labels in labelled for label in labels])  # the stack's row order
    questions = {obj.get("idx", position): obj.get("question") for position, (_, obj) in
                 enumerate(read_jsonl(jsonl_path))}
    model, tokenizer = load_model(model_name, trust_remote_code=trust_remote_code)
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
        raise UsageError(f"{jsonl_path}: --criterion steer needs records with 'question' and 'step_texts' and both "
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


def extract_vector(jsonl_path: str, hidden_dir: str, layer: int, save_path: str, max_files: int | None = None,
                   offset: int = 1, labels: str = "conf_mixed", normalize: bool = False,
                   model_name: str | None = None, verbose: bool = False) -> dict[str, Any]:
    """Write the vector to `save_path` and the calibration beside it; returns the calibration."""
    if labels not in LABEL_RULES:
        raise UsageError(f"--labels must be one of {', '.join(LABEL_RULES)}, got {labels!r}")
    records, files, pairing = _open(jsonl_path, hidden_dir, max_files, offset)
    check_layers([layer], available_layers(files, pairing), "--layer_id")
    q = quantiles([rec.confidences for rec in records], offset)  # over every record of the jsonl
    positive, negative = _labelled_rows(pairing, files, layer, offset, labels, q)
    print(report_pairing(pairing, verbose))
    for name, rows, hint in (("positive (overthinking)", positive, "reflective or low-confidence"),
                             ("negative (confident)", negative, "high-confidence, non-reflective")):
        if rows.shape[0] == 0:
            other = "conf_mixed" if labels == "paper" else "paper"
            raise UsageError(f"no {name} steps under --labels {labels}: the usable records have no {hint} "
                             f"steps; use more records (--max_files, a larger collection run) or try --labels {other}")
    vector = steering_vector(positive, negative, normalize)
    lda = lda_diagnostics(positive, negative)
    with writable(save_path, "check --save_path"):
        save_vector(vector, save_path)
    calibration = {
        "model": model_name or model_name_from_path(jsonl_path),
        "layer": layer,
        "hidden_size": int(vector.shape[0]),
        "q25c": q.q25c, "q75c": q.q75c, "q25v": q.q25v, "q75v": q.q75v,
        **low_values(lda, normalize, layer),
        "n_positive": int(positive.shape[0]), "n_negative": int(negative.shape[0]),
        "vector_norm": float(vector.norm()),
        "lda": lda.as_dict(),
        "inputs": {"jsonl_path": os.path.abspath(jsonl_path), "hidden_dir": os.path.abspath(files.folder),
                   "records_in_jsonl": len(records), "records_used": len(pairing.used),
                   "records_skipped": len(pairing.skipped), "rows_used": pairing.n_rows},
        "settings": {"labels": labels, "normalize": normalize, "max_files": max_files, "expected_offset": offset},
        "vector_path": os.path.abspath(save_path),
    }
    path = calibration_path(save_path)
    Calibration(calibration).write(path)
    print(format_calibration(calibration))
    print(f"vector: {save_path}\ncalibration: {path}")
    return calibration


def low_values(lda: LdaDiagnostics, normalize: bool = False, layer: int | None = None) -> dict[str, Any]:
    """low_val_1 = -alpha_mean and low_val_2 = -alpha_all (docs/method.md §6), in units of the saved vector:
    the alphas count multiples of S, so a unit vector (`--normalize`) needs them times ||S||.
    When the release's threshold sign leaves alpha_mean at 0, those would make F1 flat and the
    control function undefined; the generic pair is used instead and the file says so."""
    if lda.alpha_mean > 0:
        scale = lda.norm_s if normalize else 1.0
        return {"low_val_1": -lda.alpha_mean * scale, "low_val_2": -lda.alpha_all * scale, "high_val_2": HIGH_VAL_2,
                "low_values_from": "lda" + (" (x ||S||: unit vector)" if normalize else "")}
    fallback = generic()
    where = "" if layer is None else f"layer {layer}: "
    print(f"warning: {where}alpha_mean is 0 (the mean positive row is already past the LDA threshold), so "
          f"low_val_1/low_val_2 fall back to the generic {fallback['low_val_1']}/{fallback['low_val_2']}",
          file=sys.stderr)
    return {"low_val_1": fallback["low_val_1"], "low_val_2": fallback["low_val_2"], "high_val_2": HIGH_VAL_2,
            "low_values_from": "generic defaults (alpha_mean = 0)"}


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
