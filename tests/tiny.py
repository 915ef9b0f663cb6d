"""Tiny offline models for tests: a byte-level BPE tokenizer trained on a few lines (so blank
lines merge into `ĊĊ` tokens, as in Qwen's vocabulary) and random Qwen2 / Qwen3 / Llama decoders.

The random models are made to write blank lines now and then: the LM-head rows of the blank-line
tokens are scaled up, so a greedy response has several steps without any training.
"""

from __future__ import annotations

import os

import torch

SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<think>", "</think>"]

R1_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n<think>\n{% endif %}"
)
PLAIN_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

CORPUS = [
    "Let me think about this.\n\nFirst, add the numbers: 3 + 4 = 7.\n\nWait, let me check again.\n\n",
    "So the answer is \\boxed{7}.\n\nAlternatively, maybe we should double check.\n\nHmm, 12 * 3 = 36.\n\n",
    "Tom has 3 apples and buys 4 more. How many apples does he have?\n\nThe total is 7 apples.\n\n",
    "Step 1: compute 5 * 6 = 30.\n\nStep 2: subtract 8 to get 22.\n\nTherefore the result is 22.\n\n",
    "But perhaps another approach works.\n\nHowever, I am sure.\n\n",
] * 4


def make_tokenizer(chat_template: str = R1_TEMPLATE, bos: str | None = None):
    """`bos`: a special token the tokenizer puts in front of every text it encodes with special
    tokens (as Llama's and the R1-distill tokenizers do)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    core = Tokenizer(models.BPE())
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=360, special_tokens=SPECIALS, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    core.train_from_iterator(CORPUS, trainer)
    if bos is not None:
        core.post_processor = processors.TemplateProcessing(single=f"{bos} $A", special_tokens=[(bos, core.token_to_id(bos))])
    return PreTrainedTokenizerFast(tokenizer_object=core, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                                   bos_token=bos, chat_template=chat_template)


def make_model(arch: str, vocab_size: int, eos_id: int, pad_id: int, seed: int = 0, boundary_ids=(), layers: int = 3):
    from transformers import LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM, Qwen3Config, Qwen3ForCausalLM

    common = dict(vocab_size=vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=layers,
                  num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                  eos_token_id=eos_id, pad_token_id=pad_id, bos_token_id=None, tie_word_embeddings=False,
                  initializer_range=0.2)
    config, cls = {
        "qwen2": (lambda: Qwen2Config(**common), Qwen2ForCausalLM),
        "qwen3": (lambda: Qwen3Config(head_dim=8, **common), Qwen3ForCausalLM),
        "llama": (lambda: LlamaConfig(**common), LlamaForCausalLM),
    }[arch]
    torch.manual_seed(seed)
    model = cls(config()).eval()
    with torch.no_grad():
        head = model.get_output_embeddings().weight
        for token_id in boundary_ids:
            head[token_id] *= 3.0
        head[eos_id] *= 0.5  # responses should usually run to the length limit
    return model


def save_tiny(directory: str, arch: str, template: str = R1_TEMPLATE, seed: int = 0) -> str:
    """Write a tiny model + tokenizer folder loadable with from_pretrained; returns its path."""
    tokenizer = make_tokenizer(template)
    vocab = tokenizer.get_vocab()
    boundary_ids = [i for t, i in vocab.items() if "ĊĊ" in t]
    model = make_model(arch, len(tokenizer), tokenizer.eos_token_id, tokenizer.pad_token_id, seed, boundary_ids)
    os.makedirs(directory, exist_ok=True)
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory
