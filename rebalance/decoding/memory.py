"""Memory planned before the first step: the key/value cache of `--batch_size` rows at full length
(longest prompt + `--max_generated_tokens`) beside the weights, against what the device has free.

A run at the paper's lengths fills its cache slowly: without a plan, one that cannot fit runs out of
memory hours in, when its oldest rows near the limit. Here it stops before loading anything, with
one line naming the numbers and the widest batch that fits (or takes that width when asked).
"""

from __future__ import annotations

import json
import math
import os
import struct
from dataclasses import dataclass

import torch

from ..errors import UsageError
from .sites import text_of

GIB = 1 << 30
LOGIT_COPIES = 4  # float32 logits per row alive at once in a step: raw, processed, probabilities, their CDF


def kv_bytes_per_token(config, itemsize: int) -> int:
    """Bytes of keys and values one token of one row holds over all layers."""
    text = text_of(config)
    heads = text.num_attention_heads
    kv_heads = getattr(text, "num_key_value_heads", None) or heads
    head_dim = getattr(text, "head_dim", None) or text.hidden_size // heads
    return 2 * text.num_hidden_layers * kv_heads * head_dim * itemsize


def _safetensors_parameters(path: str) -> int:
    """Parameters in a .safetensors file, from its header alone."""
    try:
        with open(path, "rb") as handle:
            (length,) = struct.unpack("<Q", handle.read(8))
            header = json.loads(handle.read(length))
        return sum(math.prod(entry["shape"]) for name, entry in header.items() if name != "__metadata__")
    except (OSError, struct.error, ValueError, KeyError, TypeError, AttributeError) as err:
        raise UsageError(f"{path}: not a readable safetensors file ({type(err).__name__}); "
                         "check --model_name_or_path") from None


def parameter_count(model_path: str, file_itemsize: int) -> int | None:
    """Parameters of a local model folder: exact from safetensors headers, else weight-file bytes
    over the stored element size; None when there is no local folder to read."""
    if not os.path.isdir(model_path):
        return None
    names = sorted(os.listdir(model_path))
    tensors = [n for n in names if n.endswith(".safetensors")]
    if tensors:
        return sum(_safetensors_parameters(os.path.join(model_path, n)) for n in tensors)
    stored = [n for n in names if n.endswith((".bin", ".pt"))]
    return sum(os.path.getsize(os.path.join(model_path, n)) for n in stored) // file_itemsize if stored else None


def available_bytes(device: str) -> int | None:
    """Free memory a worker on `device` may use: free GPU memory, or the machine's available RAM
    (Linux /proc/meminfo); None where neither can be read (the plan is then skipped)."""
    if device.startswith("cuda"):
        try:
            free, _total = torch.cuda.mem_get_info(torch.device(device))
        except (AssertionError, RuntimeError):  # a CUDA runtime that cannot answer: the run's own checks speak
            return None
        return int(free)
    try:
        with open("/proc/meminfo", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


@dataclass(frozen=True)
class MemoryPlan:
    width: int          # rows asked for (--batch_size)
    columns: int        # tokens a row may reach: longest prompt + max new tokens
    per_token: int      # cache bytes of one token of one row
    vocab: int
    weights: int        # bytes of weights each worker loads
    available: int      # bytes free for one worker, weights included

    @property
    def per_row(self) -> int:
        return self.per_token * self.columns + LOGIT_COPIES * 4 * self.vocab

    @property
    def cache(self) -> int:
        return self.per_row * self.width

    @property
    def widest(self) -> int:
        """The most rows whose cache fits beside the weights."""
        return max((self.available - self.weights) // self.per_row, 0)

    @property
    def fits(self) -> bool:
        return self.weights + self.cache <= self.available

    def describe(self, where: str) -> str:
        return (f"--batch_size {self.width} needs {self.cache / GIB:.2f} GiB of key/value cache ({self.columns} tokens "
                f"a row: longest prompt + --max_generated_tokens) beside {self.weights / GIB:.2f} GiB of weights, "
                f"and {self.available / GIB:.2f} GiB are free {where}")


def fit_plan(plan: MemoryPlan, where: str, fit_batch: bool) -> int:
    """The width to run with: the asked one when it fits; else the widest that fits with
    `fit_batch` (saying so), or an error naming the numbers."""
    if plan.fits:
        return plan.width
    if plan.widest < 1:
        raise UsageError(f"{plan.describe(where)}: not even one row fits; shorten --max_generated_tokens or use a "
                         "device with more memory")
    if not fit_batch:
        raise UsageError(f"{plan.describe(where)}: --batch_size {plan.widest} fits (or add --fit_batch to take it)")
    print(f"note: {plan.describe(where)}: running with --batch_size {plan.widest} (--fit_batch)", flush=True)
    return plan.widest
