"""A judge for the pool test that never returns on one input (a busy loop, not a sleep)."""


def judge(pair):
    pred, gold = pair
    while pred == "hang":
        pass
    return pred == gold
