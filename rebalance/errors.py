"""User-facing errors: one line on stderr and exit status 2, never a traceback."""

from __future__ import annotations

import functools
import os
import sys
from contextlib import contextmanager
from typing import Callable, Iterator


class UsageError(Exception):
    """Bad input the user can fix (a path, a line of a file, a flag). The message names it."""


def first_line(err: BaseException) -> str:
    """The first line of an exception's message (or its type's name when it has none): what a
    one-sentence error quotes of a library's longer message."""
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def cli_entry(main: Callable[..., int | None]) -> Callable[..., int]:
    """Wrap a script's main so a UsageError prints `error: ...` and exits with status 2."""

    @functools.wraps(main)
    def wrapper(argv: list[str] | None = None, **options) -> int:
        try:
            return main(argv, **options) or 0
        except UsageError as err:
            print(f"error: {err}", file=sys.stderr)
            return 2

    return wrapper


@contextmanager
def writable(path: str, hint: str) -> Iterator[None]:
    """Turn a failed write of `path` or its siblings (a read-only folder, a full disk) into one
    sentence naming the folder."""
    try:
        yield
    except OSError as err:
        folder = os.path.dirname(os.path.abspath(path))
        raise UsageError(f"cannot write {os.path.basename(path)} in {folder}: {err.strerror or err} ({hint})") from None
