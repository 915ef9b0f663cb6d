"""The residual stream of any HF decoder model: which module's output (or input) is
`hidden_states[i]`, found by shape rather than by attribute name, so no architecture is named."""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from ..errors import UsageError


def text_of(config):
    """The language model's part of a config (a multimodal model nests it)."""
    return config.get_text_config() if hasattr(config, "get_text_config") else config


def text_config(model: nn.Module):
    return text_of(model.config)


def decoder_layers(model: nn.Module) -> nn.ModuleList:
    """The list of decoder blocks, found by shape rather than by attribute name."""
    n_layers = text_config(model).num_hidden_layers
    decoder = model.get_decoder() if hasattr(model, "get_decoder") else None
    layers = getattr(decoder, "layers", None)
    if isinstance(layers, nn.ModuleList) and len(layers) == n_layers:
        return layers
    for _, module in model.named_modules():
        if isinstance(module, nn.ModuleList) and len(module) == n_layers:
            return module
    raise UsageError(f"cannot find the {n_layers} decoder blocks of {type(model).__name__}")


def num_residual_sites(model: nn.Module) -> int:
    """Entries of HF `output_hidden_states`: embeddings, one per block but the last, final norm."""
    return text_config(model).num_hidden_layers + 1


@dataclass(frozen=True)
class ResidualSite:
    """Where HF `hidden_states[index]` flows: the output of `module` (or the input, when `pre`).

    index 0 is the embedding output, index i (1 .. L-1) the output of block i-1, index L the
    final-norm output, seen as the input of the LM head.
    """

    index: int
    module: nn.Module
    pre: bool


def residual_site(model: nn.Module, index: int) -> ResidualSite:
    n_sites = num_residual_sites(model)
    if not 0 <= index < n_sites:
        raise UsageError(f"layer {index} is out of range: this model has layers 0..{n_sites - 1}")
    if index == 0:
        return ResidualSite(0, model.get_input_embeddings(), pre=False)
    if index == n_sites - 1:
        return ResidualSite(index, model.get_output_embeddings(), pre=True)
    return ResidualSite(index, decoder_layers(model)[index - 1], pre=False)
