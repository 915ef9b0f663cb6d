"""Loading models and tokenizers by the names users type.

A model is a local Hugging Face folder, a `.gguf` file (dequantised once and cached, see
`store.py`), `embedded` (SmolLM2-135M-Instruct), `organism` (the testbed of `organism/`, once it
has been trained) or a hub id.
"""

from __future__ import annotations

import os

import torch

from .decoding.sites import text_of
from .errors import UsageError, first_line
from .store import EMBEDDED_NAME, ORGANISM_NAME, convert_gguf, embedded_model_dir, named_model_dir

DTYPES = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16,
          "bf16": torch.bfloat16, "float16": torch.float16, "fp16": torch.float16}


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


def resolve_model_path(name: str) -> str:
    """A local folder, a `.gguf` (converted), `embedded` (the default model), `organism` (the
    overthinking testbed, once trained) or a hub id."""
    if name in ("embedded", EMBEDDED_NAME):
        return embedded_model_dir()
    if name == "organism":
        folder = named_model_dir("organism")
        if folder is None:
            raise UsageError("--model_name_or_path organism: the organism is not trained on this machine yet; "
                             "train it once with `make organism` (python -m rebalance.organism train)")
        return folder
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
        return ORGANISM_NAME
    base = os.path.basename(os.path.normpath(os.path.expanduser(name)))
    return base[: -len(".gguf")] if base.endswith(".gguf") else base


def remote_code_refusal(name: str) -> UsageError:
    return UsageError(f"--model_name_or_path: {name} brings its own modelling code (auto_map in its config.json); "
                      "pass --trust_remote_code to run it, for a model whose code you trust")


def load_error(name: str, err: Exception) -> UsageError:
    """A model that cannot be loaded, in one sentence naming the flag."""
    if "trust_remote_code" in str(err):
        return remote_code_refusal(name)
    return UsageError(f"--model_name_or_path: cannot load {name}: {first_line(err)}")


def model_config(path: str, trust_remote_code: bool = False):
    """The language model's config, read alone: bad input fails in the parent process, before any
    worker starts or any weights load."""
    from transformers import AutoConfig

    try:
        config = AutoConfig.from_pretrained(path, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as err:
        if "trust_remote_code" in str(err):
            raise remote_code_refusal(path) from None
        raise UsageError(f"--model_name_or_path: cannot read the config of {path}: "
                         f"{first_line(err)}") from None
    return text_of(config)


def model_shape(path: str, trust_remote_code: bool = False) -> tuple[int, int]:
    """(hidden size, blocks) from the config alone."""
    config = model_config(path, trust_remote_code)
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
        raise load_error(name, err) from None
    model.to(device).eval()
    return model, tokenizer
