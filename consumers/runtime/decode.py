"""Record value -> ``Envelope``: the runtime's decoder, with a fast path for the common valid envelope."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

__all__ = ["decode_envelope", "default_decoder"]


def _make_decoder() -> Callable[[bytes], Any]:
    """``Envelope.from_json`` with a fast path for the common, valid envelope.

    The fast path checks exactly what ``Envelope.from_dict`` checks (on orjson's exact types) and
    builds the envelope with ``new_envelope``; anything it does not accept goes through
    ``Envelope.from_json`` / ``from_dict``, which give the same envelope or raise the same error.
    (~8 -> ~2 us per record over ``from_dict``.)"""
    import orjson

    from schemas.envelope import SCHEMA_VERSION, Envelope, new_envelope
    from schemas.event_types import EventType, SourceFormat

    loads = orjson.loads
    types = {m.value: m for m in EventType}
    formats = {m.value: m for m in SourceFormat}
    hexdigits = frozenset("0123456789abcdef")
    from_dict = Envelope.from_dict

    def decode(value: bytes) -> Any:
        try:
            d = loads(value)
        except Exception:
            return Envelope.from_json(value)  # raises the usual EnvelopeError
        if type(d) is not dict:
            return from_dict(d)
        g = d.get
        version, event_id, t, f, vin = g("schema_version"), g("event_id"), g("type"), g("source_format"), g("vin")
        cat, cat_ms, rat, rat_ms, payload = (
            g("created_at"), g("created_at_ms"), g("received_at"), g("received_at_ms"), g("payload")
        )
        if (
            type(version) is int and 1 <= version <= SCHEMA_VERSION
            and type(event_id) is str and len(event_id) == 32 and hexdigits.issuperset(event_id)
            and type(t) is str and type(f) is str
            and (vin is None and "vin" in d or type(vin) is str)
            and type(cat) is str and type(rat) is str
            and type(cat_ms) is int and type(rat_ms) is int
            and type(payload) is dict
        ):
            etype = types.get(t)
            fmt = formats.get(f)
            if etype is not None and fmt is not None:
                return new_envelope(event_id, etype, vin, cat, cat_ms, rat, rat_ms, fmt, payload)
        return from_dict(d)

    return decode


_decoder: Callable[[bytes], Any] | None = None


def default_decoder() -> Callable[[bytes], Any]:
    global _decoder
    if _decoder is None:
        _decoder = _make_decoder()
    return _decoder


def decode_envelope(value: bytes) -> Any:
    """``Envelope.from_json(value)`` (the runtime's default ``decode``)."""
    return default_decoder()(value)
