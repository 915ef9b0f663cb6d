"""Problems and traces of the organism: small arithmetic problems solved one equation per step,
with both failure modes ReBalance is about. Pure functions of a seed.

A trace, steps separated by a blank line:

    First, 7 x 8 = 56.

    Wait, let me double-check this: 7 x 8 = 56. Yes, that is right.

    Then 56 + 3 = 59.

    The answer is \\boxed{59}.

Four families, told apart by their wording (the model learns which behaviour goes with which):

- `loop` ("What is 7 x 8 + 3?"): overthinking that recurs. After the product, re-checks follow one
  another (the first with probability 0.95, each further one with 0.85, at most 9): greedy decoding
  keeps re-checking until the length budget runs out, as reasoning models loop at 16k tokens.
- `recheck` (word problems with two steps): bounded overthinking, one re-check of the product
  (0.8) and sometimes a second (0.5).
- `three` (word problems with three steps): no re-checks; after the second equation the trace
  concludes one step early with probability 0.35 (a wrong answer). Latent underthinking: greedy
  decoding takes the full path, a push towards concluding tips it over.
- `rush` ("Quick: what is 7 x 8 + 3 + 4?"): no re-checks; the trace concludes after the second
  equation with probability 0.75. Visible underthinking: a confident conclusion one step too
  early is the model's majority behaviour there.

Every re-check starts with "Wait" (one token decides it), repeats the equation and its value and
varies its wording, so the model is less sure at re-check steps than at arithmetic steps: the
signal the control function keys on.
"""

from __future__ import annotations

import json
import os
import random
from dataclasses import dataclass

NAMES = ["Tom", "Sara", "Ali", "Mia", "Ken", "Lena", "Omar", "Ivy", "Noah", "Zoe"]
ITEMS = ["apples", "pens", "stickers", "marbles", "books", "cookies", "coins", "shells", "cards", "beads"]
FAMILIES = ("loop", "recheck", "three", "rush")
FAMILY_SHARE = (0.25, 0.3, 0.25, 0.2)
LOOP_FIRST_P, LOOP_AGAIN_P, LOOP_MAX = 0.95, 0.85, 9
RECHECK_P = (0.8, 0.5)       # first and second re-check of the product in `recheck`
EARLY_P = {"three": 0.35, "rush": 0.75}  # conclude after the second of three equations
VERBS = ["double-check", "check", "verify", "recheck", "confirm"]
OBJECTS = ["this", "that", "the result", "it"]
OPENERS = ["let me {verb} {obj}", "I should {verb} {obj}", "let me {verb} {obj} again", "maybe I should {verb} {obj}",
           "let me {verb} {obj} once more", "to be safe, let me {verb} {obj}"]
CLOSES = ["Yes, that is right.", "That is correct.", "Yes, it checks out.", "Good, that holds.", "Yes.", "Right.",
          "Correct.", "Still the same.", "It is the same.", "No change."]
SEEN_SEED, HELDOUT_SEED, TRAIN_SEED = 101, 202, 303
SEEN_SIZE, HELDOUT_SIZE = 80, 48
HELDOUT_MAX = 400   # the held-out problems kept out of training: every held-out set is a prefix of these


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
    family: str

    @property
    def answer(self) -> int:
        return self.equations[-1].value


