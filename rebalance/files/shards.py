"""Shard files: append-only JSONL that survives a kill at any moment, atomic tensor files, merging.

A record line is written whole and flushed to disk before the next example starts; the hidden
file of an example is renamed into place before its record is appended, so a record never points
at a missing or half-written file. On reopening, a torn last line (a kill mid-write) is cut off.

A run holds an advisory lock on each shard it writes (`<shard>.lock`, with its pid) for its whole
life; the kernel drops it when the process exits in any way, kill -9 included. A second run on the
same shard stops at once instead of interleaving records, and a merge warns while a run is live.
"""

from __future__ import annotations

import fcntl
import json
import os
import sys
from contextlib import ExitStack, contextmanager
from typing import Any, Iterable, Iterator, Sequence

from ..errors import UsageError, writable
from .atomic import atomic_write_text
from .cards import RunCard, describe, differences, write_merged_card
from .names import card_files, card_path, lock_path, merged_path, shard_files, shard_path, stem_of


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
    """Appends records to one shard. `done` holds every idx the run already has, in this shard or
    in any other shard of the same run (written by another worker count), so a resume with another
    `--num_gpus` redoes nothing."""

    def __init__(self, path: str):
        self.path = path
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        self.done: set[int] = {rec["idx"] for rec in read_records(path, repair=True) if "idx" in rec}
        for other in shard_files(os.path.dirname(path) or ".", stem_of(path)):
            if os.path.abspath(other) != os.path.abspath(path):
                self.done.update(rec["idx"] for rec in read_records(other) if "idx" in rec)

    def append(self, record: dict[str, Any]) -> None:
        line = json.dumps(record, ensure_ascii=False) + "\n"
        with open(self.path, "a", encoding="utf-8") as handle:
            handle.write(line)
            handle.flush()
            os.fsync(handle.fileno())
        self.done.add(record["idx"])


def _holder(fd: int) -> str:
    os.lseek(fd, 0, os.SEEK_SET)
    return os.read(fd, 32).decode(errors="replace").strip() or "unknown"


class ShardLock:
    """The exclusive right to append to one shard, for as long as this object is open. The lock
    file goes when the lock is released, so a finished run leaves only its records and cards."""

    def __init__(self, shard: str):
        self.shard = shard
        self.path = lock_path(shard)
        with writable(shard, "check --output_path"):
            os.makedirs(os.path.dirname(shard) or ".", exist_ok=True)
            open(shard, "a").close()  # the shard exists from the start, so a merge sees the live run
            self._fd = self._acquire()
        os.ftruncate(self._fd, 0)
        os.write(self._fd, f"{os.getpid()}\n".encode())

    def _acquire(self) -> int:
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                pid = _holder(fd)
                os.close(fd)
                raise UsageError(f"{self.shard} is being written by another run (pid {pid}); "
                                 "wait for it to finish or stop it, then run again to resume") from None
            except OSError as err:  # a filesystem without locks: the lock is advisory, the run goes on
                print(f"warning: cannot lock {self.shard} ({err.strerror}); make sure no other run writes it",
                      file=sys.stderr)
                return fd
            try:  # a run that ended between our open and our lock removed this file: lock the new one
                if os.fstat(fd).st_ino == os.stat(self.path).st_ino:
                    return fd
            except FileNotFoundError:
                pass
            os.close(fd)

    def release(self) -> None:
        if self._fd >= 0:
            try:
                os.unlink(self.path)  # still ours: nobody else can hold it while we do
            except FileNotFoundError:
                pass
            try:  # explicitly: a forked worker's copy of the descriptor would otherwise keep it locked
                fcntl.flock(self._fd, fcntl.LOCK_UN)
            except OSError:  # never locked (a filesystem without locks)
                pass
            os.close(self._fd)
            self._fd = -1


@contextmanager
def hold_shards(shards: Sequence[str]) -> Iterator[None]:
    """Lock every shard this process (or its workers) will write, for the duration of the block."""
    with ExitStack() as stack:
        for shard in shards:
            stack.callback(ShardLock(shard).release)
        yield


def compare_cards(directory: str, stem: str, card: RunCard, warn: bool = True) -> None:
    """Refuse to resume a run whose existing shards were made differently (nothing is written);
    name the shards without a card (written by another tool, e.g. the authors' scripts) (`warn`)."""
    for path in card_files(directory, stem):
        diffs = differences(RunCard.read(path).compared, card.compared)
        if diffs:
            shards = ", ".join(os.path.basename(p) for p in shard_files(directory, stem))
            raise UsageError(f"{os.path.join(directory, stem)}: the existing shards were made with other settings "
                             f"than this run ({os.path.basename(path)}):\n{describe(diffs)}\n"
                             "Keep both runs with another --run_id or --output_path, or delete "
                             f"{shards} and their .run.json cards in {directory} to start this one afresh.")
    for shard in shard_files(directory, stem) if warn else []:
        if not os.path.isfile(card_path(shard)) and os.path.getsize(shard) > 0:
            print(f"warning: {shard} has no run card (another tool wrote it): resuming it as this run "
                  "and writing its card now", file=sys.stderr)


