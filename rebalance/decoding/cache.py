"""The in-flight engine's key/value cache: one preallocated slot per row, written in place.

Hugging Face's `DynamicCache` grows by concatenation, so every decoding step rewrites the whole
cache, and dropping or admitting a row copies every other row again. At the paper's lengths
(64 rows x 16k tokens) those copies cost more than the attention that reads the cache. Here each
layer holds one `[slots, kv_heads, capacity, head_dim]` tensor allocated once:

- a live row r owns slot r; its keys fill columns `0 .. length[r] - 1` (right-padded);
- a step writes each row's new key and value at that row's own column (`lengths`), and attention
  reads the first `columns` columns of the step's slots (a view: no copy), the columns past a row's
  length hidden by the engine's mask. `columns` is one of a few fixed buckets (`column_bucket`), not
  the longest row's length, so a step's shapes change only when a bucket is crossed and a compiled
  step (or a captured CUDA graph) is reused across many steps;
- a finished row's slot is refilled by the last live row (one row copied, nothing else moves), so
  the live rows stay the slots `0 .. rows - 1`;
- an admitted row's prompt is prefilled straight into its slot (`Admission`), in chunks when long.

Only full-attention layers fit this layout (a sliding window keeps the last W columns of a row, not
its history), so models with sliding-window or linear-attention layers are refused in one sentence.
Tested with transformers 5.x: the cache plugs in through the public `Cache` type and `update`, and
the mask goes in as a ready 4-D mask, so no modelling file is touched.
"""

from __future__ import annotations

import inspect

import torch
from transformers import Cache, DynamicCache

from ..errors import UsageError

ROUND = 64  # capacity grows in whole blocks of columns, so a slightly longer prompt rarely reallocates
# Columns a step reads come in quarter octaves (256, 320, 384, 448, 512, 640, ...): a step reads at
# most 25 % more columns than its longest row needs (attention reads every column it is given, and
# at the paper's lengths the cache outweighs the weights), and a 16k-token run crosses at most 25 buckets.
FIRST_BUCKET = 256
BUCKETS_PER_OCTAVE = 4
MASKED_ATTENTION = ("sdpa", "eager")  # implementations that take a ready 4-D mask (bool for sdpa, additive for eager)


def check_full_attention(model) -> None:
    """Refuse a model whose layers are not all full attention (sliding window, linear attention),
    read off the `DynamicCache` transformers would build for it."""
    cache = DynamicCache(config=model.config)
    if any(getattr(layer, "is_sliding", False) for layer in cache.layers):
        raise UsageError("this model has sliding-window attention layers; in-flight batching needs "
                         "full-attention caches")
    if not all(hasattr(layer, "keys") for layer in cache.layers):
        raise UsageError("this model has layers without a key/value cache (linear attention); in-flight "
                         "batching needs full-attention caches")


def cache_keyword(model) -> str:
    """The forward's name for the key/value cache: transformers 5 renamed `past_key_values` to
    `cache` (the old name is deprecated, then removed)."""
    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


def attention_kind(model) -> str:
    """The model's attention implementation, refused unless the engine's mask fits it."""
    kind = getattr(model.config, "_attn_implementation", None) or "sdpa"
    if kind not in MASKED_ATTENTION:
        raise UsageError(f"this model runs attn_implementation={kind!r}; in-flight batching builds its own "
                         f"attention mask and needs one of {', '.join(MASKED_ATTENTION)}")
    return kind


def decoding_mask(lengths: torch.Tensor, columns: int, kind: str, dtype: torch.dtype) -> torch.Tensor:
    """`[rows, 1, 1, columns]` mask of one decoding step: row r sees its columns 0 .. lengths[r]
    (its cached tokens and the one being fed). Boolean for sdpa, additive for eager attention."""
    seen = torch.arange(columns, device=lengths.device)[None, :] <= lengths[:, None]
    seen = seen[:, None, None, :]
    if kind == "eager":
        return torch.zeros(seen.shape, dtype=dtype, device=seen.device).masked_fill(~seen, torch.finfo(dtype).min)
    return seen


