"""The real embedded model (SmolLM2-135M-Instruct): a byte-level BPE tokenizer that writes a blank
line as two `Ċ` tokens and has no `<think>`, so the whole response is the thinking region."""

import pytest
from conftest import TOL, load
from test_collect import check_against_full_forward

from rebalance.decoding.decode import collect_batch
from rebalance.decoding.records import make_table
from rebalance.examples import Example

PROBLEMS = [
    "Tom has 3 apples and buys 4 more. How many apples does he have?",
    "What is 12 plus 30?",
    "A box has 5 pens. How many pens are in 3 boxes?",
    "Sara had 20 stickers and gave away 8. How many are left?",
]
EXAMPLES = [Example(i, p, "", {}) for i, p in enumerate(PROBLEMS)]


@pytest.fixture(scope="module")
def smol(smollm2_dir):
    model, tokenizer = load(smollm2_dir)
    return model, tokenizer, make_table(model, tokenizer)


def test_smollm2_table_has_no_think_and_two_newline_rule(smol):
    _, tokenizer, table = smol
    assert not table.has_think
    newline = tokenizer.convert_tokens_to_ids("Ċ")
    assert table.is_boundary(newline, newline) and not table.is_boundary(newline, None)


def test_smollm2_collection_matches_full_forward_and_batch_one(smol):
    model, tokenizer, table = smol
    batched = collect_batch(model, tokenizer, table, EXAMPLES, max_new_tokens=48)
    assert sum(len(r.record["sentence_confidences"]) for r in batched) >= 6  # it writes blank lines
    check_against_full_forward(model, tokenizer, table, EXAMPLES, batched)
    single = [collect_batch(model, tokenizer, table, [ex], max_new_tokens=48)[0] for ex in EXAMPLES]
    same = [b.tokens == s.tokens for b, s in zip(batched, single)]
    assert all(same) if TOL.same_ids else any(same)  # bf16: a near-tie may flip under padding
