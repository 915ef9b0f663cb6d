"""Shared fixtures: tiny random models saved once per session, the real SmolLM2 on demand."""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass

import pytest
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from tiny import PLAIN_TEMPLATE, save_tiny  # noqa: E402

SHARED_DATA = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data")

# The model tests run on the CPU in fp32 by default; on a GPU machine
# `REBALANCE_TEST_DEVICE=cuda REBALANCE_TEST_DTYPE=bfloat16 make test` runs the same steering, capture
# and collection tests there, with the bf16 tolerances below.
TEST_DEVICE = os.environ.get("REBALANCE_TEST_DEVICE", "cpu")
TEST_DTYPE = os.environ.get("REBALANCE_TEST_DTYPE", "float32")


@dataclass(frozen=True)
class Tolerance:
    row: float          # captured hidden row vs a full forward, relative to the row's norm
    conf: float         # step confidence vs a full forward, relative
    coef: float         # controller coefficient vs an independent recomputation, absolute
    batch_conf: float   # confidences at batch 1 vs batch 4, relative
    batch_coef: float   # coefficients at batch 1 vs batch 4, absolute
    same_ids: bool      # greedy ids identical at any batch size


# fp32: kernels differ by ~1e-6 between cached decoding and a full forward, padding by ~1e-5.
# bf16 keeps 8 bits of mantissa (relative step 2^-8 = 0.4 %): a row passes through every block in
# bf16, so rows and confidences agree to a few per cent, and greedy ids can flip where two logits
# are within rounding, which padding changes, so ids are compared only in fp32. A low step confidence
# (p near 0.1, a geometric mean of small probabilities) keeps the least relative precision: 10 %.
TOLERANCES = {
    "float32": Tolerance(row=2e-5, conf=2e-5, coef=1e-4, batch_conf=1e-4, batch_coef=1e-3, same_ids=True),
    "bfloat16": Tolerance(row=5e-2, conf=1e-1, coef=5e-2, batch_conf=1e-1, batch_coef=1e-1, same_ids=False),
}
TOL = TOLERANCES[TEST_DTYPE]

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
    from rebalance.store import embedded_model_dir

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

    return load_model(path, TEST_DEVICE, TEST_DTYPE)


@pytest.fixture(autouse=True)
def _deterministic():
    torch.manual_seed(0)
