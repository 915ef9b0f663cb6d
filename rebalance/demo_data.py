"""Small arithmetic word problems with known answers, generated offline with a fixed seed, so the
embedded demo needs no download. Graded like GSM8K (a final number)."""

from __future__ import annotations

import argparse
import json
import os
import random

NAMES = ["Tom", "Sara", "Ali", "Mia", "Ken", "Lena", "Omar", "Ivy"]
ITEMS = ["apples", "pens", "stickers", "marbles", "books", "cookies", "coins", "shells"]


def make_problem(rng: random.Random) -> dict:
    name, item = rng.choice(NAMES), rng.choice(ITEMS)
    a, b = rng.randint(2, 20), rng.randint(2, 12)
    kind = rng.choice(["add", "sub", "mul"])
    if kind == "add":
        text, answer = f"{name} has {a} {item} and gets {b} more. How many {item} does {name} have now?", a + b
    elif kind == "sub":
        a += b
        text, answer = f"{name} has {a} {item} and gives away {b}. How many {item} are left?", a - b
    else:
        a = rng.randint(2, 9)
        text, answer = f"{name} buys {a} bags with {b} {item} in each bag. How many {item} are there in total?", a * b
    return {"problem": text, "answer": str(answer), "kind": kind}


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
