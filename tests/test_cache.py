"""Row and column surgery on the KV cache (decoding/cache.py), on caches filled by hand: every
key/value entry is a known number, so where each one ends up can be read off."""

import pytest
import torch
from transformers import DynamicCache, Qwen2Config

from rebalance.decoding import cache as kvcache
from rebalance.errors import UsageError

LAYERS, HEADS, DIM = 2, 2, 4


def config(**extra):
    return Qwen2Config(vocab_size=16, hidden_size=32, intermediate_size=64, num_hidden_layers=LAYERS,
                       num_attention_heads=4, num_key_value_heads=HEADS, **extra)


class Model:
    """What new_cache reads: the config."""

    def __init__(self, cfg):
        self.config = cfg


def filled(rows):
    """A cache whose row r holds columns rows[r] (a list of numbers; None = left padding, zeros);
    keys carry the number, values its negative, layer l adds 100 * l."""
    width = max(len(r) for r in rows)
    cache = DynamicCache(config=config())
    for layer in range(LAYERS):
        keys = torch.zeros(len(rows), HEADS, width, DIM)
        for r, row in enumerate(rows):
            for c, number in enumerate(row):
                if number is not None:
                    keys[r, :, c, :] = number + 100 * layer
        cache.update(keys, -keys, layer)
    return cache


def columns(cache, layer=0):
    """Row by row, the number each column holds (from the keys; checked against the values)."""
    keys, values = cache.layers[layer].keys, cache.layers[layer].values
    assert torch.equal(values, -keys)
    return (keys[:, 0, :, 0] - 100 * layer).tolist()


def test_keep_rows_in_the_given_order():
    cache = filled([[1, 2], [3, 4], [5, 6]])
    kvcache.keep_rows(cache, torch.tensor([2, 0]))
    assert columns(cache, 0) == columns(cache, 1) == [[5, 6], [1, 2]]


def test_append_rows_pads_the_narrower_side_on_the_left():
    live = filled([[1, 2, 3], [4, 5, 6]])
    fresh = filled([[7, 8, 9, 10, 11]])
    out = kvcache.append_rows(live, fresh)
    assert out is live and kvcache.width(out) == 5
    assert columns(out, 1) == [[-100, -100, 1, 2, 3], [-100, -100, 4, 5, 6], [7, 8, 9, 10, 11]]
    narrow = filled([[20]])
    kvcache.append_rows(out, narrow)
    assert columns(out)[-1] == [0, 0, 0, 0, 20] and columns(out)[0] == [0, 0, 1, 2, 3]


def test_append_rows_to_nothing_live_is_the_fresh_cache():
    fresh = filled([[1, 2]])
    assert kvcache.append_rows(None, fresh) is fresh
    assert kvcache.append_rows(DynamicCache(config=config()), fresh) is fresh


@pytest.mark.parametrize("drop, left", [(0, [[1, 2, 3], [4, 5, 6]]), (1, [[2, 3], [5, 6]]), (2, [[3], [6]])])
def test_drop_left_forgets_exactly_that_many_columns(drop, left):
    cache = filled([[1, 2, 3], [4, 5, 6]])
    kvcache.drop_left(cache, drop)
    assert columns(cache, 0) == columns(cache, 1) == left and kvcache.width(cache) == 3 - drop


def test_pad_left():
    t = torch.tensor([[1, 2]])
    assert kvcache.pad_left(t, 2, dim=1, value=9).tolist() == [[9, 9, 1, 2]]
    assert kvcache.pad_left(t, 1, dim=1).tolist() == [[0, 1, 2]]
    assert kvcache.pad_left(t, 0, dim=1) is t and kvcache.pad_left(t, -1, dim=1) is t


def test_sliding_window_caches_are_refused_full_ones_accepted():
    assert len(kvcache.new_cache(Model(config())).layers) == LAYERS
    with pytest.raises(UsageError) as refused:
        kvcache.new_cache(Model(config(use_sliding_window=True, sliding_window=8, max_window_layers=0)))
    assert str(refused.value) == ("this model has sliding-window attention layers; in-flight batching needs "
                                  "full-attention caches")
