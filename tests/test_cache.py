"""The engine's key/value slots (decoding/cache.py), on caches filled by hand: every key/value
entry is a known number, so where each one ends up can be read off."""

from types import SimpleNamespace

import pytest
import torch
from transformers import Qwen2Config, Qwen3NextConfig

from rebalance.decoding import cache as kvcache
from rebalance.errors import UsageError

LAYERS, HEADS, DIM = 2, 2, 4


def config(**extra):
    return Qwen2Config(vocab_size=16, hidden_size=32, intermediate_size=64, num_hidden_layers=LAYERS,
                       num_attention_heads=4, num_key_value_heads=HEADS, **extra)


class Model:
    """What the cache module reads of a model: its config."""

    def __init__(self, cfg, attention=None):
        self.config = cfg
        if attention is not None:
            cfg._attn_implementation = attention


def states(rows, layer, start, end):
    """Keys of columns start .. end - 1 of a left-padded prefill whose row r holds rows[r] (numbers;
    None = padding, zeros): keys carry the number plus 100 x layer (values are their negative)."""
    keys = torch.zeros(len(rows), HEADS, end - start, DIM)
    for r, row in enumerate(rows):
        for c in range(start, end):
            if row[c] is not None:
                keys[r, :, c - start, :] = row[c] + 100 * layer
    return keys


def admit(cache, rows, capacity, chunk=None):
    """Prefill `rows` through an admission as the model would, `chunk` columns a forward (all at
    once by default); returns what attention saw, per chunk and layer."""
    width = max(len(r) for r in rows)
    lengths = [sum(n is not None for n in row) for row in rows]
    admission = cache.admission(lengths, width, capacity)
    seen = []
    for start in range(0, width, chunk or width):
        end = min(width, start + (chunk or width))
        assert admission.at(start).get_seq_length() == start and admission.get_mask_sizes(end - start, 0) == (end, 0)
        for layer in range(LAYERS):
            keys = states(rows, layer, start, end)
            seen.append(admission.update(keys, -keys, layer))
    admission.close()
    return seen


def slots(cache, layer=0, columns=None):
    """Slot by slot, the number each column holds (from the keys; checked against the values)."""
    keys, values = cache.keys[layer], cache.values[layer]
    assert torch.equal(values, -keys)
    return (keys[:, 0, :columns, 0] - 100 * layer * (keys[:, 0, :columns, 0] != 0)).tolist()


def admitted(*groups, slots_=3, capacity=4):
    cache = kvcache.SlotCache(slots_)
    for rows in groups:
        admit(cache, rows, capacity)
    return cache


def test_admitted_rows_start_at_column_zero_of_the_next_free_slots():
    cache = admitted([[None, 1, 2], [3, 4, 5]], [[6]])
    assert cache.rows == 3 and cache.capacity == kvcache.ROUND
    assert slots(cache, 0, 4) == slots(cache, 1, 4) == [[1, 2, 0, 0], [3, 4, 5, 0], [6, 0, 0, 0]]
    with pytest.raises(RuntimeError, match="3 live rows \\+ 1 admitted exceed 3 slots"):
        cache.admission([1], 1, 4)