def write_shard_card(shard: str, card: RunCard) -> None:
    """A shard's card: written when the shard starts; a resume adds its provenance."""
    path = card_path(shard)
    if os.path.isfile(path):
        existing = RunCard.read(path)
        existing.resumed.append(card.provenance)
        existing.write(path)
    else:
        card.write(path)


@contextmanager
def hold_run(directory: str, stem: str, ranks: Sequence[int], card: RunCard) -> Iterator[None]:
    """Everything a run needs before its first record: the cards compared (refused on any
    difference, before anything is written), the shards of `ranks` locked, compared again under
    the locks (a run that started meanwhile), and each shard's card written."""
    compare_cards(directory, stem, card)
    shards = [shard_path(directory, stem, rank) for rank in ranks]
    with hold_shards(shards):
        compare_cards(directory, stem, card, warn=False)  # said once already
        for shard in shards:
            write_shard_card(shard, card)
        yield


def live_writer(shard: str) -> str | None:
    """The pid of the run holding the shard's lock, or None when no run is writing it."""
    try:
        fd = os.open(lock_path(shard), os.O_RDONLY)
    except FileNotFoundError:  # no run holds it (a run removes its lock file when it ends)
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return _holder(fd)
    finally:
        os.close(fd)  # closing drops a shared lock taken just to test
    return None


def merge_records(shards: Iterable[list[dict[str, Any]]]) -> tuple[list[dict[str, Any]], int]:
    """First record per idx (falling back to the question text), sorted by idx; and how many
    duplicates were dropped."""
    seen: set[Any] = set()
    merged, duplicates = [], 0
    for records in shards:
        for rec in records:
            key = rec["idx"] if "idx" in rec else (None, rec.get("question"))  # an int never equals a pair
            if key in seen:
                duplicates += 1
                continue
            seen.add(key)
            merged.append(rec)
    numbered = sorted((r for r in merged if "idx" in r), key=lambda r: r["idx"])
    return numbered + [r for r in merged if "idx" not in r], duplicates


def shard_cards(shards: Sequence[str]) -> dict[str, RunCard]:
    """The cards of the shards to merge, by shard name; refused when two were made differently.
    A shard without a card (another tool wrote it) is named in a warning."""
    cards: dict[str, RunCard] = {}
    for shard in shards:
        if os.path.isfile(card_path(shard)):
            cards[os.path.basename(shard)] = RunCard.read(card_path(shard))
        else:
            print(f"warning: {os.path.basename(shard)} has no run card (another tool wrote it): "
                  "merged without checking how it was made", file=sys.stderr)
    if cards:
        first_name, first = next(iter(cards.items()))
        for name, card in cards.items():
            diffs = differences(first.compared, card.compared)
            if diffs:
                raise UsageError(f"{name} and {first_name} were made with different settings, so they are not "
                                 f"one run:\n{describe(diffs, f'in {first_name}', f'in {name}')}\n"
                                 "Merge each run on its own (move one run's shards and cards to another folder).")
    return cards


def merge_shards(directory: str, base: str, out: str | None = None,
                 expected: int | None = None) -> dict[str, Any]:
    """Merge `{base}.shard*.jsonl` into `{base}.merged.jsonl` (or `out`); returns a summary."""
    if not os.path.isdir(directory):
        raise UsageError(f"--dir: no such folder: {directory}")
    files = shard_files(directory, base)
    if not files:
        raise UsageError(f"--base: no {base}.shard*.jsonl in {directory}")
    live = [(path, pid) for path in files if (pid := live_writer(path)) is not None]
    for path, pid in live:
        print(f"warning: {os.path.basename(path)} is still being written (pid {pid}); this merge may miss "
              "records: merge again when the run ends", file=sys.stderr)
    cards = shard_cards(files)
    per_file = [read_records(path) for path in files]
    merged, duplicates = merge_records(per_file)
    out = out or merged_path(directory, base)
    atomic_write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in merged), out)
    if cards:
        write_merged_card(cards, card_path(out))
    summary: dict[str, Any] = {"out": out, "shards": {os.path.basename(p): len(r) for p, r in zip(files, per_file)},
                               "records": len(merged), "duplicates_dropped": duplicates,
                               "live": [os.path.basename(path) for path, _ in live]}
    if expected is not None:
        present = {r.get("idx") for r in merged}
        summary["missing"] = [i for i in range(expected) if i not in present]
    return summary
