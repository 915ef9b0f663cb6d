"""Small arithmetic problems with known answers, generated offline with fixed seeds, so the embedded
demo needs no download. Graded like GSM8K (a final number)."""

from __future__ import annotations

import argparse
import json
import os
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


def write_set(out_dir: str, name: str, count: int, seed: int) -> str:
    rng = random.Random(seed)
    folder = os.path.join(out_dir, name)
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, "test.jsonl")
    with open(path, "w", encoding="utf-8") as handle:
        for _ in range(count):
            handle.write(json.dumps(make_problem(rng)) + "\n")
    return path


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", default="Data")
    parser.add_argument("--seen", type=int, default=24)
    parser.add_argument("--heldout", type=int, default=24)
    args = parser.parse_args(argv)
    print(write_set(args.out, "Demo_Seen", args.seen, seed=0))
    print(write_set(args.out, "Demo_Heldout", args.heldout, seed=1))


if __name__ == "__main__":
    main()
