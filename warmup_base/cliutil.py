"""Small things every command-line entry point of the project shares."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from functools import wraps
from typing import Any


def quiet_broken_pipe(main: Callable[..., int]) -> Callable[..., int]:
    """`mta queue list | head` must end quietly when `head` has read enough, not with a traceback."""

    @wraps(main)
    def wrapper(*args: Any, **kwargs: Any) -> int:
        try:
            return main(*args, **kwargs)
        except BrokenPipeError:
            # Point stdout at /dev/null so the interpreter's final flush does not fail again.
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            return 1

    return wrapper


def version_text(prog: str) -> str:
    """`prog X.Y.Z`, the installed distribution's version (or what the source tree says)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return f"{prog} {version('warmup-mta')}"
    except PackageNotFoundError:
        return f"{prog} (not installed: running from a source tree)"
