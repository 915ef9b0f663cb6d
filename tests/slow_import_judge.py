"""A judge for the pool test whose import takes about two seconds of busy work (as importing
math-verify does on a slow machine): a limit that counted it would time out every comparison."""

import time

_until = time.monotonic() + 2.0
while time.monotonic() < _until:
    pass


def judge(pair):
    pred, gold = pair
    return pred == gold
