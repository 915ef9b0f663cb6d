"""The decoding forward of the in-flight engine, eager or compiled (`--compile`).

A decoding step feeds one token a row through the model against the slot cache. Its shapes are
fixed between bucket crossings (`cache.column_bucket`, `cache.row_bucket`), so `torch.compile` traces
it once per shape family and the plugins' hooks (steering, capture) are traced into it with the
model. On CUDA the compiled step is also captured as a CUDA graph ("reduce-overhead"), which removes
the launch of every kernel from the host's share of a step; elsewhere it is compiled without graphs.

Prompts are prefilled eagerly (their lengths vary from one admission to the next) and never pass
through the compiled step.
"""

from __future__ import annotations

import os
import shutil
import time
from typing import Callable

import torch

from ..errors import UsageError
from .cache import decoding_mask

Logits = torch.Tensor


def _decode(model, cache_keyword: str, attention: str, dtype: torch.dtype, feed: torch.Tensor,
            positions: torch.Tensor, columns: int, cache) -> Logits:
    """The step itself: its mask built from the positions on the device (no mask travels in), the
    model's forward against the slot cache, the last position's logits."""
    mask = decoding_mask(positions, columns, attention, dtype)
    out = model(input_ids=feed, attention_mask=mask, position_ids=positions[:, None], use_cache=True,
                **{cache_keyword: cache})
    return out.logits[:, -1, :]


class DecodeForward:
    """`forward(feed [rows, 1], positions [rows], columns, cache)` -> next-token logits [rows, V].

    Compiled, it keeps its own compiled function (hooks are part of what is traced, so an engine's
    hooks never reach another engine's compiled code: hook guards are on while it runs). The first
    calls of each new shape family compile; `compile_seconds` adds up the time those calls took."""

    def __init__(self, model, cache_keyword: str, attention: str, compile: bool = False, backend: str = "inductor"):
        self.model = model
        self.cache_keyword = cache_keyword
        self.attention = attention
        self.dtype = next(model.parameters()).dtype  # an additive (eager) mask takes the model's dtype
        self.compiled = compile
        self.backend = backend
        self.on_cuda = next(model.parameters()).device.type == "cuda"
        self.compile_seconds = 0.0
        self._fn: Callable = _decode
        if compile and backend == "inductor" and not self.on_cuda and not has_cxx():
            raise UsageError("--compile on a CPU needs a C++ compiler (g++, clang++ or $CXX), and none was found; "
                             "install one or run without --compile")
        if compile:  # another backend than inductor (aot_eager: tracing only) serves the rehearsals
            mode = "reduce-overhead" if self.on_cuda and backend == "inductor" else None
            self._fn = torch.compile(_decode, backend=backend, mode=mode, dynamic=None)
        self._compiles = 0

    def mark_cache(self, tensors: list[torch.Tensor]) -> None:
        """The slot cache's storage is written in place by every step: under CUDA graphs it must
        keep its address (a static input), not be copied into the graph's own buffers."""
        if self.compiled and self.on_cuda and self.backend == "inductor":
            for tensor in tensors:
                torch._dynamo.mark_static_address(tensor)

    def __call__(self, feed: torch.Tensor, positions: torch.Tensor, columns: int, cache) -> Logits:
        args = (self.model, self.cache_keyword, self.attention, self.dtype, feed, positions, columns, cache)
        if not self.compiled:
            return self._fn(*args)
        if self.on_cuda and self.backend == "inductor":
            torch.compiler.cudagraph_mark_step_begin()  # the previous step's outputs are consumed
        frames = _compiled_frames()
        start = time.perf_counter()
        with torch._dynamo.config.patch(skip_nnmodule_hook_guards=False, recompile_limit=64):
            logits = self._fn(*args)
        if _compiled_frames() != frames:  # this call compiled: count its time
            self.compile_seconds += time.perf_counter() - start
            self._compiles += 1
        return logits

    @property
    def compiles(self) -> int:
        """How many calls compiled (a new shape family or a new set of hooks)."""
        return self._compiles


def has_cxx() -> bool:
    """Whether inductor can build its CPU kernels here: it compiles C++ with $CXX or a usual compiler."""
    return any(shutil.which(name) for name in (os.environ.get("CXX", ""), "g++", "c++", "clang++") if name)


def _compiled_frames() -> int:
    """Graphs Dynamo has compiled in this process (a counter that moves only when it compiles)."""
    from torch._dynamo.utils import counters

    return counters["stats"]["unique_graphs"]
