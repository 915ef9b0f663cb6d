"""Low-rank adapters on a model's linear layers, trained, then merged into the weights (W += s B A).

Small enough to keep in the project rather than pull in a training library: the organism needs
LoRA on named projections, a state dict of the adapter, and a merged model that any loader reads.
"""

from __future__ import annotations

import math
from typing import Iterable

import torch
from torch import nn

DEFAULT_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


class LoRALinear(nn.Module):
    """y = base(x) + (alpha / rank) * B(A(x)); B starts at zero, so training starts from the base."""

    def __init__(self, base: nn.Linear, rank: int, alpha: float):
        super().__init__()
        self.base = base
        self.scale = alpha / rank
        self.lora_a = nn.Parameter(torch.empty(rank, base.in_features, dtype=torch.float32))
        self.lora_b = nn.Parameter(torch.zeros(base.out_features, rank, dtype=torch.float32))
        nn.init.kaiming_uniform_(self.lora_a, a=math.sqrt(5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.base(x) + (x.to(self.lora_a.dtype) @ self.lora_a.T @ self.lora_b.T).to(x.dtype) * self.scale

    def merged(self) -> nn.Linear:
        with torch.no_grad():
            delta = (self.lora_b @ self.lora_a) * self.scale
            self.base.weight += delta.to(self.base.weight.dtype)
        return self.base


def add_lora(model: nn.Module, rank: int, alpha: float, targets: Iterable[str] = DEFAULT_TARGETS) -> list[str]:
    """Freeze `model` and wrap every linear layer whose name ends with a target; returns their names."""
    targets = tuple(targets)
    for param in model.parameters():
        param.requires_grad_(False)
    wrapped = []
    for name, module in list(model.named_modules()):
        for child_name, child in list(module.named_children()):
            if isinstance(child, nn.Linear) and child_name in targets:
                setattr(module, child_name, LoRALinear(child, rank, alpha))
                wrapped.append(f"{name}.{child_name}" if name else child_name)
    if not wrapped:
        raise ValueError(f"no linear layer named {', '.join(targets)} in this model")
    return wrapped


def adapter_state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {name: param.detach().clone() for name, param in model.named_parameters() if "lora_" in name}


def merge_lora(model: nn.Module) -> int:
    """Fold every adapter into its base weight and put the plain linear layer back."""
    count = 0
    for module in list(model.modules()):
        for child_name, child in list(module.named_children()):
            if isinstance(child, LoRALinear):
                setattr(module, child_name, child.merged())
                count += 1
    return count
