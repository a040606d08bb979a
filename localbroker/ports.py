"""Ports on 127.0.0.1: a free one, whether one is free, whether something listens; and the ports a
node used last time (kept in its data dir, reused when still free)."""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

__all__ = ["free_port", "load_state", "pick_port", "port_is_free", "tcp_open"]


def free_port() -> int:
    """A port free on 127.0.0.1 right now (bind to port 0, read it, close)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def tcp_open(port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout):
            return True
    except OSError:
        return False



def pick_port(requested: int, previous: int | None, taken: set[int]) -> int:
    """``requested`` if set, else last time's port if still free, else a free one not in ``taken``."""
    if requested:
        return requested
    if previous and previous not in taken and port_is_free(previous):
        return previous
    while True:
        p = free_port()
        if p not in taken:
            return p


def load_state(path: Path) -> dict[str, Any]:
    """A node's state file (ports, cluster id, SASL user), or {} when there is none."""
    try:
        return dict(json.loads(path.read_text()))
    except (OSError, ValueError):
        return {}
