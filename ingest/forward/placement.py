"""Where the forwarder runs — one interface, two placements:

* ``ingest.forward.process.ForwarderProcess``: a child process (``--forwarder process``, the default);
  the request path only checks and spools, the parse and publish use another core.
* ``ingest.forward.inline.InlineForwarder``: a task in the receiver's own event loop.

Both run the same ``ingest.forward.forwarder.Forwarder``, are supervised the same way (a death is
logged, counted and restarted; repeated deaths at one spool position stall the receiver, then
quarantine the body) and report the same ``ForwarderState``.
"""

from __future__ import annotations

from typing import Protocol

from ingest.forward.health import ForwarderState, Supervision
from ingest.records import RecordBuilder
from ingest.settings import IngestSettings
from ingest.spool.log import Spool

__all__ = ["ForwarderPlacement", "make_forwarder"]


class ForwarderPlacement(Protocol):
    """Where the forwarder runs: ``ingest.forward.process.ForwarderProcess`` (a child process,
    the default) or ``ingest.forward.inline.InlineForwarder`` (a task in the receiver's loop)."""

    @property
    def mode(self) -> str: ...

    @property
    def state(self) -> ForwarderState: ...

    @property
    def supervision(self) -> Supervision: ...

    @property
    def pid(self) -> int | None: ...

    @property
    def forwarded(self) -> int: ...

    async def run(self) -> None: ...

    async def drain(self, timeout_s: float) -> bool: ...

    async def close(self) -> None: ...


def make_forwarder(settings: IngestSettings, spool: Spool, builder: RecordBuilder) -> ForwarderPlacement:
    """The placement ``--forwarder`` asks for."""
    if settings.forwarder == "process":
        from ingest.forward.process import ForwarderProcess

        return ForwarderProcess(settings, spool)
    from ingest.forward.inline import InlineForwarder

    return InlineForwarder(settings, spool, builder)
