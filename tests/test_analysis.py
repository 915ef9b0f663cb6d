"""Both analysis scripts end to end: planted vectors and constants, a real collection run, bad input."""

import csv
import json
import os

import numpy as np
import pytest
import torch
from conftest import PROBLEMS, write_dataset
from synthetic import REFLECTIVE, stacked, write_synthetic
from test_run import run_main
from test_vectors import independent_lda

import hidden_analysis_auto
import hidden_config_ridge
import merge_shards
import transformer_inference_dp
from rebalance.calibration import CONSTANT_NAMES, resolve
from rebalance.control import ControlFunction

CALIBRATION_FIELDS = {"model", "layer", "hidden_size", "q25c", "q75c", "q25v", "q75v", "low_val_1", "low_val_2",
                      "high_val_2", "n_positive", "n_negative", "vector_norm", "inputs", "settings", "lda"}


def analyse(syn, tmp_path, capsys, *extra, layer=2):
    save = str(tmp_path / "vectors" / f"steer_vector_layer{layer}_conf_mixed.pt")
    status, err = run_main(hidden_analysis_auto.main, ["--jsonl_path", syn.jsonl, "--hidden_dir", syn.hidden_dir,
                                                       "--layer_id", str(layer), "--save_path", save, *extra], capsys)
    assert status == 0, err
    with open(save[:-3] + ".json") as handle:
        return torch.load(save, weights_only=True), json.load(handle)


def independent_labels(syn, q25c, q75c, offset=1):
    labels = []
    for rec in syn.records:
        for c, text in zip(rec["sentence_confidences"][offset:], rec["step_texts"][offset:]):
            labels.append(1 if text == REFLECTIVE or c < q25c else (0 if c > q75c else -1))
    return np.asarray(labels)


def test_planted_vector_and_constants(tmp_path, capsys):
    syn = write_synthetic(str(tmp_path))
    vector, cal = analyse(syn, tmp_path, capsys)
    assert CALIBRATION_FIELDS <= set(cal)
    conf = np.concatenate([r["sentence_confidences"] for r in syn.records])
    var = np.concatenate([np.diff(r["sentence_confidences"]) ** 2 / 4 for r in syn.records])
    assert (cal["q25c"], cal["q75c"]) == tuple(np.percentile(conf, [25, 75]))
    assert (cal["q25v"], cal["q75v"]) == tuple(np.percentile(var, [25, 75]))
    labels = independent_labels(syn, cal["q25c"], cal["q75c"])
    X, _ = stacked(syn, 2)
    pos, neg = X[labels == 1], X[labels == 0]
    assert (cal["n_positive"], cal["n_negative"]) == (len(pos), len(neg))
    assert np.allclose(vector.numpy(), pos.mean(0) - neg.mean(0), atol=1e-6)
    assert np.allclose(vector.numpy(), syn.delta, atol=0.01)  # the planted difference comes back
    alpha_mean, alpha_all = independent_lda(pos, neg)
    assert cal["lda"]["alpha_mean"] == pytest.approx(alpha_mean, rel=1e-9)
    assert cal["low_val_2"] == pytest.approx(-alpha_all, rel=1e-9)
    assert cal["layer"] == 2 and cal["hidden_size"] == syn.dim and cal["settings"]["labels"] == "conf_mixed"
    assert cal["vector_norm"] == pytest.approx(float(np.linalg.norm(vector.numpy())), rel=1e-6)


def test_release_records_without_step_texts_give_the_same_vector(tmp_path, capsys):
    with_texts = write_synthetic(str(tmp_path / "a"))
    without = write_synthetic(str(tmp_path / "b"), with_step_texts=False)
    v1, c1 = analyse(with_texts, tmp_path / "a", capsys)
    v2, c2 = analyse(without, tmp_path / "b", capsys)
    assert torch.equal(v1, v2) and c1["n_positive"] == c2["n_positive"]


def test_paper_labels_and_normalize_are_recorded(tmp_path, capsys):
    syn = write_synthetic(str(tmp_path), n_records=80)
    vector, cal = analyse(syn, tmp_path, capsys, "--labels", "paper", "--normalize")
    assert cal["settings"] == {"labels": "paper", "normalize": True, "max_files": None, "expected_offset": 1}
    assert vector.norm().item() == pytest.approx(1.0, abs=1e-6)
    # the constants scale the saved (unit) vector: alphas count multiples of S, so times ||S||
    assert cal["lda"]["alpha_mean"] > 0
    assert cal["low_val_1"] == pytest.approx(-cal["lda"]["alpha_mean"] * cal["lda"]["norm_s"], rel=1e-12)
    assert cal["low_val_2"] == pytest.approx(-cal["lda"]["alpha_all"] * cal["lda"]["norm_s"], rel=1e-12)


