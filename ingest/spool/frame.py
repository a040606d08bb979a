"""The spool's on-disk record: a checksummed frame holding one webhook body exactly as received.

Layout (little endian)::

    magic "TPS1" | body_len u32 | crc32(body) u32 | body
    body = spooled_at_ms i64 | received_at_ms i64 | topic_len u8 | key_len u16 | headers_len u32
           | topic | key | headers | value

The receiver writes the webhook body as ``value`` with empty topic, key and headers, so its request
path stays auth + JSON check + append + fsync; the forwarder turns each body into Kafka records
(``ingest.records``) just before publishing. A frame with a topic was written by a receiver from
before the raw-body spool (it holds a ready Kafka record): it decodes with ``legacy_topic`` set, and
the forwarder dead-letters it unchanged, so an upgrade with a non-empty spool loses nothing.

The magic lets recovery find the next good frame after a damaged one; the CRC tells a torn or
corrupt frame from a good one.
"""

from __future__ import annotations

import struct
import zlib
from typing import NamedTuple

from ingest.errors import CorruptFrameError, IncompleteFrameError

__all__ = ["HEAD_SIZE", "MAGIC", "SpooledBody", "decode_at", "encode", "frame_size", "next_valid"]

MAGIC = b"TPS1"
_HEAD = struct.Struct("<4sII")
_BODY = struct.Struct("<qqBHI")
HEAD_SIZE = _HEAD.size
_BODY_SIZE = _BODY.size
MAX_BODY = 64 << 20


class SpooledBody(NamedTuple):
    received_at_ms: int
    spooled_at_ms: int
    body: bytes
    legacy_topic: str | None = None  # a ready record from an older receiver (see module doc)


def encode(body: bytes, received_at_ms: int) -> bytes:
    """The frame of one received webhook body."""
    b = _BODY.pack(received_at_ms, received_at_ms, 0, 0, 0) + body
    return _HEAD.pack(MAGIC, len(b), zlib.crc32(b)) + b


def _decode_body(body: bytes) -> SpooledBody:
    spooled_at_ms, received_at_ms, tlen, klen, hlen = _BODY.unpack_from(body, 0)
    if not (tlen or klen or hlen):
        return SpooledBody(received_at_ms, spooled_at_ms, body[_BODY_SIZE:])
    topic = body[_BODY_SIZE : _BODY_SIZE + tlen].decode()
    return SpooledBody(received_at_ms, spooled_at_ms, body[_BODY_SIZE + tlen + klen + hlen :], topic or None)


def decode_at(buf: bytes | memoryview, off: int) -> tuple[SpooledBody, int]:
    """Decode the frame at ``off``; returns the body and the offset after it."""
    if len(buf) - off < HEAD_SIZE:
        raise IncompleteFrameError
    magic, blen, crc = _HEAD.unpack_from(buf, off)
    if magic != MAGIC or blen > MAX_BODY or blen < _BODY_SIZE:
        raise CorruptFrameError
    start = off + HEAD_SIZE
    end = start + blen
    if end > len(buf):
        raise IncompleteFrameError
    body = bytes(buf[start:end])  # one copy; slicing bytes below is cheaper than memoryviews
    if zlib.crc32(body) != crc:
        raise CorruptFrameError
    try:
        return _decode_body(body), end
    except (struct.error, UnicodeDecodeError, IndexError) as exc:  # crc matched but body malformed
        raise CorruptFrameError from exc


def frame_size(buf: bytes | memoryview) -> int:
    """The size of the frame starting ``buf`` as its header says (0 while the header is incomplete)."""
    if len(buf) < HEAD_SIZE:
        return 0
    _, blen, _ = _HEAD.unpack_from(buf, 0)
    return int(HEAD_SIZE + blen)


def next_valid(buf: bytes | memoryview, off: int) -> int | None:
    """The offset of the next whole valid frame after ``off``, or None if there is none in ``buf``."""
    data = bytes(buf) if isinstance(buf, memoryview) else buf
    pos = data.find(MAGIC, off + 1)
    while pos != -1:
        try:
            decode_at(data, pos)
            return pos
        except (CorruptFrameError, IncompleteFrameError):
            pos = data.find(MAGIC, pos + 1)
    return None