@pytest.mark.parametrize("chunk", [1, 2, 3, 4])
def test_a_prefill_in_chunks_fills_the_slots_as_one_piece_and_attention_sees_the_whole_prefix(chunk):
    rows = [[None, None, 1, 2], [3, 4, 5, 6], [None, None, None, 7]]
    cache = kvcache.SlotCache(3)
    seen = admit(cache, rows, capacity=8, chunk=chunk)
    assert cache.rows == 3 and slots(cache, 1, 5) == [[1, 2, 0, 0, 0], [3, 4, 5, 6, 0], [7, 0, 0, 0, 0]]
    for i, (keys, values) in enumerate(seen):  # chunk by chunk, layer by layer
        start, layer = (i // LAYERS) * chunk, i % LAYERS
        end = min(4, start + chunk)
        assert torch.equal(keys, states(rows, layer, 0, end)) and torch.equal(values, -keys)


def test_a_step_writes_each_row_at_its_own_column_and_reads_views():
    cache = admitted([[None, 1, 2], [3, 4, 5]])
    storage = cache.keys[1].data_ptr()
    cache.begin_step(torch.tensor([2, 3]), columns=4)
    new = torch.tensor([10.0, 20.0])[:, None, None, None].expand(2, HEADS, 1, DIM) + 100
    keys, values = cache.update(new, -new, 1)
    cache.end_step()
    assert keys.shape == (2, HEADS, 4, DIM) and keys.data_ptr() == storage == cache.keys[1].data_ptr()
    assert (keys[:, 0, :, 0] - 100).tolist() == [[1, 2, 10, -100], [3, 4, 5, 20]]
    assert torch.equal(values, -keys)
    with pytest.raises(RuntimeError, match="outside a decoding step"):
        cache.update(new, -new, 1)
    cache.begin_step(torch.tensor([2, 3]), columns=4)
    with pytest.raises(RuntimeError, match="one token a row a step, got 2"):
        cache.update(new.expand(2, HEADS, 2, DIM), -new.expand(2, HEADS, 2, DIM), 1)
    cache.end_step()
    with pytest.raises(RuntimeError, match="column 64 of a 64-column cache"):
        cache.begin_step(torch.tensor([2, 3]), columns=65)


def test_the_model_sees_the_step_sizes():
    cache = admitted([[1, 2]])
    cache.begin_step(torch.tensor([2]), columns=3)
    assert cache.get_seq_length() == 2 and cache.get_mask_sizes(1, 0) == (3, 0)


def test_fill_moves_tail_rows_into_freed_slots_only():
    cache = admitted([[1, 2], [None, 3], [5, 6], [7, 8]], slots_=4)
    cache.fill([(3, 1)], rows=3, lengths=[2])
    assert cache.rows == 3
    assert slots(cache, 1, 2)[:3] == [[1, 2], [7, 8], [5, 6]]
    with pytest.raises(RuntimeError, match="does not fill a hole"):
        cache.fill([(1, 2)], rows=3, lengths=[2])
    with pytest.raises(RuntimeError, match="does not fill a hole"):
        cache.fill([(3, 3)], rows=3, lengths=[2])


def test_a_longer_prompt_widens_every_slot_keeping_its_columns():
    cache = admitted([[1, 2]], capacity=4)
    admit(cache, [[3] * 70], capacity=70)
    assert cache.capacity == 128 and cache.keys[0].shape == (3, HEADS, 128, DIM)
    assert slots(cache, 1, 3)[:2] == [[1, 2, 0], [3, 3, 3]] and slots(cache, 1)[1][69:71] == [3, 0]


@pytest.mark.parametrize("tokens, capacity", [(1, 64), (64, 64), (65, 128), (200, 256)])
def test_capacity_rounds_up_to_whole_blocks(tokens, capacity):
    assert kvcache.capacity_for(tokens) == capacity


def test_decoding_mask_shows_each_row_its_columns():
    lengths = torch.tensor([1, 3])
    seen = kvcache.decoding_mask(lengths, 4, "sdpa", torch.float32)
    assert seen.shape == (2, 1, 1, 4) and seen.dtype == torch.bool
    assert seen[:, 0, 0].tolist() == [[True, True, False, False], [True, True, True, True]]
    additive = kvcache.decoding_mask(lengths, 4, "eager", torch.float16)
    low = torch.finfo(torch.float16).min
    assert additive.dtype == torch.float16 and additive[:, 0, 0].tolist() == [[0, 0, low, low], [0, 0, 0, 0]]


def test_attention_needing_another_mask_is_refused():
    assert kvcache.attention_kind(Model(config(), "eager")) == "eager"
    assert kvcache.attention_kind(Model(config(), "sdpa")) == "sdpa"
    assert kvcache.attention_kind(SimpleNamespace(config=SimpleNamespace())) == "sdpa"  # unset: transformers' default
    with pytest.raises(UsageError) as refused:
        kvcache.attention_kind(Model(config(), "flash_attention_2"))
    assert str(refused.value) == ("this model runs attn_implementation='flash_attention_2'; in-flight batching "
                                  "builds its own attention mask and needs one of sdpa, eager")


def test_sliding_window_and_linear_attention_caches_are_refused_full_ones_accepted():
    kvcache.check_full_attention(Model(config()))  # accepted
    with pytest.raises(UsageError) as refused:
        kvcache.check_full_attention(Model(config(use_sliding_window=True, sliding_window=8, max_window_layers=0)))
    assert str(refused.value) == ("this model has sliding-window attention layers; in-flight batching needs "
                                  "full-attention caches")
    with pytest.raises(UsageError) as linear:
        kvcache.check_full_attention(Model(Qwen3NextConfig(num_hidden_layers=4)))
    assert str(linear.value) == ("this model has layers without a key/value cache (linear attention); in-flight "
                                 "batching needs full-attention caches")


def test_a_fresh_cache_has_no_columns_and_takes_no_step():
    cache = kvcache.SlotCache(2)
    assert cache.get_seq_length() == 0 and cache.get_mask_sizes(1, 0) == (0, 0)
    with pytest.raises(RuntimeError, match="column 0 of a 0-column cache"):
        cache.begin_step(torch.tensor([0]), columns=1)
    admitted_only = admitted([[1, 2]])
    with pytest.raises(RuntimeError) as outside:
        admitted_only.update(torch.zeros(1, HEADS, 1, DIM), torch.zeros(1, HEADS, 1, DIM), 0)
    assert str(outside.value) == "SlotCache.update outside a decoding step (the engine calls begin_step first)"


def test_a_step_may_fill_the_last_column_and_states_take_the_cache_dtype():
    cache = admitted([[1, 2]])
    cache.begin_step(torch.tensor([63]), columns=64)  # the last column: allowed
    new = torch.full((1, HEADS, 1, DIM), 7.0, dtype=torch.float64)
    keys, values = cache.update(new, -new, 0)
    assert keys.dtype == torch.float32 and keys[0, 0, 63, 0] == 7.0 and values[0, 0, 63, 0] == -7.0


def test_an_admission_within_the_capacity_keeps_the_storage():
    cache = admitted([[1, 2]], capacity=64)
    storage = cache.keys[0].data_ptr()
    admit(cache, [[3]], capacity=64)
    assert cache.capacity == 64 and cache.keys[0].data_ptr() == storage