def test_collection_run_feeds_both_scripts_and_the_steered_run_reads_the_calibration(tiny_dirs, tmp_path, capsys):
    data = write_dataset(tmp_path / "data", problems=PROBLEMS * 2)
    model_dir = tiny_dirs["qwen2"]
    status, err = run_main(transformer_inference_dp.main, [
        "--model_name_or_path", model_dir, "--dataset_dir", data[0], "--dataset", data[1],
        "--output_path", str(tmp_path / "out"), "--max_generated_tokens", "48", "--batch_size", "5"], capsys)
    assert status == 0, err
    folder = os.path.join(str(tmp_path / "out"), "qwen2", "Toy")
    assert run_main(merge_shards.main, ["--dir", folder, "--base", "origin_temp0.7_maxlen48"], capsys)[0] == 0
    jsonl = os.path.join(folder, "origin_temp0.7_maxlen48.merged.jsonl")
    hidden = folder
    status, out = run_main(hidden_config_ridge.main, ["--jsonl_path", jsonl, "--hidden_dir", hidden], capsys, "out")
    assert status == 0
    best = int(out.strip().splitlines()[-1])
    assert "records used: 10" in out
    assert os.path.isfile(jsonl[:-6] + ".ridge_r2.png")
    with open(jsonl[:-6] + ".ridge_r2.csv") as handle:
        scores = {int(row["layer"]): float(row["r2"]) for row in csv.DictReader(handle)}
    assert sorted(scores) == [0, 1, 2, 3]  # every residual site of the 3-block model was scored
    assert best == max(scores, key=scores.get)  # the last line names the best of the written scores
    save = str(tmp_path / "vectors" / "qwen2" / f"steer_vector_layer{best}_conf_mixed.pt")
    status, err = run_main(hidden_analysis_auto.main, ["--jsonl_path", jsonl, "--hidden_dir", hidden,
                                                       "--layer_id", str(best), "--save_path", save], capsys)
    assert status == 0, err
    with open(save[:-3] + ".json") as handle:
        cal = json.load(handle)
    assert CALIBRATION_FIELDS <= set(cal) and cal["model"] == "qwen2" and cal["layer"] == best
    assert torch.load(save, weights_only=True).shape == (32,)
    values, layer, source = resolve(model_dir, save, {})
    assert layer == best and "calibration file" in source
    ControlFunction(**{name: values[name] for name in CONSTANT_NAMES})  # a usable control function


def one_error_line(err):
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


@pytest.mark.parametrize("case, message", [
    ("missing_hidden_dir", "--hidden_dir: no such folder"),
    ("layer_out_of_range", "--layer_id: layer 9 is out of range; the hidden files hold layers 0-4"),
    ("no_confidences", ".jsonl:3: record has no 'sentence_confidences' list"),
    ("zero_usable", "zero usable examples: all 40 records were skipped"),
    ("one_class", "no negative (confident) steps under --labels conf_mixed"),
])
def test_bad_input_is_one_line_exit_2(tmp_path, capsys, case, message):
    syn = write_synthetic(str(tmp_path))
    jsonl, hidden, layer, extra = syn.jsonl, syn.hidden_dir, "2", []
    if case == "missing_hidden_dir":
        hidden = str(tmp_path / "nowhere")
    elif case == "layer_out_of_range":
        layer = "9"
    elif case == "no_confidences":
        lines = open(jsonl).read().splitlines()
        lines[2] = json.dumps({"idx": 2, "generated_responses": ["x"]})
        open(jsonl, "w").write("\n".join(lines) + "\n")
    elif case == "zero_usable":
        hidden = str(tmp_path / "empty")
        os.makedirs(hidden)
    elif case == "one_class":  # only the first record's rows, all made confident and calm
        records = [dict(r) for r in syn.records]
        records[0]["sentence_confidences"] = [0.999] * len(records[0]["sentence_confidences"])
        records[0]["step_texts"] = ["Add."] * len(records[0]["step_texts"])
        records[0]["sentence_confidences"][1] = 0.1  # one positive row; no negative can exist
        records[0]["sentence_confidences"][2:] = [0.5] * (len(records[0]["sentence_confidences"]) - 2)
        open(jsonl, "w").write("".join(json.dumps(r) + "\n" for r in records))
        extra = ["--max_files", "1"]
    argv = ["--jsonl_path", jsonl, "--hidden_dir", hidden, *extra]
    status, err = run_main(hidden_analysis_auto.main, argv + ["--layer_id", layer, "--save_path", str(tmp_path / "v.pt")], capsys)
    assert status == 2 and message in one_error_line(err)
    assert not os.path.exists(tmp_path / "v.pt")
    if case in ("missing_hidden_dir", "no_confidences", "zero_usable"):
        status, err = run_main(hidden_config_ridge.main, argv + ["--no_plot"], capsys)
        assert status == 2 and message in one_error_line(err)


@pytest.mark.parametrize("normalize, scale", [(False, 1.0), (True, 4.0)])
def test_low_values_from_the_lda_in_units_of_the_saved_vector(normalize, scale):
    from rebalance.analysis.vectors import LdaDiagnostics, low_values

    lda = LdaDiagnostics(alpha_mean=0.5, alpha_all=2.0, threshold=1.0, w_dot_u=1.0, norm_s=4.0, accuracy=1.0)
    values = low_values(lda, normalize, layer=3)
    assert (values["low_val_1"], values["low_val_2"]) == (-0.5 * scale, -2.0 * scale)
    assert values["low_values_from"].startswith("lda")


def test_low_values_fall_back_to_the_generic_pair_and_name_the_layer(capsys):
    from rebalance.analysis.vectors import LdaDiagnostics, low_values
    from rebalance.calibration import generic

    lda = LdaDiagnostics(alpha_mean=0.0, alpha_all=2.0, threshold=1.0, w_dot_u=1.0, norm_s=4.0, accuracy=1.0)
    values = low_values(lda, layer=17)
    assert (values["low_val_1"], values["low_val_2"]) == (generic()["low_val_1"], generic()["low_val_2"])
    assert "generic" in values["low_values_from"]
    assert "warning: layer 17: alpha_mean is 0" in capsys.readouterr().err
