"""Files written whole or not at all: a kill at any moment leaves the old file or the new one,
never half of either (a temporary file in the same folder, then a rename)."""

from __future__ import annotations

import os
from typing import Any


def atomic_torch_save(obj: Any, path: str) -> None:
    import torch  # here, not at the top: merge_shards.py and the other torch-free commands start faster

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