def capacity_for(tokens: int) -> int:
    return -(-tokens // ROUND) * ROUND


def column_bucket(needed: int, capacity: int) -> int:
    """The fixed number of columns a step reads when its longest row needs `needed`: the smallest
    bucket holding them, at most the capacity."""
    if needed > capacity:
        raise RuntimeError(f"a row would write column {needed - 1} of a {capacity}-column cache")
    bucket = FIRST_BUCKET
    while bucket < needed:
        octave = 1 << (bucket.bit_length() - 1)  # the power of two at or below the bucket
        bucket += max(octave // BUCKETS_PER_OCTAVE, ROUND)
    return min(bucket, capacity)


def row_bucket(live: int, width: int) -> int:
    """Rows a compiled step runs for `live` rows: the next power of two, at most the width (padding
    rows are fed a pad token at a free slot's column 0 and their results dropped)."""
    return min(1 << max(live - 1, 0).bit_length(), width)


class SlotCache(Cache):
    """Preallocated key/value slots of the in-flight engine (see the module docstring).

    The engine tells it, before each decoding forward, where each live row writes (`begin_step`);
    the model's attention layers then call `update` once per layer.
    """

    def __init__(self, slots: int):
        super().__init__(layers=[])  # the storage is ours, not the base class's per-layer objects
        self.slots = slots
        self.capacity = 0
        self.keys: list[torch.Tensor] = []
        self.values: list[torch.Tensor] = []
        self.rows = 0                        # live rows, in slots 0 .. rows - 1
        self._positions: torch.Tensor | None = None
        self._columns = 0
        self._step_index: list[tuple[torch.Tensor, torch.Tensor]] = []  # per layer: the slots and columns a step writes
        self._slot_index: dict[torch.device, torch.Tensor] = {}

    # ---- what the model calls --------------------------------------------------------------

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, layer_idx: int, *args, **kwargs):
        """Write the step's key and value of each live row at its own column; return the columns
        attention reads, as views of the slots."""
        if self._positions is None:
            raise RuntimeError("SlotCache.update outside a decoding step (the engine calls begin_step first)")
        if key_states.shape[-2] != 1:
            raise RuntimeError(f"SlotCache takes one token a row a step, got {key_states.shape[-2]}")
        keys, values = self.keys[layer_idx], self.values[layer_idx]
        rows, positions = self._step_index[layer_idx]  # a model split over devices: each layer's own
        keys[rows, :, positions] = key_states[:, :, -1].to(keys.dtype)
        values[rows, :, positions] = value_states[:, :, -1].to(values.dtype)
        count = rows.shape[0]
        return keys[:count, :, : self._columns], values[:count, :, : self._columns]

    def get_seq_length(self, layer_idx: int = 0) -> int:
        return max(self._columns - 1, 0)

    def get_mask_sizes(self, *args, **kwargs) -> tuple[int, int]:
        return self._columns, 0

    # ---- what the engine calls -------------------------------------------------------------

    def begin_step(self, lengths: torch.Tensor, columns: int) -> None:
        """The next forward writes row r at column lengths[r] (one entry per row of the forward: the
        live rows, then any padding rows, which write column 0 of free slots); attention reads
        `columns` columns."""
        if columns > self.capacity:
            raise RuntimeError(f"a row would write column {columns - 1} of a {self.capacity}-column cache")
        if lengths.shape[0] > self.slots:
            raise RuntimeError(f"a step of {lengths.shape[0]} rows exceeds {self.slots} slots")
        self._positions, self._columns = lengths, columns
        on: dict[torch.device, tuple[torch.Tensor, torch.Tensor]] = {}  # one copy per device, not per layer
        for keys in self.keys:
            if keys.device not in on:
                on[keys.device] = (self._slot_index[keys.device][: lengths.shape[0]], lengths.to(keys.device))
        self._step_index = [on[keys.device] for keys in self.keys]

    def end_step(self) -> None:
        self._positions = None

    def admission(self, lengths: list[int], width: int, capacity: int) -> "Admission":
        """A cache the model prefills new rows through, straight into the next free slots: `lengths`
        are the prompts' lengths, left-padded to `width` columns; each slot makes room for
        `capacity` columns. `Admission.close` makes the rows live."""
        if self.rows + len(lengths) > self.slots:
            raise RuntimeError(f"{self.rows} live rows + {len(lengths)} admitted exceed {self.slots} slots")
        if capacity > self.capacity:
            self._grow(capacity)
        return Admission(self, self.rows, lengths, width)

    def fill(self, moves: list[tuple[int, int]], rows: int, lengths: list[int]) -> None:
        """Keep `rows` live rows: each (source, target) in `moves` copies the source slot's first
        `lengths` columns into the target (a finished row's slot). Sources are slots past the new
        live range, so no copy reads a slot another copy wrote."""
        for (source, target), length in zip(moves, lengths):
            if source < rows or target >= rows:
                raise RuntimeError(f"move {source} -> {target} does not fill a hole below {rows} live rows")
            for keys, values in zip(self.keys, self.values):
                keys[target, :, :length] = keys[source, :, :length]
                values[target, :, :length] = values[source, :, :length]
        self.rows = rows

    def _allocate(self, layer_idx: int, keys: torch.Tensor, values: torch.Tensor) -> None:
        """Storage for one layer, shaped after the first keys and values the model hands it."""
        if layer_idx != len(self.keys):
            raise RuntimeError(f"the model wrote layer {layer_idx} before layer {len(self.keys)}")
        # zeros, not empty: masked columns are still multiplied (by a zero weight), and stale
        # bytes could hold NaN, which a zero weight would not cancel
        self.keys.append(keys.new_zeros(self.slots, keys.shape[1], self.capacity, keys.shape[-1]))
        self.values.append(values.new_zeros(self.slots, values.shape[1], self.capacity, values.shape[-1]))
        if keys.device not in self._slot_index:
            self._slot_index[keys.device] = torch.arange(self.slots, device=keys.device)

    def _grow(self, capacity: int) -> None:
        """A longer prompt than any before: more columns for every slot (one copy, rare; none before
        the first prefill has allocated anything)."""
        old, self.capacity = self.capacity, capacity_for(capacity)
        for store in (self.keys, self.values):
            for i, tensor in enumerate(store):
                wider = tensor.new_zeros(*tensor.shape[:2], self.capacity, tensor.shape[-1])
                wider[:, :, :old] = tensor
                store[i] = wider


class Admission(Cache):
    """The cache a prefill of new rows runs against: each chunk's keys and values go straight into
    the rows' slots (row i's first real token at column 0), and attention gets the rows' columns so
    far back in the prompts' left-padded layout (the padding columns zeros, masked).

    Nothing the size of the prompts' cache is held beside the slots: at most one layer's columns of
    the admitted rows at a time. A long prompt is prefilled in chunks (`at(start)` before each), so
    a prefill's activations stay those of one chunk; a prompt that fits in one chunk is computed
    exactly as a prefill into a `DynamicCache` would be.
    """

    def __init__(self, slots: SlotCache, first: int, lengths: list[int], width: int):
        super().__init__(layers=[])
        self.slots = slots
        self.first = first
        self.lengths = list(lengths)
        self.pads = [width - length for length in lengths]  # left padding of each row
        self.start = 0  # padded columns prefilled before the current chunk

    def at(self, start: int) -> "Admission":
        """The next forward prefills the padded columns from `start` on."""
        self.start = start
        return self

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, layer_idx: int, *args, **kwargs):
        store = self.slots
        if layer_idx == len(store.keys):
            store._allocate(layer_idx, key_states, value_states)
        return (self._write(store.keys[layer_idx], key_states), self._write(store.values[layer_idx], value_states))

    def _write(self, slots: torch.Tensor, states: torch.Tensor) -> torch.Tensor:
        """Write this chunk's `states` of every admitted row into its slot; return the rows'
        columns so far, left-padded with zeros as the prompts are."""
        end = self.start + states.shape[-2]
        seen = slots.new_zeros(len(self.pads), slots.shape[1], end, slots.shape[-1])
        for i, pad in enumerate(self.pads):
            slot, first = self.first + i, max(self.start, pad)  # the chunk's first real column of row i
            if first < end:
                slots[slot, :, first - pad:end - pad] = states[i, :, first - self.start:].to(slots.dtype)
            if end > pad:
                seen[i, :, pad:] = slots[slot, :, :end - pad]
        return seen

    def get_seq_length(self, layer_idx: int = 0) -> int:
        return self.start

    def get_mask_sizes(self, query_length: int, layer_idx: int = 0) -> tuple[int, int]:
        return self.start + query_length, 0

    def close(self) -> None:
        """The admitted rows become live."""
        self.slots.rows = self.first + len(self.lengths)
