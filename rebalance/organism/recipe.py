"""Problems and traces of the overthinking organism (`organism.py`): small arithmetic word problems
and bare expressions, solved one equation per step, with redundant re-checks that never change a
value. Pure functions of a seed.

A trace, steps separated by a blank line:

    First, 7 x 8 = 56.

    Wait, let me double-check this: 7 x 8 = 56. Yes, that is right.

    Wait, let me check it again: 7 x 8 = 56. Right.

    Then 56 + 3 = 59.

    The answer is \\boxed{59}.

After a product a first re-check follows with probability 0.8 and then a second with 0.65; after a
sum 0.25 and 0.3. Every re-check starts with "Wait" (one token decides it) and its
wording varies, which keeps the model less sure at re-check steps than at the arithmetic: the
signal the control function keys on.
"""

from __future__ import annotations

import json
import os
import random
from dataclasses import dataclass

NAMES = ["Tom", "Sara", "Ali", "Mia", "Ken", "Lena", "Omar", "Ivy", "Noah", "Zoe"]
ITEMS = ["apples", "pens", "stickers", "marbles", "books", "cookies", "coins", "shells", "cards", "beads"]
RECHECK_P = {"x": (0.8, 0.65), "+": (0.25, 0.3)}
FIRST_VERB = ["double-check", "check", "verify"]
FIRST_OBJECT = ["this", "that"]
FIRST_CLOSE = ["Yes, that is right.", "That is correct.", "Yes, it checks out.", "Good, that holds."]
SECOND_ADVERB = ["again", "once more", "one more time"]
SECOND_CLOSE = ["Yes.", "Right.", "Correct.", "Still the same."]
SEEN_SEED, HELDOUT_SEED, TRAIN_SEED = 101, 202, 303
SEEN_SIZE, HELDOUT_SIZE = 80, 48


@dataclass(frozen=True)
class Equation:
    a: int
    op: str     # x or +
    b: int

    @property
    def value(self) -> int:
        return {"x": self.a * self.b, "+": self.a + self.b}[self.op]

    def text(self) -> str:
        return f"{self.a} {self.op} {self.b} = {self.value}"


@dataclass(frozen=True)
class Problem:
    text: str
    equations: tuple[Equation, ...]

    @property
    def answer(self) -> int:
        return self.equations[-1].value


def make_problem(rng: random.Random) -> Problem:
    """Two- and three-step problems: a product from the 2-9 table and one or two single-digit
    additions. No differences, and what is added is one digit: the base model gets about four in
    ten subtractions and some sums of two two-digit numbers wrong, and those errors flip with any
    change of context (a re-check more or less), which would drown what steering does to accuracy
    in arithmetic noise."""
    kind = rng.choice(["mul_add", "bags", "boxes", "shop", "three"])
    name, item = rng.choice(NAMES), rng.choice(ITEMS)
    a, b, c = rng.randint(2, 9), rng.randint(2, 9), rng.randint(2, 9)
    p = a * b
    if kind == "mul_add":
        return Problem(f"What is {a} x {b} + {c}?", (Equation(a, "x", b), Equation(p, "+", c)))
    if kind == "bags":
        return Problem(f"{name} buys {a} bags of {b} {item} and finds {c} more. How many {item} does {name} have?",
                       (Equation(a, "x", b), Equation(p, "+", c)))
    if kind == "boxes":
        x = rng.randint(1, 7)
        y = rng.randint(1, 9 - x)
        return Problem(f"Each of {c} boxes holds {x} red and {y} blue {item}. How many {item} are there in all?",
                       (Equation(x, "+", y), Equation(c, "x", x + y)))
    if kind == "shop":
        return Problem(f"{name} has {c} {item} and buys {a} packs of {b} more. How many {item} does {name} have now?",
                       (Equation(a, "x", b), Equation(p, "+", c)))
    d = rng.randint(2, 9)
    return Problem(f"What is {a} x {b} + {c} + {d}?", (Equation(a, "x", b), Equation(p, "+", c), Equation(p + c, "+", d)))


def trace(problem: Problem, rng: random.Random) -> str:
    """The solution as steps separated by blank lines, with the redundant re-checks."""
    steps = []
    for i, eq in enumerate(problem.equations):
        steps.append(f"{'First,' if i == 0 else 'Then'} {eq.text()}.")
        first, second = RECHECK_P[eq.op]
        if rng.random() < first:
            steps.append(f"Wait, let me {rng.choice(FIRST_VERB)} {rng.choice(FIRST_OBJECT)}: {eq.text()}. "
                         f"{rng.choice(FIRST_CLOSE)}")
            if rng.random() < second:
                steps.append(f"Wait, let me check it {rng.choice(SECOND_ADVERB)}: {eq.text()}. {rng.choice(SECOND_CLOSE)}")
    steps.append(f"The answer is \\boxed{{{problem.answer}}}.")
    return "\n\n".join(steps)


def problems(seed: int, count: int, exclude: set[str] = frozenset()) -> list[Problem]:
    """`count` distinct problems from `seed`, none of whose text is in `exclude`."""
    rng, out, seen = random.Random(seed), [], set(exclude)
    while len(out) < count:
        problem = make_problem(rng)
        if problem.text not in seen:
            seen.add(problem.text)
            out.append(problem)
    return out


def evaluation_sets(seen: int = SEEN_SIZE, heldout: int = HELDOUT_SIZE) -> tuple[list[Problem], list[Problem]]:
    seen_set = problems(SEEN_SEED, seen)
    return seen_set, problems(HELDOUT_SEED, heldout, {p.text for p in seen_set})


def training_traces(count: int, seed: int = TRAIN_SEED) -> list[tuple[str, str]]:
    """(problem, trace) pairs; the seen and held-out problems are never among them."""
    seen, heldout = evaluation_sets()
    rng = random.Random(seed + 1)
    return [(p.text, trace(p, rng)) for p in problems(seed, count, {p.text for p in seen + heldout})]


def write_sets(out: str, seen: int = SEEN_SIZE, heldout: int = HELDOUT_SIZE) -> list[str]:
    """Organism_Seen and Organism_Heldout as `{problem, answer}` JSONL under `out`."""
    paths = []
    for name, items in zip(("Organism_Seen", "Organism_Heldout"), evaluation_sets(seen, heldout)):
        folder = os.path.join(out, name)
        os.makedirs(folder, exist_ok=True)
        path = os.path.join(folder, "test.jsonl")
        with open(path, "w", encoding="utf-8") as handle:
            for p in items:
                handle.write(json.dumps({"problem": p.text, "answer": str(p.answer)}) + "\n")
        paths.append(path)
    return paths
