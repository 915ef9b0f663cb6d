"""Run cards: what made a run's records, written beside every shard (`<shard>.run.json`), the
merged file and check.py's metrics, so runs that differ never share a file unnoticed.

A card has three parts. `compared`: everything that changes the records (model and a hash of its
files, dataset file hash, mode, vector hash, layer and site, control constants, coefficient,
temperature, top-p, repetition penalty, seed and sampler, max tokens, dtype, step rule, prompt hash); resuming
or merging with a difference there is refused. `recorded`: what does not change a record (batch
size, workers, `--hs_device`, `--limit`, paths), kept for the reader. `provenance`: project version
and git commit, library versions, device, host, start time and command line; each resume adds an
entry to `resumed`.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import socket
import subprocess
import sys
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Iterable

from ..errors import UsageError
from ..version import REPO_ROOT, __version__
from .atomic import atomic_write_text

CARD_VERSION = 1

# compared field -> how the user changes it (the sentences of a refusal name these)
FIELD_FLAGS = {
    "kind": "the script (collection or steered inference)",
    "model": "--model_name_or_path",
    "model_files": "the model's files (config or weights)",
    "dataset": "--dataset",
    "dataset_sha256": "the dataset file's content",
    "mode": "--steer_mode",
    "vector_sha256": "--steer_vector_path (the vector's content)",
    "steer_layer": "--steer_layer",
    "inject_at": "--inject_at",
    "constants": "the control constants (--dyn_* or the calibration file)",
    "coef": "--steer_coef",
    "temperature": "--temperature",
    "top_p": "--top_p",
    "repetition_penalty": "--repetition_penalty",
    "seed": "--seed",
    "sampler": "the sampler (this suite's version)",
    "max_new_tokens": "--max_generated_tokens",
    "dtype": "--dtype",
    "step_rule": "the step rule (this suite's version)",
    "prompt_sha256": "the prompt (chat template or system prompt)",
}


def sha256_file(path: str, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _bytes(path: str) -> bytes:
    with open(path, "rb") as handle:
        return handle.read()


def model_files_hash(model_path: str) -> str | None:
    """A hash of a local model folder's config and weight files: the config's bytes and the
    weights' index (or, without one, every weight file's name and size). None for a hub id."""
    if not os.path.isdir(model_path):
        return None
    digest = hashlib.sha256()
    config = os.path.join(model_path, "config.json")
    if os.path.isfile(config):
        digest.update(_bytes(config))
    names = sorted(os.listdir(model_path))
    index = [n for n in names if n.endswith(".index.json")]
    if index:
        for name in index:
            digest.update(_bytes(os.path.join(model_path, name)))
    else:
        for name in names:
            if name.endswith((".safetensors", ".bin", ".pt", ".gguf")):
                digest.update(f"{name}:{os.path.getsize(os.path.join(model_path, name))}\n".encode())
    return digest.hexdigest()


def _git(*args: str) -> str | None:
    try:
        done = subprocess.run(["git", "-C", REPO_ROOT, *args], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def provenance() -> dict[str, Any]:
    """Who ran this, with what: recorded, never compared."""
    import torch
    import transformers


    commit = _git("rev-parse", "HEAD") if os.path.isdir(os.path.join(REPO_ROOT, ".git")) else None
    dirty = bool(_git("status", "--porcelain", "--untracked-files=no")) if commit else None
    try:
        cuda = torch.cuda.is_available()
        device = torch.cuda.get_device_name(0) if cuda else f"cpu ({platform.machine()})"
    except (AssertionError, RuntimeError):  # a CUDA runtime that cannot answer: say so, do not stop the run
        cuda, device = False, "unknown"
    return {
        "version": __version__, "git_commit": commit, "git_dirty": dirty,
        "torch": torch.__version__, "transformers": transformers.__version__,
        "python": platform.python_version(),
        "device": device,
        "cuda": torch.version.cuda if cuda else None,
        "host": socket.gethostname(),
        "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join([os.path.basename(sys.argv[0]), *sys.argv[1:]]),
    }


@dataclass
class RunCard:
    compared: dict[str, Any]
    recorded: dict[str, Any] = field(default_factory=dict)
    provenance: dict[str, Any] = field(default_factory=dict)
    resumed: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.compared = json.loads(json.dumps(self.compared))  # as it reads back (tuples are lists)

    @property
    def fingerprint(self) -> str:
        """A short hash of the compared fields: equal for runs whose records would be equal."""
        return sha256_text(json.dumps(self.compared, sort_keys=True))[:16]

    def as_json(self) -> dict[str, Any]:
        return {"card_version": CARD_VERSION, "fingerprint": self.fingerprint, "compared": self.compared,
                "recorded": self.recorded, "provenance": self.provenance, "resumed": self.resumed}

    def write(self, path: str) -> None:
        atomic_write_text(json.dumps(self.as_json(), indent=2, ensure_ascii=False) + "\n", path)

    @classmethod
    def read(cls, path: str) -> "RunCard":
        """A card from its file; anything else is an error naming the file."""
        try:
            with open(path, encoding="utf-8") as handle:
                data = json.load(handle)
            card = cls(dict(data["compared"]), dict(data.get("recorded", {})), dict(data.get("provenance", {})),
                       list(data.get("resumed", [])))
        except (OSError, json.JSONDecodeError, KeyError, TypeError, ValueError) as err:
            raise UsageError(f"{path}: not a readable run card ({type(err).__name__}: {err}); "
                             "delete it only together with the records beside it") from None
        return card


def _show(value: Any) -> str:
    if isinstance(value, str) and len(value) == 64 and all(c in "0123456789abcdef" for c in value):
        return value[:12]  # a hash: its head is enough to tell two apart
    if value is None:
        return "unset"
    return json.dumps(value, sort_keys=True) if isinstance(value, (dict, list)) else str(value)


def differences(old: dict[str, Any], new: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(field, old value, new value) for every compared field that differs, in a stable order."""
    names = list(FIELD_FLAGS) + sorted((set(old) | set(new)) - set(FIELD_FLAGS))
    return [(name, _show(old.get(name)), _show(new.get(name))) for name in names if old.get(name) != new.get(name)]


def describe(diffs: Iterable[tuple[str, str, str]], then: str = "in the existing shards", now: str = "now") -> str:
    """One sentence per differing field, naming the flag that changes it."""
    return "\n".join(f"  {FIELD_FLAGS.get(name, name)}: {a} {then}, {b} {now}" for name, a, b in diffs)


def write_merged_card(cards: dict[str, RunCard], path: str) -> RunCard:
    """The card beside a merged file: the shards' compared fields (equal by then), the first shard's
    recorded fields, and every shard's provenance."""
    first = next(iter(cards.values()))
    merged = RunCard(first.compared, dict(first.recorded),
                     {"merged": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                      "shards": {name: card.provenance for name, card in cards.items()},
                      "git_commit": first.provenance.get("git_commit"),
                      "git_dirty": first.provenance.get("git_dirty"),
                      "git_commits": sorted({str(p.get("git_commit")) for card in cards.values()
                                             for p in [card.provenance, *card.resumed]})},
                     [entry for card in cards.values() for entry in card.resumed])
    merged.write(path)
    return merged


def read_card_beside(jsonl_path: str) -> RunCard | None:
    """The card of a shard or merged file, or None when it has none (another tool wrote the file)."""
    from .names import card_path

    path = card_path(jsonl_path)
    return RunCard.read(path) if os.path.isfile(path) else None
