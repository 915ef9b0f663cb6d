"""Is an extracted answer equal to the gold one? Letters and yes/no by value, plain numbers by value,
everything else with the `math-verify` library, each of those comparisons under a time limit in a
worker process so a pathological expression cannot hang the run.

Graders: `strict` (default) is math-verify's semantics; `paper` is the authors' own rules, kept in
`paper_rules.py` (docs/method.md §11); both run their hard comparisons through `math_verify_all`.
"""

from __future__ import annotations

import math
import multiprocessing as mp
import os
import time
from queue import Empty
from typing import Callable, Sequence

from .answers import parse_number

GRADERS = ("strict", "paper")
TIMEOUT_S = 10.0  # per comparison, wall clock, counted from when the worker starts it
STARTUP_S = 300.0  # for a worker to start and import its judge (not part of any comparison's limit)


def _close(a: float, b: float, rel: float) -> bool:
    return math.isclose(a, b, rel_tol=rel, abs_tol=rel if b == 0 else 0.0)


def numbers_equal(pred: float, gold: float) -> bool:
    return _close(pred, gold, 1e-9)


def quick_judge(pred: str | None, gold: str, family: str) -> bool | None:
    """The verdict when it needs no symbolic maths; None when math-verify must decide."""
    if pred is None or not pred.strip():
        return False
    if family == "gpqa":
        return pred.strip().upper() == gold.strip().upper()
    if family == "yesno":
        return pred.strip().lower() == gold.strip().lower()
    p, g = parse_number(pred), parse_number(gold)
    if p is not None and g is not None:
        if numbers_equal(p, g):
            return True
        if family == "gsm8k":
            return False
    return None  # not two plain numbers (or maths may still equate them): math-verify decides


def _as_math(text: str) -> str:
    return "$" + text.strip().strip("$").strip() + "$"


def math_verify_equal(pred: str, gold: str) -> bool:
    """math-verify's verdict on two LaTeX answers (run inside a worker)."""
    from math_verify import parse, verify

    gold_parsed = parse(_as_math(gold), parsing_timeout=5)
    pred_parsed = parse(_as_math(pred), parsing_timeout=5)
    if not gold_parsed or not pred_parsed:
        return False
    return bool(verify(gold_parsed, pred_parsed, timeout_seconds=5))


def _worker(pair: tuple[str, str]) -> bool:
    try:
        return math_verify_equal(*pair)
    except Exception:  # noqa: BLE001 - an answer the library cannot handle is not a match
        return False


_started = None  # in a worker: the queue on which each comparison announces its start


def _announce_to(queue) -> None:
    global _started
    _started = queue


def _timed(task: tuple[int, Callable[[tuple[str, str]], bool] | None, tuple[str, str]]) -> bool:
    position, judge, pair = task
    _started.put((position, time.monotonic()))  # CLOCK_MONOTONIC is one clock for every process
    return (judge or _worker)(pair)


def math_verify_all(pairs: Sequence[tuple[str, str]], workers: int | None = None, timeout: float = TIMEOUT_S,
                    judge: Callable[[tuple[str, str]], bool] | None = None) -> tuple[list[bool], list[int]]:
    """Verdicts for (pred, gold) pairs in worker processes; a comparison still running `timeout`
    seconds after its worker started it (starting workers and importing math-verify do not count)
    is judged False, its pool is torn down and the rest go to a fresh one. Returns the verdicts and
    the positions that timed out."""
    verdicts: list[bool | None] = [None] * len(pairs)
    timed_out: list[int] = []
    pending = list(range(len(pairs)))
    workers = max(1, min(workers or os.cpu_count() or 1, len(pairs) or 1))
    ctx = mp.get_context("spawn")
    while pending:
        started_queue = ctx.Queue()
        started: dict[int, float] = {}
        pool = ctx.Pool(workers, initializer=_announce_to, initargs=(started_queue,))
        try:
            handles = [(i, pool.apply_async(_timed, ((i, judge, pairs[i]),))) for i in pending]
            pending = []
            for pos, (i, handle) in enumerate(handles):
                try:
                    verdicts[i] = handle.get(timeout=_time_left(i, handle, started, started_queue, timeout))
                except mp.TimeoutError:
                    verdicts[i] = False
                    timed_out.append(i)
                    for j, other in handles[pos + 1:]:
                        if other.ready():
                            verdicts[j] = other.get()
                        else:
                            pending.append(j)
                    break
        finally:
            pool.terminate()
            pool.join()
            started_queue.close()
    return [bool(v) for v in verdicts], timed_out


def _time_left(position: int, handle, started: dict[int, float], queue, timeout: float) -> float:
    """Wait until comparison `position` has started (or finished), then what is left of its limit."""
    give_up = time.monotonic() + STARTUP_S
    while position not in started and not handle.ready():
        try:
            index, at = queue.get(timeout=min(0.05, max(give_up - time.monotonic(), 0.0)))
            started[index] = at
        except Empty:
            if time.monotonic() >= give_up:
                return 0.0
    return max(timeout - (time.monotonic() - started.get(position, time.monotonic())), 0.0)