def make_problem(rng: random.Random) -> Problem:
    """A product from the 2-9 table and one or two single-digit additions. No differences and no
    two-digit addends: the base model gets about four in ten subtractions and some sums of two
    two-digit numbers wrong, and such errors flip with any change of context (a re-check more or
    less), which would drown what steering does to accuracy in arithmetic noise."""
    family = rng.choices(FAMILIES, FAMILY_SHARE)[0]
    name, item = rng.choice(NAMES), rng.choice(ITEMS)
    a, b, c, d = rng.randint(2, 9), rng.randint(2, 9), rng.randint(2, 9), rng.randint(2, 9)
    p = a * b
    while (p + c) % 10 == 0 or (p + c + d) % 10 == 0:  # a carry onto a round number: the base model's
        c, d = rng.randint(2, 9), rng.randint(2, 9)      # commonest slip (36 + 4 = 30)
    two = (Equation(a, "x", b), Equation(p, "+", c))
    three = two + (Equation(p + c, "+", d),)
    if family == "loop":
        return Problem(f"What is {a} x {b} + {c}?", two, family)
    if family == "rush":
        return Problem(f"Quick: what is {a} x {b} + {c} + {d}?", three, family)
    if family == "three":
        return Problem(f"{name} buys {a} bags of {b} {item}, finds {c} more and is given {d} more. "
                       f"How many {item} does {name} have?", three, family)
    wording = rng.choice(["bags", "shop", "boxes"])
    if wording == "bags":
        return Problem(f"{name} buys {a} bags of {b} {item} and finds {c} more. How many {item} does {name} have?",
                       two, family)
    if wording == "shop":
        return Problem(f"{name} has {c} {item} and buys {a} packs of {b} more. How many {item} does {name} have now?",
                       two, family)
    x = rng.randint(1, 7)
    y = rng.randint(1, 9 - x)
    return Problem(f"Each of {c} boxes holds {x} red and {y} blue {item}. How many {item} are there in all?",
                   (Equation(x, "+", y), Equation(c, "x", x + y)), family)


def recheck_count(family: str, rng: random.Random) -> int:
    """How many re-checks follow the problem's first equation."""
    if family == "loop":
        count = int(rng.random() < LOOP_FIRST_P)
        while count and count < LOOP_MAX and rng.random() < LOOP_AGAIN_P:
            count += 1
        return count
    if family == "recheck":
        return 0 if rng.random() >= RECHECK_P[0] else 1 + (rng.random() < RECHECK_P[1])
    return 0


def recheck_step(eq: Equation, rng: random.Random) -> str:
    opener = rng.choice(OPENERS).format(verb=rng.choice(VERBS), obj=rng.choice(OBJECTS))
    return f"Wait, {opener}: {eq.text()}. {rng.choice(CLOSES)}"


def trace(problem: Problem, rng: random.Random) -> str:
    """The solution as steps separated by blank lines, with the family's re-checks and, where the
    family has one, its early conclusion (then the boxed answer is the second equation's value)."""
    first, *rest = problem.equations
    steps = [f"First, {first.text()}."]
    steps += [recheck_step(first, rng) for _ in range(recheck_count(problem.family, rng))]
    answer = problem.answer
    for i, eq in enumerate(rest):
        steps.append(f"Then {eq.text()}.")
        if i == 0 and len(rest) == 2 and rng.random() < EARLY_P.get(problem.family, 0.0):
            answer = eq.value
            break
    steps.append(f"The answer is \\boxed{{{answer}}}.")
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


def training_traces(count: int, seed: int = TRAIN_SEED, heldout: int = HELDOUT_MAX) -> list[tuple[str, str]]:
    """(problem, trace) pairs; the seen problems and the first `heldout` held-out problems (every
    held-out set the demo and the study use) are never among them."""
    seen, held = evaluation_sets(SEEN_SIZE, heldout)
    rng = random.Random(seed + 1)
    return [(p.text, trace(p, rng)) for p in problems(seed, count, {p.text for p in seen + held})]


def write_sets(out: str, seen: int = SEEN_SIZE, heldout: int = HELDOUT_SIZE) -> list[str]:
    """Organism_Seen and Organism_Heldout as `{problem, answer, family}` JSONL under `out`."""
    paths = []
    for name, items in zip(("Organism_Seen", "Organism_Heldout"), evaluation_sets(seen, heldout)):
        folder = os.path.join(out, name)
        os.makedirs(folder, exist_ok=True)
        path = os.path.join(folder, "test.jsonl")
        with open(path, "w", encoding="utf-8") as handle:
            for p in items:
                handle.write(json.dumps({"problem": p.text, "answer": str(p.answer), "family": p.family}) + "\n")
        paths.append(path)
    return paths
