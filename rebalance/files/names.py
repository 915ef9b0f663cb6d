"""Every file name the suite writes or looks for, in one place: a run's stem, its shards, their
locks, the merged file, the hidden-state files and the calibration file beside a vector.

Writers and readers both call these, so a name cannot drift between the stage that writes a file
and the stage that reads it.
"""

from __future__ import annotations

import glob
import os
import re

HIDDEN_PATTERN = "hidden_{idx}.pt"   # the release's name, beside the shards of a collection run
HIDDEN_SUBFOLDER = "hidden_states"   # where earlier versions of this suite put them

_SHARD_RANK = re.compile(r"\.shard(\d+)\.jsonl$")


def collection_stem(temperature: float, max_new_tokens: int) -> str:
    """The release's name of a collection run (temperature only names it: decoding is greedy)."""
    return f"origin_temp{temperature}_maxlen{max_new_tokens}"


def steered_stem(temperature: float, max_new_tokens: int, mode: str, run_id: str = "") -> str:
    """`steer_temp...` (the release's name), `{run_id}_steer_temp...`, or `baseline_temp...` for an
    unsteered run without a run id."""
    suffix = f"temp{temperature}_maxlen{max_new_tokens}"
    if mode == "off" and not run_id:
        return f"baseline_{suffix}"
    return f"{run_id}_steer_{suffix}" if run_id else f"steer_{suffix}"


def shard_path(directory: str, stem: str, rank: int) -> str:
    return os.path.join(directory, f"{stem}.shard{rank}.jsonl")


def shard_rank(path: str) -> int | None:
    """The rank a shard file name carries, or None when it is not a shard."""
    match = _SHARD_RANK.search(path)
    return int(match.group(1)) if match else None


def shard_files(directory: str, stem: str) -> list[str]:
    """The shards of one run, in rank order (folder and stem may hold glob characters)."""
    pattern = os.path.join(glob.escape(directory), glob.escape(stem) + ".shard*.jsonl")
    found = [p for p in glob.glob(pattern) if shard_rank(p) is not None]
    return sorted(found, key=shard_rank)


def lock_path(shard: str) -> str:
    return f"{shard}.lock"


def merged_path(directory: str, stem: str) -> str:
    return os.path.join(directory, f"{stem}.merged.jsonl")


def hidden_path(folder: str, idx: int, pattern: str = HIDDEN_PATTERN) -> str:
    return os.path.join(folder, pattern.format(idx=idx))


def calibration_path(vector_path: str) -> str:
    """The calibration file written beside a vector by hidden_analysis_auto.py: `<stem>.json`."""
    return os.path.splitext(vector_path)[0] + ".json"
