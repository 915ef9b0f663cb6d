import os

import pytest
from conftest import SHARED_DATA, load
from tiny import R1_TEMPLATE

from rebalance.errors import UsageError
from rebalance.examples import SYSTEM_PROMPT, load_examples, prompt_ids


def test_prompt_layout_has_the_system_prompt_and_opens_thinking(tiny_dirs):
    _, tokenizer = load(tiny_dirs["qwen2"])
    ids = prompt_ids(tokenizer, "What is 3 + 4?")
    text = tokenizer.decode(ids)
    assert text.startswith("<|im_start|>system\n" + SYSTEM_PROMPT)
    assert text.endswith("<|im_start|>assistant\n<think>\n")
    assert text.count("<|im_start|>") == 3  # nothing doubled by add_special_tokens


def test_a_template_that_writes_the_bos_is_not_given_a_second_one():
    """The R1-distill case: the template starts with the BOS and the tokenizer adds one to any text
    encoded with special tokens (the release's prompt had two)."""
    from tiny import make_tokenizer

    template = "{{ bos_token }}" + R1_TEMPLATE
    tokenizer = make_tokenizer(template, bos="<|endoftext|>")
    bos = tokenizer.bos_token_id
    rendered = tokenizer.apply_chat_template([{"role": "user", "content": "What is 3 + 4?"}],
                                             add_generation_prompt=True, tokenize=False)
    assert tokenizer(rendered)["input_ids"][:2] == [bos, bos]  # what a careless encoding gets
    ids = prompt_ids(tokenizer, "What is 3 + 4?")
    assert ids[0] == bos and ids.count(bos) == 1


def test_examples_keep_extra_fields_and_limit(tmp_path):
    folder = tmp_path / "S"
    folder.mkdir()
    (folder / "test.jsonl").write_text('{"problem": "p0", "answer": 1, "id": 7}\n\n{"problem": "p1", "answer": "x"}\n')
    examples = load_examples(str(tmp_path), "S")
    assert [(e.idx, e.problem, e.answer, e.extra) for e in examples] == [(0, "p0", 1, {"id": 7}), (1, "p1", "x", {})]
    assert len(load_examples(str(tmp_path), "S", limit=1)) == 1
    with pytest.raises(UsageError, match="dataset file not found"):
        load_examples(str(tmp_path), "Missing")


@pytest.mark.skipif(not os.path.isdir(SHARED_DATA), reason="../shared/data is not beside this checkout (fresh clone)")
def test_every_shared_benchmark_loads():
    sizes = {name: len(load_examples(SHARED_DATA, name)) for name in sorted(os.listdir(SHARED_DATA))
             if os.path.isdir(os.path.join(SHARED_DATA, name))}
    assert sizes["Math_Math500"] == 500 and sizes["Math_AIME2024"] == 30 and sizes["Science_GPQA"] == 198
    assert len(sizes) == 9
