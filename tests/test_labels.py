"""The reflection lexicon, step texts, variances, quantiles and the two labelling rules (docs/method.md §5)."""

import numpy as np
import pytest

from rebalance.analysis.labels import (
    DROPPED,
    NEGATIVE,
    POSITIVE,
    Quantiles,
    has_reflection,
    label_step,
    quantiles,
    record_labels,
    release_step_texts,
    step_variances,
)


@pytest.mark.parametrize("text, hits", [
    ("Wait, that is wrong.", True),
    ("I am waiting for the bus.", False),
    ("But the sum is 7.", True),
    ("Spread the butter.", False),
    ("Let me double-check the sum.", True),
    ("let me  check", True),
    ("Let me\ncheck once more", True),
    ("I was sure.", True),
    ("I wasn't sure.", False),
    ("That is confused.", True),
    ("There is confusion here.", False),
    ("A different route.", True),
    ("Differently put:", True),
    ("The alternating sum.", True),
    ("Alternatives exist.", True),
    ("Carefully now.", True),
    ("Carefulness matters.", False),
    ("Sometime later.", True),
    ("anothers", False),
    ("Hmm \u2014 perhaps not.", True),
    ("Let\u2019s make\u2013sure it holds.", True),
    ("HOLD ON.", True),
    ("The total is 12.", False),
    ("There are other ways.", False),  # "there any other" needs these words in this order
    ("Are there any other ways?", True),
    ("maybe", True),
    ("maybelline", False),
])
def test_lexicon(text, hits):
    assert has_reflection(text) is hits


def test_release_step_texts_split_before_think_close():
    response = "First step.\n\n\n\n  Second step. \n\nWait.\n\n\n</think>\n\nAnswer: 3\n\nDone"
    assert release_step_texts(response) == ["First step.", "Second step.", "Wait."]
    assert release_step_texts("no close\n\nat all") == ["no close", "at all"]


def test_step_variances():
    assert step_variances([0.5, 0.9, 0.1]) == pytest.approx([0.0, 0.04, 0.16])


def test_quantiles_match_numpy_over_all_records():
    rng = np.random.default_rng(1)
    records = [rng.uniform(0, 1, rng.integers(1, 9)).tolist() for _ in range(30)]
    q = quantiles(records, offset=1)
    conf = np.concatenate([np.asarray(r) for r in records])
    var = np.concatenate([np.diff(np.asarray(r)) ** 2 / 4 for r in records])
    assert (q.q25c, q.q75c) == tuple(np.percentile(conf, [25, 75]))
    assert (q.q25v, q.q75v) == tuple(np.percentile(var, [25, 75]))
    # offset 2 drops each record's first consecutive pair from the variances
    q2 = quantiles(records, offset=2)
    var2 = np.concatenate([np.diff(np.asarray(r))[1:] ** 2 / 4 for r in records])
    assert (q2.q25v, q2.q75v) == tuple(np.percentile(var2, [25, 75]))


Q = Quantiles(q25c=0.5, q75c=0.8, q25v=0.001, q75v=0.01)


@pytest.mark.parametrize("rule, text, c, v, expected", [
    ("conf_mixed", "Wait.", 0.95, 0.0, POSITIVE),      # the lexicon wins over high confidence
    ("conf_mixed", "Add.", 0.4, 0.0, POSITIVE),        # low confidence alone
    ("conf_mixed", "Add.", 0.9, 0.5, NEGATIVE),        # confident, no reflection; variance ignored
    ("conf_mixed", "Add.", 0.6, 0.0, DROPPED),         # in between
    ("conf_mixed", "Add.", 0.5, 0.0, DROPPED),         # strict: c == q25c is not below it
    ("paper", "Wait.", 0.95, 0.0, NEGATIVE),           # the paper rule ignores the text
    ("paper", "Add.", 0.5, 0.01, POSITIVE),            # inclusive bounds
    ("paper", "Add.", 0.4, 0.005, DROPPED),            # low confidence but calm
    ("paper", "Add.", 0.8, 0.001, NEGATIVE),
    ("paper", "Add.", 0.9, 0.02, DROPPED),
])
def test_label_rules(rule, text, c, v, expected):
    assert label_step(rule, text, c, v, Q) == expected


def test_record_labels_pair_row_j_with_step_j_plus_offset():
    conf = [0.9, 0.3, 0.9, 0.6]
    texts = ["Add.", "Add.", "But no.", "Add."]
    assert record_labels("conf_mixed", conf, texts, "", 3, 1, Q) == [POSITIVE, POSITIVE, DROPPED]
    # without step_texts the response is split by the release's rule
    assert record_labels("conf_mixed", conf, None, "Add.\n\nAdd.\n\nBut no.\n\nAdd.", 3, 1, Q) == [POSITIVE, POSITIVE, DROPPED]
