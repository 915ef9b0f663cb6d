"""A model that brings its own modelling code (the release's openPangu path): an architecture
transformers does not know (tests/remote_code/), saved with its files and `auto_map`, loaded only
with --trust_remote_code. Its blocks are not at `model.layers`, so the hooks find them by shape."""

import os
import shutil

import pytest
import torch
from conftest import PROBLEMS, TEST_DEVICE, TEST_DTYPE, TOL, write_dataset
from remote_code.configuration_tinyblocks import TinyBlocksConfig
from remote_code.modeling_tinyblocks import TinyBlocksForCausalLM
from test_collect import check_against_full_forward
from test_run import run_main
from test_steering import independent_coefficients, recorded_steering
from tiny import make_tokenizer

import transformer_inference_dp
import transformer_inference_steer_dp
from rebalance.calibration import generic
from rebalance.control import ControlFunction
from rebalance.decoding.decode import collect_batch, steer_batch
from rebalance.decoding.records import make_table
from rebalance.decoding.sites import decoder_layers
from rebalance.decoding.steering import SteeringSetup
from rebalance.errors import UsageError
from rebalance.examples import Example, prompt_ids
from rebalance.files.shards import read_records
from rebalance.models import load_model, model_shape

CODE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "remote_code")
EXAMPLES = [Example(i, p, str(i), {}) for i, p in enumerate(PROBLEMS[:3])]


@pytest.fixture(scope="module")
def remote_dir(tmp_path_factory):
    tokenizer = make_tokenizer()
    config = TinyBlocksConfig(vocab_size=len(tokenizer), eos_token_id=tokenizer.eos_token_id,
                              pad_token_id=tokenizer.pad_token_id)
    config.auto_map = {"AutoConfig": "configuration_tinyblocks.TinyBlocksConfig",
                       "AutoModelForCausalLM": "modeling_tinyblocks.TinyBlocksForCausalLM"}
    torch.manual_seed(0)
    model = TinyBlocksForCausalLM(config).eval()
    with torch.no_grad():  # the blank-line rows of the head scaled up, so a greedy response has steps
        for token, token_id in tokenizer.get_vocab().items():
            if "ĊĊ" in token:
                model.head.weight[token_id] *= 3.0
    folder = str(tmp_path_factory.mktemp("remote") / "TinyBlocks")
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    for name in ("configuration_tinyblocks.py", "modeling_tinyblocks.py"):
        shutil.copy(os.path.join(CODE, name), folder)
    return folder


@pytest.fixture(scope="module")
def remote(remote_dir):
    model, tokenizer = load_model(remote_dir, TEST_DEVICE, TEST_DTYPE, trust_remote_code=True)
    return model, tokenizer, make_table(model, tokenizer)


def test_without_the_flag_the_model_is_refused_in_one_line(remote_dir, toy_data, tmp_path, capsys):
    for call in (lambda: model_shape(remote_dir), lambda: load_model(remote_dir)):
        with pytest.raises(UsageError, match="brings its own modelling code .* pass --trust_remote_code"):
            call()
    root, name = toy_data
    status, err = run_main(transformer_inference_dp.main,
                           ["--model_name_or_path", remote_dir, "--dataset_dir", root, "--dataset", name,
                            "--output_path", str(tmp_path / "out")], capsys)
    assert status != 0
    lines = [line for line in err.splitlines() if line.strip() and "Loading" not in line]
    assert len(lines) == 1 and "--trust_remote_code" in lines[0] and "Traceback" not in err, err
    assert not (tmp_path / "out").exists()


def test_its_blocks_are_found_by_shape(remote):
    model, _, _ = remote
    assert type(model).__module__.startswith("transformers_modules")  # its own code, not a shipped class
    assert not hasattr(model, "model") and decoder_layers(model) is model.trunk.stack


def test_collection_matches_a_full_forward(remote):
    model, tokenizer, table = remote
    results = collect_batch(model, tokenizer, table, EXAMPLES, max_new_tokens=20)
    assert sum(len(r.record["sentence_confidences"]) for r in results) >= 4, "the model wrote too few steps"
    check_against_full_forward(model, tokenizer, table, EXAMPLES, results)


def test_dynamic_coefficients_match_an_independent_recomputation(remote):
    model, tokenizer, table = remote
    control = ControlFunction(**generic())
    setup = SteeringSetup(torch.zeros(model.config.hidden_size), 2, "dynamic", -1.0, control)
    for ex, res in zip(EXAMPLES, steer_batch(model, tokenizer, table, EXAMPLES, setup, 20)):
        expected = independent_coefficients(model, tokenizer, table, prompt_ids(tokenizer, ex.problem), res.tokens,
                                            control)
        assert res.record["steer_coefs"] == pytest.approx(expected, abs=TOL.coef)


