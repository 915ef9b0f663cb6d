"""The in-flight engine's key/value cache: one preallocated slot per row, written in place.

Hugging Face's `DynamicCache` grows by concatenation, so every decoding step rewrites the whole
cache, and dropping or admitting a row copies every other row again. At the paper's lengths
(64 rows x 16k tokens) those copies cost more than the attention that reads the cache. Here each
layer holds one `[slots, kv_heads, capacity, head_dim]` tensor allocated once:

- a live row r owns slot r; its keys fill columns `0 .. length[r] - 1` (right-padded);
- a step writes each row's new key and value at that row's own column (`lengths`), and attention
  reads the first `columns` columns of the live slots (a view: no copy), the columns past a row's
  length hidden by the engine's mask;
- a finished row's slot is refilled by the last live row (one row copied, nothing else moves), so
  the live rows stay the slots `0 .. rows - 1`;
- an admitted row's prompt, prefilled in a `DynamicCache` of its own, is copied into its slot.

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
MASKED_ATTENTION = ("sdpa", "eager")  # implementations that take a ready 4-D mask (bool for sdpa, additive for eager)


def new_cache(model) -> DynamicCache:
    """An empty `DynamicCache` for `model`, to prefill admitted prompts in; refuses a model whose
    layers are not all full attention (sliding window, linear attention)."""
    cache = DynamicCache(config=model.config)
    if any(getattr(layer, "is_sliding", False) for layer in cache.layers):
        raise UsageError("this model has sliding-window attention layers; in-flight batching needs "
                         "full-attention caches")
    if not all(hasattr(layer, "keys") for layer in cache.layers):
        raise UsageError("this model has layers without a key/value cache (linear attention); in-flight "
                         "batching needs full-attention caches")
    return cache


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


def filled_layers(cache: DynamicCache) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(keys, values) of every layer of a prefilled `DynamicCache`."""
    return [(layer.keys, layer.values) for layer in cache.layers]


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
        self._row_index: dict[torch.device, torch.Tensor] = {}

    # ---- what the model calls --------------------------------------------------------------

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, layer_idx: int, *args, **kwargs):
        """Write the step's key and value of each live row at its own column; return the columns
        attention reads, as views of the slots."""
        if self._positions is None:
            raise RuntimeError("SlotCache.update outside a decoding step (the engine calls begin_step first)")
        if key_states.shape[-2] != 1:
            raise RuntimeError(f"SlotCache takes one token a row a step, got {key_states.shape[-2]}")
        keys, values = self.keys[layer_idx], self.values[layer_idx]
        rows = self._row_index[keys.device][: self.rows]  # a model split over devices: each layer's own
        positions = self._positions.to(keys.device)
        keys[rows, :, positions] = key_states[:, :, -1].to(keys.dtype)
        values[rows, :, positions] = value_states[:, :, -1].to(values.dtype)
        return keys[: self.rows, :, : self._columns], values[: self.rows, :, : self._columns]

    def get_seq_length(self, layer_idx: int = 0) -> int:
        return max(self._columns - 1, 0)

    def get_mask_sizes(self, *args, **kwargs) -> tuple[int, int]:
        return self._columns, 0

    # ---- what the engine calls -------------------------------------------------------------

    def begin_step(self, lengths: torch.Tensor, columns: int) -> None:
        """The next forward writes row r at column lengths[r]; attention reads `columns` columns."""
        if columns > self.capacity:
            raise RuntimeError(f"a row would write column {columns - 1} of a {self.capacity}-column cache")
        self._positions, self._columns = lengths, columns

    def end_step(self) -> None:
        self._positions = None

    def admit(self, prefilled: DynamicCache, lengths: list[int], capacity: int) -> None:
        """Copy the rows of a left-padded prefill into the next free slots (row i's last
        `lengths[i]` columns become its columns 0 .. lengths[i] - 1), after making room for
        `capacity` columns a row."""
        layers = filled_layers(prefilled)
        if not self.keys:
            self._allocate(layers, capacity)
        elif capacity > self.capacity:
            self._grow(capacity)
        if self.rows + len(lengths) > self.slots:
            raise RuntimeError(f"{self.rows} live rows + {len(lengths)} admitted exceed {self.slots} slots")
        for (keys, values), mine_k, mine_v in zip(layers, self.keys, self.values):
            for i, length in enumerate(lengths):
                slot = self.rows + i
                mine_k[slot, :, :length] = keys[i, :, keys.shape[-2] - length:]
                mine_v[slot, :, :length] = values[i, :, values.shape[-2] - length:]
        self.rows += len(lengths)

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

    def _allocate(self, layers, capacity: int) -> None:
        self.capacity = capacity_for(capacity)
        for keys, values in layers:
            _, heads, _, dim = keys.shape
            # zeros, not empty: masked columns are still multiplied (by a zero weight), and stale
            # bytes could hold NaN, which a zero weight would not cancel
            self.keys.append(keys.new_zeros(self.slots, heads, self.capacity, dim))
            self.values.append(values.new_zeros(self.slots, values.shape[1], self.capacity, values.shape[-1]))
        for device in {tensor.device for tensor in self.keys}:
            self._row_index[device] = torch.arange(self.slots, device=device)

    def _grow(self, capacity: int) -> None:
        """A longer prompt than any before: more columns for every slot (one copy, rare)."""
        old, self.capacity = self.capacity, capacity_for(capacity)
        for store in (self.keys, self.values):
            for i, tensor in enumerate(store):
                wider = tensor.new_zeros(*tensor.shape[:2], self.capacity, tensor.shape[-1])
                wider[:, :, :old] = tensor
                store[i] = wider
