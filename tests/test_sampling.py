"""The repetition penalty and the release's top-p rule against Hugging Face's own processors."""

import pytest
import torch
from conftest import PROBLEMS, load
from transformers import RepetitionPenaltyLogitsProcessor

from rebalance.decode import steer_batch
from rebalance.decoding.records import make_table
from rebalance.decoding.sampling import penalise_repeats
from rebalance.examples import Example, prompt_ids
from rebalance.steering import SteeringSetup

PAD = 5


def test_penalty_is_hf_rule_on_each_rows_own_tokens_and_never_on_the_padding():
    gen = torch.Generator().manual_seed(0)
    scores = torch.randn(2, 12, generator=gen) * 3  # both signs
    rows = [[1, 3, 3, 8], [2, 9]]  # the second row is left-padded with PAD in the batch
    padded = torch.tensor([rows[0], [PAD, PAD] + rows[1]])
    seen = torch.zeros(2, 12, dtype=torch.bool)
    for r, row in enumerate(rows):
        seen[r, row] = True
    ours = penalise_repeats(scores.clone(), seen, 1.3)
    hf = RepetitionPenaltyLogitsProcessor(1.3)
    for r, row in enumerate(rows):  # HF on the row alone, no padding
        assert torch.equal(ours[r], hf(torch.tensor([row]), scores[r:r + 1].clone())[0])
    assert ours[1, PAD] == scores[1, PAD]  # the padding is not a token the row has seen
    assert not torch.equal(hf(padded, scores.clone())[1], ours[1])  # as HF on the padded batch would have it
    # direction: a seen token always loses probability, whatever the sign of its logit
    for r, row in enumerate(rows):
        for token in set(row):
            assert torch.softmax(ours[r], -1)[token] < torch.softmax(scores[r], -1)[token]


@pytest.mark.parametrize("arch", ["qwen2", "llama"])
def test_engine_with_a_penalty_decodes_what_hf_generate_does(tiny_dirs, arch):
    """Greedy with penalty 1.3, unsteered: the prompt's tokens count as seen, as in HF."""
    model, tokenizer = load(tiny_dirs[arch])
    table = make_table(model, tokenizer)
    examples = [Example(i, p, "", {}) for i, p in enumerate(PROBLEMS[:3])]
    off = SteeringSetup(None, -1, "off", 0.0, None)
    ours = steer_batch(model, tokenizer, table, examples, off, 16, repetition_penalty=1.3)
    plain = steer_batch(model, tokenizer, table, examples, off, 16)
    for ex, res in zip(examples, ours):
        prompt = torch.tensor([prompt_ids(tokenizer, ex.problem)], device=model.device)
        with torch.no_grad():
            out = model.generate(input_ids=prompt, max_new_tokens=16, do_sample=False, repetition_penalty=1.3,
                                 pad_token_id=tokenizer.pad_token_id, eos_token_id=list(table.eos_ids))
        assert res.tokens == out[0, prompt.shape[1]:].tolist()[: len(res.tokens)]
    assert [r.tokens for r in ours] != [r.tokens for r in plain]  # the penalty changed something here
