"""PyTorch hooks as context managers: the only way this project touches a model's internals.

Layers are reached through their outputs (tensor or tuple, whichever the transformers release
returns), so no layer signature is relied upon.
"""

from __future__ import annotations

from contextlib import ExitStack, contextmanager
from typing import Callable, Iterator

import torch
from torch import nn

from .sites import residual_site

HiddenFn = Callable[[torch.Tensor], "torch.Tensor | None"]


def _first_tensor(value):
    return value[0] if isinstance(value, (tuple, list)) else value


def _replace_first(value, new: torch.Tensor):
    if isinstance(value, tuple):
        return (new,) + value[1:]
    if isinstance(value, list):
        return [new] + value[1:]
    return new


@contextmanager
def residual_hook(model: nn.Module, index: int, fn: HiddenFn) -> Iterator[None]:
    """Call `fn(hidden[B, S, D])` on HF `hidden_states[index]`; a returned tensor replaces it."""
    site = residual_site(model, index)
    if site.pre:
        def pre_hook(_module, args):
            new = fn(args[0])
            return None if new is None else (new,) + tuple(args[1:])
        handle = site.module.register_forward_pre_hook(pre_hook)
    else:
        def post_hook(_module, _args, output):
            new = fn(_first_tensor(output))
            return None if new is None else _replace_first(output, new)
        handle = site.module.register_forward_hook(post_hook)
    try:
        yield
    finally:
        handle.remove()


@contextmanager
def residual_hooks(model: nn.Module, indices: list[int], make_fn: Callable[[int], HiddenFn]) -> Iterator[None]:
    with ExitStack() as stack:
        for index in indices:
            stack.enter_context(residual_hook(model, index, make_fn(index)))
        yield
