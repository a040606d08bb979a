"""Errors of the local broker::

    BrokerError (RuntimeError)   the broker could not be resolved, formatted, started or reached
"""

from __future__ import annotations

__all__ = ["BrokerError"]


class BrokerError(RuntimeError):
    """The local broker could not be resolved, formatted, started or reached."""
