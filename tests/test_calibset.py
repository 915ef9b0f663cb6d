"""Reading collection runs for the analysis: idx pairing, the skip rule, one read per file, dtypes."""

import json
import os

import numpy as np
import pytest
import torch
from synthetic import stacked, write_synthetic

from rebalance.analysis import collected as calibset
from rebalance.analysis.collected import (
    LayerStack,
    pair_records,
    paired_confidences,
    read_calibration_records,
    report_pairing,
)
from rebalance.errors import UsageError


def test_pairs_by_idx_and_skips_with_reasons(tmp_path):
    syn = write_synthetic(str(tmp_path), n_records=8)
    os.remove(os.path.join(syn.hidden_dir, "hidden_2.pt"))                   # missing file
    wrong = torch.load(os.path.join(syn.hidden_dir, "hidden_5.pt"), weights_only=True)
    wrong = {k: {0: {"step": v[0]["step"][:-1]}} for k, v in wrong.items()}  # one row short
    torch.save(wrong, os.path.join(syn.hidden_dir, "hidden_5.pt"))
    records = read_calibration_records(syn.jsonl)
    pairing = pair_records(records, syn.hidden_dir, None, 1)
    stack = LayerStack(pairing, syn.hidden_dir, [0, 3])
    assert [rec.idx for rec, _ in pairing.used] == [0, 1, 3, 4, 6, 7]
    assert dict(pairing.skipped)[2] == "no hidden_2.pt"
    assert "rows but" in dict(pairing.skipped)[5]
    X, y = stacked(syn, 3, skip=(2, 5))
    assert np.array_equal(stack.float32(3), X) and np.array_equal(paired_confidences(pairing, 1), y)
    assert "skipped idx 5" in report_pairing(pairing, verbose=True)
    assert "--verbose" in report_pairing(pairing, verbose=False)
    stack.close()


def test_records_with_gaps_in_idx_pair_by_idx_not_line(tmp_path):
    syn = write_synthetic(str(tmp_path), n_records=6)
    with open(syn.jsonl, "w") as handle:  # drop line 0: line i no longer holds idx i
        for rec in syn.records[1:]:
            handle.write(json.dumps(rec) + "\n")
    records = read_calibration_records(syn.jsonl)
    pairing = pair_records(records, syn.hidden_dir, None, 1)
    stack = LayerStack(pairing, syn.hidden_dir, [3])
    X, _ = stacked(syn, 3, skip=(0,))
    assert np.array_equal(stack.float32(3), X)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_files_are_kept_exactly(tmp_path, dtype):
    syn = write_synthetic(str(tmp_path), n_records=5, dtype=dtype)
    pairing = pair_records(read_calibration_records(syn.jsonl), syn.hidden_dir, None, 1)
    with LayerStack(pairing, syn.hidden_dir, [1, 2]) as stack:
        X, _ = stacked(syn, 2)
        assert stack.float32(2).dtype == np.float32 and np.array_equal(stack.float32(2), X)


def test_each_hidden_file_is_opened_once_for_all_layers(tmp_path, monkeypatch):
    syn = write_synthetic(str(tmp_path), n_records=6)
    opened = []
    real = calibset.load_hidden
    monkeypatch.setattr(calibset, "load_hidden", lambda path: opened.append(path) or real(path))
    pairing = pair_records(read_calibration_records(syn.jsonl), syn.hidden_dir, None, 1)
    with LayerStack(pairing, syn.hidden_dir, list(range(syn.layers))):
        pass
    assert sorted(opened) == sorted(os.path.join(syn.hidden_dir, f"hidden_{i}.pt") for i in range(6))


def test_legacy_torch_files_are_read(tmp_path):
    syn = write_synthetic(str(tmp_path), n_records=3)
    path = os.path.join(syn.hidden_dir, "hidden_1.pt")
    torch.save(torch.load(path, weights_only=True), path, _use_new_zipfile_serialization=False)
    pairing = pair_records(read_calibration_records(syn.jsonl), syn.hidden_dir, None, 1)
    with LayerStack(pairing, syn.hidden_dir, [3]) as stack:
        assert np.array_equal(stack.float32(3), stacked(syn, 3)[0])


@pytest.mark.parametrize("line, message", [
    ('{"idx": 0, "generated_responses": ["x"]}', "x.jsonl:2: record has no 'sentence_confidences' list"),
    ('{"idx": 0, "sentence_confidences": ["a"]}', "x.jsonl:2: 'sentence_confidences' must hold numbers"),
    ('{"idx": "a", "sentence_confidences": [0.5]}', "x.jsonl:2: 'idx' must be a whole number"),
    ('{"idx": 0, "sentence_confidences": [0.5], "step_texts": []}', "x.jsonl:2: 'step_texts' must be a list"),
    ('not json', "x.jsonl:2: malformed JSON"),
])
def test_bad_records_name_file_and_line(tmp_path, line, message):
    path = tmp_path / "x.jsonl"
    path.write_text('{"idx": 1, "sentence_confidences": [0.5, 0.4]}\n' + line + "\n")
    with pytest.raises(UsageError, match=message):
        read_calibration_records(str(path))
