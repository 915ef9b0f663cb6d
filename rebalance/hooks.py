"""PyTorch hooks as context managers: the only way this project touches a model's internals.

Layers are reached through their outputs (tensor or tuple, whichever the transformers release
returns) and the model through its `input_ids` keyword, so no layer signature is relied upon.
"""

from __future__ import annotations

from contextlib import ExitStack, contextmanager
from typing import Callable, Iterator

import torch
from torch import nn

from .errors import UsageError
from .models import residual_site

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


@contextmanager
def model_call_hooks(model: nn.Module, before: Callable[[torch.Tensor], None] | None = None,
                     after: Callable[[], None] | None = None) -> Iterator[None]:
    """`before(input_ids)` runs ahead of every model call (prefill and each decoding step),
    `after()` once the call has returned: the per-step points where trackers update."""
    handles = []
    if before is not None:
        def pre_hook(_module, args, kwargs):
            input_ids = kwargs.get("input_ids", args[0] if args else None)
            if input_ids is None:
                raise UsageError("generation must pass input_ids (inputs_embeds is not supported)")
            before(input_ids)
        handles.append(model.register_forward_pre_hook(pre_hook, with_kwargs=True))
    if after is not None:
        handles.append(model.register_forward_hook(lambda _m, _a, _o: after()))
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def decoding_steps(step: Callable[[torch.Tensor], None]) -> Callable[[torch.Tensor], None]:
    """A `before` hook that skips the prompt's forward and calls `step(tokens)` with the token each
    row feeds at every decoding step (the prompt is never a step of the response)."""
    state = {"prefill": True}

    def before(input_ids: torch.Tensor) -> None:
        if state["prefill"]:
            state["prefill"] = False
            return
        step(input_ids[:, -1])
    return before
