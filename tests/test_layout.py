"""The package's layers (bench/layout.py lists them, lowest first): no import runs back up, none goes
round in a circle, and the core library never reaches the testbed."""

import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "bench"))

import layout  # noqa: E402


def test_no_import_runs_back_up_the_layers():
    assert layout.upward(layout.graph(ROOT)) == []


def test_no_import_circles():
    assert layout.circles(layout.graph(ROOT)) == []


def test_the_checker_sees_an_arrow_up_and_a_circle():
    edges = {"rebalance.models": {"rebalance.organism.train"}, "rebalance.organism.train": {"rebalance.models"}}
    assert layout.upward(edges) == [("rebalance.models", "rebalance.organism.train")]
    assert layout.circles(edges) == [["rebalance.models", "rebalance.organism.train"]]


def test_loading_a_model_never_imports_the_organism():
    edges = layout.graph(ROOT)
    reached, todo = set(), ["rebalance.models", "rebalance.stages.steer", "rebalance.stages.collect"]
    while todo:
        module = todo.pop()
        if module not in reached:
            reached.add(module)
            todo.extend(edges.get(module, ()))
    assert not any(m.startswith("rebalance.organism") for m in reached)
