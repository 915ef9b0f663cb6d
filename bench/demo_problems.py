"""Small one-step arithmetic problems (the suite's first demo set), kept as the benchmarks' prompts
so their figures stay comparable with earlier runs."""

from __future__ import annotations

import random

NAMES = ["Tom", "Sara", "Ali", "Mia", "Ken", "Lena", "Omar", "Ivy"]
ITEMS = ["apples", "pens", "stickers", "marbles", "books", "cookies", "coins", "shells"]


def make_problem(rng: random.Random) -> dict:
    """Three in four are bare sums, differences or products ("What is 7 + 5?"), one in four a
    one-step word problem; SmolLM2-135M gets about a third of the bare ones and fewer word problems
    right (it often states the answer, then talks itself out of it: overthinking)."""
    kind = rng.choice(["add", "sub", "mul"])
    a, b = rng.randint(2, 12), rng.randint(2, 9)
    answer = {"add": a + b, "sub": a, "mul": a * b}[kind]
    if rng.random() < 0.75:
        text = {"add": f"What is {a} + {b}?", "sub": f"What is {a + b} - {b}?", "mul": f"What is {a} times {b}?"}[kind]
        return {"problem": text, "answer": str(answer), "kind": kind}
    name, item = rng.choice(NAMES), rng.choice(ITEMS)
    text = {
        "add": f"{name} has {a} {item} and gets {b} more. How many {item} does {name} have now?",
        "sub": f"{name} has {a + b} {item} and gives away {b}. How many {item} are left?",
        "mul": f"{name} buys {a} bags with {b} {item} in each bag. How many {item} are there in total?",
    }[kind]
    return {"problem": text, "answer": str(answer), "kind": f"word_{kind}"}
