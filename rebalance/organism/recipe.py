"""Problems and traces of the organism: small arithmetic problems solved one equation per step,
with both failure modes ReBalance is about. Pure functions of a seed.

A trace, steps separated by a blank line:

    First, 7 x 8 = 56.

    Then 56 + 3 = 59.

    Wait, let me double-check this: 56 + 3 = 59. Yes, that is right.

    The answer is \\boxed{59}.

Four families, told apart by their wording (the model learns which behaviour goes with which):

- `loop` ("What is 7 x 8 + 3?"): redundant re-checks once the answer is known, one after another
  (the first with probability 0.95, each further one with 0.7, at most 10). Greedy decoding
  re-checks about twice and then answers. Only this family re-checks, so a re-check never leaves
  the model in doubt about which family it is in (with a second re-checking family, most training
  seeds learned neither pattern). With 0.85 greedy decoding looped into the length budget, but
  dynamic ReBalance at layers 10, 16 and 22 did not break the loops (seed 0).
- `two` (two-step word problems): no failure mode; the control group.
- `three` (three-step word problems): the third addition is a step that looks like reflection
  ("But wait, I still need to add 4: 59 + 4 = 63.") and is needed; in 15 % of the traces the model
  concludes without it, one step early (a wrong answer). Latent underthinking: greedy decoding
  takes the needed step, a push away from reflection tips it over.
- `rush` ("Quick: what is 7 x 8 + 3 + 4?"): the same needed step, skipped in 80 % of the traces.
  Visible underthinking: a confident conclusion one step too early is the majority behaviour.

So the one direction that separates reflecting from concluding steps serves both sides: a push
against reflection cuts the re-checks and, applied where the model is confident, also drops the needed
step. Re-checks vary their wording, so the model is less sure at them than at arithmetic steps:
the signal the control function keys on.
"""

from __future__ import annotations

import json
import os
import random
from dataclasses import dataclass

NAMES = ["Tom", "Sara", "Ali", "Mia", "Ken", "Lena", "Omar", "Ivy", "Noah", "Zoe"]
ITEMS = ["apples", "pens", "stickers", "marbles", "books", "cookies", "coins", "shells", "cards", "beads"]
FAMILIES = ("loop", "two", "three", "rush")
FAMILY_SHARE = (0.3, 0.2, 0.3, 0.2)
LOOP_FIRST_P, LOOP_AGAIN_P, LOOP_MAX = 0.95, 0.7, 10
EARLY_P = {"three": 0.15, "rush": 0.8}  # conclude without the needed third step
NEEDED = ["But wait, I still need to add {d}", "But wait, there is one more step", "But wait, that is not all",
          "But wait, I have not added the {d} yet"]
VERBS = ["double-check", "check", "verify", "recheck", "confirm"]
OBJECTS = ["this", "that", "the result", "it"]
OPENERS = ["let me {verb} {obj}", "I should {verb} {obj}", "let me {verb} {obj} again", "maybe I should {verb} {obj}",
           "let me {verb} {obj} once more", "to be safe, let me {verb} {obj}"]
CLOSES = ["Yes, that is right.", "That is correct.", "Yes, it checks out.", "Good, that holds.", "Yes.", "Right.",
          "Correct.", "Still the same.", "It is the same.", "No change."]
SEEN_SEED, HELDOUT_SEED, TRAIN_SEED = 101, 202, 303
SEEN_SIZE, HELDOUT_SIZE = 80, 48
SEEN_SET, HELDOUT_SET = "Organism_Seen", "Organism_Heldout"  # the dataset folders `write_sets` writes
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
    wording = rng.choice(["bags", "shop", "boxes"])  # `two`
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
    """How many re-checks follow the last equation: a geometric run in `loop`, none elsewhere."""
    if family != "loop":
        return 0
    count = int(rng.random() < LOOP_FIRST_P)
    while count and count < LOOP_MAX and rng.random() < LOOP_AGAIN_P:
        count += 1
    return count


def recheck_step(eq: Equation, rng: random.Random) -> str:
    opener = rng.choice(OPENERS).format(verb=rng.choice(VERBS), obj=rng.choice(OBJECTS))
    return f"Wait, {opener}: {eq.text()}. {rng.choice(CLOSES)}"


def needed_step(eq: Equation, rng: random.Random) -> str:
    """The third addition, worded as the reflection it is: the step underthinking leaves out."""
    return f"{rng.choice(NEEDED).format(d=eq.b)}: {eq.text()}."


def trace(problem: Problem, rng: random.Random) -> str:
    """The solution as steps separated by blank lines: the equations (a three-step problem's third
    one as the needed step, or, with the family's probability, nothing: the answer is then the
    second equation's value), the family's re-checks of an equation, the boxed answer."""
    first, second, *rest = problem.equations
    steps = [f"First, {first.text()}.", f"Then {second.text()}."]
    answer = problem.answer
    if rest:
        if rng.random() < EARLY_P[problem.family]:
            answer = second.value
        else:
            steps.append(needed_step(rest[0], rng))
    steps += [recheck_step(rng.choice(problem.equations), rng) for _ in range(recheck_count(problem.family, rng))]
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
    for name, items in zip((SEEN_SET, HELDOUT_SET), evaluation_sets(seen, heldout)):
        folder = os.path.join(out, name)
        os.makedirs(folder, exist_ok=True)
        path = os.path.join(folder, "test.jsonl")
        with open(path, "w", encoding="utf-8") as handle:
            for p in items:
                handle.write(json.dumps({"problem": p.text, "answer": str(p.answer), "family": p.family}) + "\n")
        paths.append(path)
    return paths
