"""Shared fixtures: tiny random models saved once per session, the real SmolLM2 on demand."""

from __future__ import annotations

import json
import os
import sys

import pytest
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from tiny import PLAIN_TEMPLATE, R1_TEMPLATE, save_tiny  # noqa: E402

SHARED_DATA = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data")

PROBLEMS = [
    "Tom has 3 apples and buys 4 more. How many apples does he have?",
    "What is 12 plus 30?",
    "Let me think.\n\nA box has 5 pens. How many pens are in 3 boxes?",
    "Step 1: compute 5 * 6.",
    "So the answer is 22?",
]


@pytest.fixture(scope="session")
def tiny_dirs(tmp_path_factory):
    """{arch: folder} for R1-style tiny models (the prompt opens <think>)."""
    root = tmp_path_factory.mktemp("tiny")
    return {arch: save_tiny(str(root / arch), arch) for arch in ("qwen2", "qwen3", "llama")}


@pytest.fixture(scope="session")
def tiny_plain_dir(tmp_path_factory):
    """A tiny Qwen3 whose template does not open <think>: the model must open it itself."""
    return save_tiny(str(tmp_path_factory.mktemp("tiny_plain") / "qwen3_plain"), "qwen3", PLAIN_TEMPLATE, seed=3)


@pytest.fixture(scope="session")
def smollm2_dir():
    from rebalance.models import embedded_model_dir

    return embedded_model_dir()


def write_dataset(root, name="Toy", problems=PROBLEMS, answers=None):
    folder = os.path.join(str(root), name)
    os.makedirs(folder, exist_ok=True)
    answers = answers or [str(i) for i in range(len(problems))]
    with open(os.path.join(folder, "test.jsonl"), "w") as handle:
        for problem, answer in zip(problems, answers):
            handle.write(json.dumps({"problem": problem, "answer": answer}) + "\n")
    return str(root), name


@pytest.fixture
def toy_data(tmp_path):
    return write_dataset(tmp_path / "data")


def load(path):
    from rebalance.models import load_model

    return load_model(path, "cpu", "float32")


@pytest.fixture(autouse=True)
def _deterministic():
    torch.manual_seed(0)
