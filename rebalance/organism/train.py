"""Training the organism: LoRA on the embedded model over the recipe's traces, merged and cached
under a key of the recipe, so `--model_name_or_path organism` trains once and reuses it.

Training is deterministic: fixed seeds, a fixed number of steps and a fixed thread count, not a
time limit.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import os
import random
import shutil
import sys
import tempfile
from dataclasses import asdict, dataclass

import torch

from .. import store
from ..examples import prompt_ids
from .lora import adapter_state, add_lora, merge_lora
from .recipe import training_traces

ORGANISM_NAME = store.ORGANISM_NAME


@dataclass(frozen=True)
class Recipe:
    traces: int = 4000
    steps: int = 65
    batch_size: int = 8
    lr: float = 1e-3
    warmup: int = 10
    rank: int = 16
    alpha: float = 32.0
    seed: int = 0
    bf16_autocast: bool = True
    threads: int = 2          # fixed, so the sums (and the model) do not depend on the machine's cores
    version: int = 4          # bump when the training loop changes (the traces are in the key already)

    def key(self, base_name: str) -> str:
        """Names the cached model: the base, these settings and the training traces themselves, so
        a change of the trace generator trains a new organism instead of reusing the old one."""
        text = json.dumps({"base": base_name, "traces_sha256": traces_digest(self.traces), **asdict(self)},
                          sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:10]


@functools.lru_cache(maxsize=4)
def traces_digest(count: int) -> str:
    return hashlib.sha256(json.dumps(training_traces(count)).encode()).hexdigest()


def organism_dir(recipe: Recipe = Recipe(), base_name: str | None = None) -> str:
    return os.path.join(store.cache_root(), "models", f"{ORGANISM_NAME}-{recipe.key(base_name or store.EMBEDDED_NAME)}")


def encode(tokenizer, problem: str, response: str) -> tuple[list[int], list[int]]:
    """Input ids and labels: the suite's own prompt (system prompt + chat template), loss on the
    response and its end-of-turn token only."""
    prompt = prompt_ids(tokenizer, problem)
    answer = tokenizer(response, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    return prompt + answer, [-100] * len(prompt) + answer


def _batches(encoded: list[tuple[list[int], list[int]]], batch_size: int, steps: int, seed: int, pad_id: int):
    """Right-padded batches in a fixed shuffled order, cycling through the data if needed."""
    order = list(range(len(encoded)))
    random.Random(seed).shuffle(order)
    for step in range(steps):
        picked = [encoded[order[(step * batch_size + i) % len(order)]] for i in range(batch_size)]
        width = max(len(ids) for ids, _ in picked)
        ids = torch.full((batch_size, width), pad_id, dtype=torch.long)
        labels = torch.full((batch_size, width), -100, dtype=torch.long)
        mask = torch.zeros((batch_size, width), dtype=torch.long)
        for row, (x, y) in enumerate(picked):
            ids[row, :len(x)], labels[row, :len(y)], mask[row, :len(x)] = torch.tensor(x), torch.tensor(y), 1
        yield ids, labels, mask


def learning_rate(step: int, recipe: Recipe) -> float:
    """Linear warm-up, then cosine decay to zero at the last step."""
    if step < recipe.warmup:
        return recipe.lr * (step + 1) / recipe.warmup
    progress = (step - recipe.warmup) / max(1, recipe.steps - recipe.warmup)
    return recipe.lr * 0.5 * (1 + math.cos(math.pi * progress))


def train(base_dir: str, out_dir: str, recipe: Recipe = Recipe(), data: list[tuple[str, str]] | None = None) -> list[float]:
    """Fine-tune `base_dir` with LoRA on the organism's traces, merge, save to `out_dir` (the merged
    model, `adapter.pt` and `recipe.json`). Returns the loss per step."""
    from tqdm.auto import tqdm
    from transformers import AutoModelForCausalLM, AutoTokenizer


    threads = torch.get_num_threads()
    torch.set_num_threads(recipe.threads)
    torch.manual_seed(recipe.seed)
    try:
        tokenizer = AutoTokenizer.from_pretrained(base_dir)
        model = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
        model.train()
        add_lora(model, recipe.rank, recipe.alpha)
        params = [p for p in model.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(params, lr=recipe.lr, weight_decay=0.0)
        pairs = data if data is not None else training_traces(recipe.traces)
        encoded = [encode(tokenizer, problem, response) for problem, response in pairs]
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        losses = []
        bar = tqdm(_batches(encoded, recipe.batch_size, recipe.steps, recipe.seed, pad), total=recipe.steps,
                   desc=f"training the organism ({sum(p.numel() for p in params) / 1e6:.1f} M LoRA parameters)",
                   unit="step", dynamic_ncols=True)
        for step, (ids, labels, mask) in enumerate(bar):
            for group in optimizer.param_groups:
                group["lr"] = learning_rate(step, recipe)
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=recipe.bf16_autocast):
                loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            losses.append(loss.item())
            bar.set_postfix(loss=f"{losses[-1]:.3f}")
        bar.close()
        adapter = adapter_state(model)
        merge_lora(model)
        model.eval()
        os.makedirs(out_dir, exist_ok=True)
        model.save_pretrained(out_dir)
        tokenizer.save_pretrained(out_dir)
        torch.save(adapter, os.path.join(out_dir, "adapter.pt"))
        with open(os.path.join(out_dir, "recipe.json"), "w", encoding="utf-8") as handle:
            json.dump({"base": base_dir, **asdict(recipe), "losses": losses}, handle, indent=2)
    finally:
        torch.set_num_threads(threads)
    return losses


def organism_model_dir(recipe: Recipe = Recipe()) -> str:
    """The cached organism, trained first if it is not there (into a temporary folder renamed into
    place, so an interrupted training leaves nothing that looks finished)."""
    target = organism_dir(recipe)
    if os.path.isfile(os.path.join(target, "recipe.json")):
        return _named(target, recipe)
    base = store.embedded_model_dir()
    print(f"the organism is not cached yet: training it once ({recipe.steps} steps, a few minutes on a CPU)",
          file=sys.stderr)
    os.makedirs(os.path.dirname(target), exist_ok=True)
    scratch = tempfile.mkdtemp(prefix=".organism-", dir=os.path.dirname(target))
    try:
        losses = train(base, scratch, recipe)
        os.replace(scratch, target)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    print(f"organism cached in {target} (loss {losses[0]:.2f} -> {losses[-1]:.2f})", file=sys.stderr)
    return _named(target, recipe)


def _named(target: str, recipe: Recipe) -> str:
    """The default recipe's organism is what `--model_name_or_path organism` means."""
    if recipe == Recipe():
        store.register_named_model("organism", target)
    return target
