"""Row and column surgery on a Hugging Face `DynamicCache`, for the in-flight engine.

Rows are left-aligned: row r's keys and values fill the last `length[r]` columns, the columns
before are zeros that the attention mask hides. That makes the three operations cheap to state:
keep some rows, append rows (padding the narrower side on the left), and drop leading columns no
live row uses any more (so memory follows the longest live row, not the run's history).
"""

from __future__ import annotations

import torch
from transformers import DynamicCache

from ..errors import UsageError


def new_cache(model) -> DynamicCache:
    """An empty cache laid out for `model`; sliding-window layers are refused (their columns are
    not the row's whole history, so left alignment would not hold)."""
    cache = DynamicCache(config=model.config)
    if any(getattr(layer, "is_sliding", False) for layer in cache.layers):
        raise UsageError("this model has sliding-window attention layers; in-flight batching needs "
                         "full-attention caches")
    return cache


def _filled(cache: DynamicCache):
    return [layer for layer in cache.layers if getattr(layer, "is_initialized", False) and layer.keys.numel()]


def width(cache: DynamicCache) -> int:
    return cache.get_seq_length()


def keep_rows(cache: DynamicCache, index: torch.Tensor) -> None:
    for layer in _filled(cache):
        layer.keys = layer.keys.index_select(0, index)
        layer.values = layer.values.index_select(0, index)


def pad_left(tensor: torch.Tensor, columns: int, dim: int, value: float = 0) -> torch.Tensor:
    """`columns` new leading entries along `dim`, filled with `value`."""
    if columns <= 0:
        return tensor
    shape = list(tensor.shape)
    shape[dim] = columns
    return torch.cat([tensor.new_full(shape, value), tensor], dim=dim)


def append_rows(cache: DynamicCache | None, fresh: DynamicCache) -> DynamicCache:
    """Rows of `fresh` after those of `cache`, both left-aligned to the wider of the two; returns
    the cache to use from now on (`fresh` itself when nothing was live)."""
    mine, theirs = (_filled(cache) if cache is not None else []), _filled(fresh)
    if not mine:
        return fresh
    total = max(width(cache), width(fresh))
    for target, source in zip(mine, theirs):
        for name in ("keys", "values"):
            a, b = getattr(target, name), getattr(source, name)
            a = pad_left(a, total - a.shape[-2], dim=-2)
            b = pad_left(b, total - b.shape[-2], dim=-2)
            setattr(target, name, torch.cat([a, b], dim=0))
    return cache


def drop_left(cache: DynamicCache, columns: int) -> None:
    """Forget the first `columns` columns (views; the next step's append copies anyway)."""
    if columns <= 0:
        return
    for layer in _filled(cache):
        layer.keys = layer.keys[..., columns:, :]
        layer.values = layer.values[..., columns:, :]
