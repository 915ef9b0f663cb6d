"""Synthetic collection runs with planted structure, in the collection file formats, for the analysis tests.

Layer `confidence_layer` encodes the paired step confidence along one direction; layer
`vector_layer` adds `delta` to the rows of overthinking steps (reflective text or confidence below
the 25th percentile); every other layer is noise.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

import numpy as np
import torch

REFLECTIVE = "Wait, let me check that again."
PLAIN = "Add the two numbers to get the total."


@dataclass
class Synthetic:
    jsonl: str
    hidden_dir: str
    records: list[dict]
    delta: np.ndarray
    layers: int
    dim: int


def write_synthetic(root: str, n_records: int = 40, layers: int = 5, dim: int = 16, confidence_layer: int = 3,
                    vector_layer: int = 2, dtype: torch.dtype = torch.float32, seed: int = 0,
                    with_step_texts: bool = True, subfolder: str = ".",
                    pattern: str = "hidden_{idx}.pt") -> Synthetic:
    rng = np.random.default_rng(seed)
    direction = rng.normal(size=dim)
    direction /= np.linalg.norm(direction)
    delta = rng.normal(size=dim)
    records, all_texts = [], []
    for idx in range(n_records):
        steps = int(rng.integers(5, 12))
        texts = [REFLECTIVE if rng.random() < 0.2 else PLAIN for _ in range(steps)]
        all_texts.append(texts)
        records.append({"idx": idx, "question": f"problem {idx}",
                        "generated_responses": ["\n\n".join(texts) + "\n</think>\n\nThe answer is \\boxed{1}."],
                        "gold_answer": "1", "sentence_confidences": rng.uniform(0.2, 1.0, steps).tolist(),
                        **({"step_texts": texts} if with_step_texts else {})})
    q25c = np.percentile([c for r in records for c in r["sentence_confidences"]], 25)
    hidden_dir = os.path.join(root, subfolder)
    os.makedirs(hidden_dir, exist_ok=True)
    for rec, texts in zip(records, all_texts):
        conf = np.asarray(rec["sentence_confidences"][1:])
        overthinking = np.array([(t == REFLECTIVE) or c < q25c for t, c in zip(texts[1:], conf)], dtype=float)
        hidden = {}
        for layer in range(layers):
            rows = rng.normal(size=(len(conf), dim))
            if layer == confidence_layer:
                rows = 0.05 * rows + 4.0 * conf[:, None] * direction
            elif layer == vector_layer:
                rows = 0.01 * rows + overthinking[:, None] * delta
            hidden[layer] = {0: {"step": torch.tensor(rows, dtype=torch.float32).to(dtype)}}
        torch.save(hidden, os.path.join(hidden_dir, pattern.format(idx=rec["idx"])))
    jsonl = os.path.join(root, "origin_temp0.0_maxlen64.merged.jsonl")
    with open(jsonl, "w") as handle:
        for rec in records:
            handle.write(json.dumps(rec) + "\n")
    return Synthetic(jsonl, hidden_dir, records, delta, layers, dim)


def stacked(syn: Synthetic, layer: int, offset: int = 1, skip: tuple[int, ...] = ()) -> tuple[np.ndarray, np.ndarray]:
    """Independent stacking: rows and paired confidences, record order then step order, float32."""
    xs, ys = [], []
    for rec in syn.records:
        if rec["idx"] in skip:
            continue
        hidden = torch.load(os.path.join(syn.hidden_dir, f"hidden_{rec['idx']}.pt"), weights_only=True)
        xs.append(hidden[layer][0]["step"].float().numpy())
        ys.extend(rec["sentence_confidences"][offset:])
    return np.concatenate(xs).astype(np.float32), np.asarray(ys, dtype=np.float32)