def test_a_static_push_lands_on_its_own_block_output(remote):
    """Layer 2 at the input: the output of the remote model's block 1 moves by exactly coef x S when a
    boundary is fed, and nothing upstream moves."""
    model, tokenizer, table = remote
    vocab = tokenizer.get_vocab()
    script = [vocab[t] for t in "a ĊĊ b a ĊĊ b".split()]
    vector = torch.randn(model.config.hidden_size, generator=torch.Generator().manual_seed(1))
    setup = SteeringSetup(vector, 2, "static", 1.5, None)
    _, seen = recorded_steering(model, tokenizer, table, setup, {0: script, 1: script}, [1, 2])
    assert len(seen[("pre", 2)]) == len(script)
    for t in range(1, len(script)):
        assert torch.equal(seen[("post", 1)][t], seen[("pre", 1)][t])
        moved = seen[("post", 2)][t] - seen[("pre", 2)][t]
        expected = 1.5 * vector if script[t - 1] == vocab["ĊĊ"] else torch.zeros_like(vector)
        torch.testing.assert_close(moved, expected[None, :].expand_as(moved).to(moved.dtype),
                                   atol=TOL.row * float(seen[("post", 2)][t].float().norm()), rtol=0)


def test_the_scripts_collect_and_steer_it_with_the_flag(remote_dir, remote, tmp_path, capsys):
    model, tokenizer, table = remote
    root, name = write_dataset(tmp_path / "data", "Toy", [ex.problem for ex in EXAMPLES])
    common = ["--model_name_or_path", remote_dir, "--trust_remote_code", "--dataset_dir", root, "--dataset", name,
              "--output_path", str(tmp_path / "out"), "--max_generated_tokens", "16", "--batch_size", "3"]
    status, err = run_main(transformer_inference_dp.main, common, capsys)
    assert status == 0, err
    folder = tmp_path / "out" / "TinyBlocks" / name
    collected = collect_batch(model, tokenizer, table, EXAMPLES, max_new_tokens=16)
    records = read_records(str(folder / "origin_temp0.7_maxlen16.shard0.jsonl"))
    assert [r["generated_responses"] for r in records] == [r.record["generated_responses"] for r in collected]
    hidden = torch.load(folder / "hidden_1.pt", weights_only=True)
    torch.testing.assert_close(hidden[2][0]["step"], collected[1].hidden[2][0]["step"], rtol=1e-4, atol=1e-4)

    torch.save(torch.randn(model.config.hidden_size), tmp_path / "v.pt")
    status, err = run_main(transformer_inference_steer_dp.main,
                           [*common, "--temperature", "0", "--steer_vector_path", str(tmp_path / "v.pt"),
                            "--steer_layer", "2", "--steer_mode", "static", "--steer_coef", "0.5"], capsys)
    assert status == 0, err
    steered = read_records(str(folder / "static0.5_temp0.0_maxlen16.shard0.jsonl"))
    assert [r["idx"] for r in steered] == [0, 1, 2]
    assert all(set(r["steer_coefs"]) <= {0.5} for r in steered) and any(r["steer_coefs"] for r in steered)


def test_the_steer_layer_search_loads_it_with_the_flag(remote_dir, tmp_path, capsys):
    """hidden_config_ridge.py --criterion steer feeds the responses back through the model itself."""
    import hidden_config_ridge

    root, name = write_dataset(tmp_path / "data", "Toy", PROBLEMS * 2)
    status, err = run_main(transformer_inference_dp.main,
                           ["--model_name_or_path", remote_dir, "--trust_remote_code", "--dataset_dir", root,
                            "--dataset", name, "--output_path", str(tmp_path / "out"), "--max_generated_tokens", "24",
                            "--batch_size", "10"], capsys)
    assert status == 0, err
    folder = tmp_path / "out" / "TinyBlocks" / name
    search = ["--jsonl_path", str(folder / "origin_temp0.7_maxlen24.shard0.jsonl"), "--hidden_dir", str(folder),
              "--criterion", "steer", "--model_name_or_path", remote_dir, "--no_plot", "--pca_components", "4"]
    status, err = run_main(hidden_config_ridge.main, search, capsys)
    assert status != 0 and "pass --trust_remote_code" in err
    status, out = run_main(hidden_config_ridge.main, [*search, "--trust_remote_code"], capsys, "out")
    assert status == 0, out
    assert out.strip().splitlines()[-1] in {"1", "2", "3"}
