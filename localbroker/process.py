"""How long a node's JVM lives: it dies with the process that started it (when asked), and every node
still running when the interpreter exits is stopped."""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import signal
from typing import Protocol

__all__ = ["die_with_parent", "forget_running", "note_running"]


class _Stoppable(Protocol):
    def stop(self, timeout: float = 30.0) -> int | None: ...


_RUNNING: set[_Stoppable] = set()


def die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    """``preexec_fn``: the child gets SIGKILL when its parent dies (``PR_SET_PDEATHSIG``)."""
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, int(signal.SIGKILL))


def note_running(node: _Stoppable) -> None:
    _RUNNING.add(node)


def forget_running(node: _Stoppable) -> None:
    _RUNNING.discard(node)


@atexit.register
def _stop_running() -> None:
    for node in list(_RUNNING):
        with contextlib.suppress(Exception):
            node.stop(timeout=15)
