"""A small decoder written from scratch, loaded only through `trust_remote_code`: its blocks sit at
`trunk.stack` (not `model.layers`), each returns a plain tensor, and it reads the key/value cache
through the public `Cache.update`, as remote-code models written against transformers do."""

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedModel
from transformers.modeling_outputs import CausalLMOutputWithPast

from .configuration_tinyblocks import TinyBlocksConfig


def rotate(x, positions, base):
    """Rotary position embedding of [batch, heads, tokens, dim] at [batch, tokens] positions."""
    half = x.shape[-1] // 2
    freqs = base ** (-torch.arange(half, device=x.device, dtype=torch.float32) / half)
    angles = positions[:, None, :, None].float() * freqs
    cos, sin = angles.cos().to(x.dtype), angles.sin().to(x.dtype)
    first, second = x[..., :half], x[..., half:]
    return torch.cat([first * cos - second * sin, first * sin + second * cos], dim=-1)


def attention_bias(mask, queries, past, device, dtype):
    """A ready 4-D mask passes through; a 2-D padding mask (or none) becomes causal + padding."""
    if mask is not None and mask.dim() == 4:
        return mask
    keys = past + queries
    causal = torch.arange(keys, device=device)[None, :] <= (past + torch.arange(queries, device=device))[:, None]
    causal = causal[None, None]
    if mask is not None:
        causal = causal & mask[:, None, None, :keys].bool()
    return causal


class Block(nn.Module):
    def __init__(self, config, index):
        super().__init__()
        self.index = index
        self.heads = config.num_attention_heads
        self.base = config.rope_base
        self.norm1 = nn.RMSNorm(config.hidden_size, eps=1e-6)
        self.qkv = nn.Linear(config.hidden_size, 3 * config.hidden_size, bias=False)
        self.out = nn.Linear(config.hidden_size, config.hidden_size, bias=False)
        self.norm2 = nn.RMSNorm(config.hidden_size, eps=1e-6)
        self.up = nn.Linear(config.hidden_size, 2 * config.hidden_size, bias=False)
        self.down = nn.Linear(2 * config.hidden_size, config.hidden_size, bias=False)

    def forward(self, x, positions, bias, cache):
        batch, tokens, width = x.shape
        q, k, v = self.qkv(self.norm1(x)).view(batch, tokens, 3, self.heads, -1).permute(2, 0, 3, 1, 4)
        q, k = rotate(q, positions, self.base), rotate(k, positions, self.base)
        if cache is not None:
            k, v = cache.update(k, v, self.index)
        attended = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)
        x = x + self.out(attended.transpose(1, 2).reshape(batch, tokens, width))
        return x + self.down(F.silu(self.up(self.norm2(x))))


class TinyBlocksTrunk(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.embed = nn.Embedding(config.vocab_size, config.hidden_size)
        self.stack = nn.ModuleList(Block(config, i) for i in range(config.num_hidden_layers))
        self.final_norm = nn.RMSNorm(config.hidden_size, eps=1e-6)


class TinyBlocksForCausalLM(PreTrainedModel):
    config_class = TinyBlocksConfig
    base_model_prefix = "trunk"
    _supports_sdpa = True

    def __init__(self, config):
        super().__init__(config)
        self.trunk = TinyBlocksTrunk(config)
        self.head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        self.post_init()

    def get_input_embeddings(self):
        return self.trunk.embed

    def get_output_embeddings(self):
        return self.head

    def forward(self, input_ids, attention_mask=None, position_ids=None, past_key_values=None, use_cache=None,
                output_hidden_states=False, logits_to_keep=0, **kwargs):
        past = past_key_values.get_seq_length() if past_key_values is not None else 0
        tokens = input_ids.shape[1]
        if position_ids is None:
            position_ids = (past + torch.arange(tokens, device=input_ids.device))[None].expand(input_ids.shape[0], -1)
        x = self.trunk.embed(input_ids)
        bias = attention_bias(attention_mask, tokens, past, x.device, x.dtype)
        states = [x]
        for block in self.trunk.stack:
            x = block(x, position_ids, bias, past_key_values)
            states.append(x)
        x = self.trunk.final_norm(x)
        states[-1] = x  # as transformers counts them: the last entry is the final norm's output
        if isinstance(logits_to_keep, int):  # the last N positions (0: all), or a tensor of positions
            kept = x[:, -logits_to_keep:] if logits_to_keep else x
        else:
            kept = x[:, logits_to_keep]
        logits = self.head(kept)
        return CausalLMOutputWithPast(logits=logits, past_key_values=past_key_values,
                                      hidden_states=tuple(states) if output_hidden_states else None)
