"""Datasets in the project's JSONL format and the prompt every stage uses (docs/method.md §1)."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any

from .errors import UsageError

SYSTEM_PROMPT = "Please reason step by step, and put your final answer within \\boxed{}."


@dataclass(frozen=True)
class Example:
    """One benchmark problem. `idx` is its 0-based line position in test.jsonl: the join key everywhere."""

    idx: int
    problem: str
    answer: Any
    extra: dict[str, Any]


def dataset_file(dataset_dir: str, dataset: str, split: str = "test") -> str:
    return os.path.join(dataset_dir, dataset, f"{split}.jsonl")


def read_jsonl(path: str) -> list[tuple[int, dict[str, Any]]]:
    """Parse a JSONL file into (line number, object) pairs; blank lines are allowed and skipped."""
    if not os.path.isfile(path):
        raise UsageError(f"file not found: {path}")
    rows = []
    with open(path, encoding="utf-8") as handle:
        for line_no, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as err:
                raise UsageError(f"{path}:{line_no}: malformed JSON ({err.msg})") from None
            if not isinstance(obj, dict):
                raise UsageError(f"{path}:{line_no}: expected a JSON object, got {type(obj).__name__}")
            rows.append((line_no, obj))
    return rows


def load_examples(dataset_dir: str, dataset: str, limit: int | None = None, split: str = "test") -> list[Example]:
    """Read `{dataset_dir}/{dataset}/{split}.jsonl`, checking every record has a `problem` string."""
    path = dataset_file(dataset_dir, dataset, split)
    if not os.path.isfile(path):
        raise UsageError(f"dataset file not found: {path} (check --dataset_dir and --dataset)")
    examples = []
    for idx, (line_no, obj) in enumerate(read_jsonl(path)):
        problem = obj.get("problem")
        if not isinstance(problem, str):
            raise UsageError(f"{path}:{line_no}: record has no 'problem' string")
        extra = {k: v for k, v in obj.items() if k not in ("problem", "answer")}
        examples.append(Example(idx=idx, problem=problem, answer=obj.get("answer"), extra=extra))
    if not examples:
        raise UsageError(f"{path}: the dataset is empty")
    return examples[:limit] if limit is not None else examples


def prompt_ids(tokenizer, problem: str, system_prompt: str = SYSTEM_PROMPT) -> list[int]:
    """Token ids of the chat prompt, ending where the model starts answering.

    The template already carries BOS, so it is tokenized without adding special tokens (the
    release doubled the BOS of R1-distill models).
    """
    messages = [{"role": "system", "content": system_prompt}, {"role": "user", "content": problem}]
    if getattr(tokenizer, "chat_template", None):
        text = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    else:  # a base model without a template: a plain layout keeps the pipeline usable
        text = f"{system_prompt}\n\n{problem}\n\n"
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def prompt_fingerprint(model_path: str, system_prompt: str = SYSTEM_PROMPT) -> str:
    """A hash of everything that shapes a prompt besides the problem: the system prompt and the
    model folder's tokenizer settings and chat template (tokenizer_config.json, chat_template.jinja
    or .json, as bytes: nothing is parsed, so no file can fail here); for a hub id, its name."""
    import hashlib

    digest = hashlib.sha256(system_prompt.encode("utf-8"))
    for name in ("tokenizer_config.json", "chat_template.jinja", "chat_template.json"):
        path = os.path.join(model_path, name)
        if os.path.isfile(path):
            with open(path, "rb") as handle:
                digest.update(b"\0" + name.encode() + b"\0" + handle.read())
    if not os.path.isdir(model_path):
        digest.update(b"\0hub\0" + model_path.encode("utf-8"))
    return digest.hexdigest()
