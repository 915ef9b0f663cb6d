"""Shard files: append-only JSONL that survives a kill at any moment, atomic tensor files, merging.

A record line is written whole and flushed to disk before the next example starts; the hidden
file of an example is renamed into place before its record is appended, so a record never points
at a missing or half-written file. On reopening, a torn last line (a kill mid-write) is cut off.
"""

from __future__ import annotations

import glob
import json
import os
import re
from typing import Any, Iterable

import torch

from .errors import UsageError


def shard_path(directory: str, base: str, rank: int) -> str:
    return os.path.join(directory, f"{base}.shard{rank}.jsonl")


def atomic_torch_save(obj: Any, path: str) -> None:
    tmp = f"{path}.tmp{os.getpid()}"
    torch.save(obj, tmp)
    os.replace(tmp, path)


def atomic_write_text(text: str, path: str) -> None:
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def read_records(path: str, repair: bool = False) -> list[dict[str, Any]]:
    """Complete records of a shard. Text after the last newline is a torn write (the run was
    killed mid-line): it is ignored, and cut from the file when `repair`. A malformed complete
    line is an error naming file:line."""
    if not os.path.exists(path):
        return []
    with open(path, "rb") as handle:
        data = handle.read()
    complete = data[: data.rfind(b"\n") + 1]
    records = []
    for line_no, raw in enumerate(complete.splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            records.append(json.loads(raw))
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise UsageError(f"{path}:{line_no}: malformed JSON record") from None
    if repair and len(complete) < len(data):
        with open(path, "r+b") as handle:
            handle.truncate(len(complete))
    return records


class ShardWriter:
    """Appends records to one shard, skipping examples it already holds (resume)."""

    def __init__(self, path: str):
        self.path = path
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        self.done: set[int] = {rec["idx"] for rec in read_records(path, repair=True) if "idx" in rec}

    def append(self, record: dict[str, Any]) -> None:
        line = json.dumps(record, ensure_ascii=False) + "\n"
        with open(self.path, "a", encoding="utf-8") as handle:
            handle.write(line)
            handle.flush()
            os.fsync(handle.fileno())
        self.done.add(record["idx"])


def shard_files(directory: str, base: str) -> list[str]:
    pattern = os.path.join(glob.escape(directory), glob.escape(base) + ".shard*.jsonl")
    rank = re.compile(r"\.shard(\d+)\.jsonl$")
    found = [p for p in glob.glob(pattern) if rank.search(p)]
    return sorted(found, key=lambda p: int(rank.search(p).group(1)))


def merge_records(shards: Iterable[list[dict[str, Any]]]) -> tuple[list[dict[str, Any]], int]:
    """First record per idx (falling back to the question text), sorted by idx; and how many
    duplicates were dropped."""
    seen: set[Any] = set()
    merged, duplicates = [], 0
    for records in shards:
        for rec in records:
            key = ("idx", rec["idx"]) if "idx" in rec else ("question", rec.get("question"))
            if key in seen:
                duplicates += 1
                continue
            seen.add(key)
            merged.append(rec)
    merged.sort(key=lambda r: (r.get("idx") is None, r.get("idx", 0)))
    return merged, duplicates


def merge_shards(directory: str, base: str, out: str | None = None,
                 expected: int | None = None) -> dict[str, Any]:
    """Merge `{base}.shard*.jsonl` into `{base}.merged.jsonl` (or `out`); returns a summary."""
    if not os.path.isdir(directory):
        raise UsageError(f"--dir: no such folder: {directory}")
    files = shard_files(directory, base)
    if not files:
        raise UsageError(f"--base: no {base}.shard*.jsonl in {directory}")
    per_file = [read_records(path) for path in files]
    merged, duplicates = merge_records(per_file)
    out = out or os.path.join(directory, f"{base}.merged.jsonl")
    atomic_write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in merged), out)
    summary: dict[str, Any] = {"out": out, "shards": {os.path.basename(p): len(r) for p, r in zip(files, per_file)},
                               "records": len(merged), "duplicates_dropped": duplicates}
    if expected is not None:
        present = {r.get("idx") for r in merged}
        summary["missing"] = [i for i in range(expected) if i not in present]
    return summary
