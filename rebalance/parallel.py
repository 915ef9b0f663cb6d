"""Data parallelism: example i goes to rank i % world, each rank writes its own shard.

`--num_gpus N` spawns N workers (one per GPU; CPU workers when there is no CUDA, so the path is
testable anywhere). Under torchrun / accelerate launch (RANK and WORLD_SIZE set) the process is
one rank of the global world, so several nodes sharing a filesystem split one dataset.
"""

from __future__ import annotations

import os
import sys
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import torch
import torch.multiprocessing as mp

from .errors import UsageError


@dataclass(frozen=True)
class Rank:
    rank: int
    world: int
    device: str

    def owns(self, idx: int) -> bool:
        return idx % self.world == self.rank


def local_device(local_rank: int, device_count: int) -> str:
    """The device of a launched process: `cuda:(LOCAL_RANK mod visible devices)`, so a launcher that
    gives each task its own GPU (CUDA_VISIBLE_DEVICES narrowed to one, LOCAL_RANK still counting)
    works as well as one that shows every task all of them."""
    return f"cuda:{local_rank % device_count}" if device_count > 0 else "cpu"


def launched_rank() -> Rank | None:
    """The rank given by torchrun / accelerate launch, if any."""
    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
        return None
    local = int(os.environ.get("LOCAL_RANK", 0))
    device = local_device(local, torch.cuda.device_count() if torch.cuda.is_available() else 0)
    return Rank(int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), device)


def plan_workers(num_gpus: int) -> int:
    """How many local workers to start for `--num_gpus`; checks it against the machine."""
    if num_gpus < 1:
        raise UsageError(f"--num_gpus must be at least 1, got {num_gpus}")
    if torch.cuda.is_available():
        present = torch.cuda.device_count()
        if num_gpus > present:
            raise UsageError(f"--num_gpus {num_gpus}: only {present} CUDA device(s) present")
    elif num_gpus > 1:
        print(f"no CUDA device: running {num_gpus} CPU workers instead of GPUs", file=sys.stderr)
    return num_gpus


def _worker(local_rank: int, world: int, fn: Callable[[Rank, Any], None], payload: Any) -> None:
    if torch.cuda.is_available():
        device = f"cuda:{local_rank}"
        torch.cuda.set_device(device)
    else:
        device = "cpu"
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // world))
    fn(Rank(local_rank, world, device), payload)


def run_data_parallel(fn: Callable[[Rank, Any], None], payload: Any, num_gpus: int,
                      hold: Callable[[Sequence[int]], AbstractContextManager] | None = None) -> None:
    """Run `fn(rank, payload)` on every rank: in this process when launched externally or when
    there is a single worker, else in spawned processes (fn and payload must be picklable).
    `hold(ranks)` is entered in this process around the work of the ranks it runs or spawns (the
    shard locks), so it lasts exactly as long as they do."""
    hold = hold or (lambda ranks: nullcontext())
    launched = launched_rank()
    if launched is not None:
        if launched.device.startswith("cuda"):
            torch.cuda.set_device(launched.device)
        with hold([launched.rank]):
            fn(launched, payload)
        return
    workers = plan_workers(num_gpus)
    with hold(range(workers)):
        if workers == 1:
            fn(Rank(0, 1, "cuda:0" if torch.cuda.is_available() else "cpu"), payload)
            return
        mp.start_processes(_worker, args=(workers, fn, payload), nprocs=workers, join=True, start_method="spawn")
