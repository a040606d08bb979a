"""The spool's on-disk record: a checksummed frame holding one ready-to-publish Kafka record.

Layout (little endian)::

    magic "TPS1" | body_len u32 | crc32(body) u32 | body
    body = spooled_at_ms i64 | timestamp_ms i64 | topic_len u8 | key_len u16 | headers_len u32
           | topic | key | headers | value
    headers = (name_len u8 | name | value_len u16 | value)*

The receiver encodes the record once (topic, key, headers and value decided on the request path),
so the forwarder publishes without parsing JSON. The magic lets recovery find the next good frame
after a damaged one; the CRC tells a torn or corrupt frame from a good one.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

MAGIC = b"TPS1"
_HEAD = struct.Struct("<4sII")
_BODY = struct.Struct("<qqBHI")
HEAD_SIZE = _HEAD.size
MAX_BODY = 64 << 20

Headers = list[tuple[str, bytes]]


@dataclass(slots=True, frozen=True)
class SpoolRecord:
    topic: str
    key: bytes
    headers: Headers
    timestamp_ms: int
    spooled_at_ms: int
    value: bytes


def encode(topic: str, key: bytes, headers: Headers, timestamp_ms: int, spooled_at_ms: int, value: bytes) -> bytes:
    t = topic.encode()
    hparts: list[bytes] = []
    for name, hval in headers:
        n = name.encode()
        hparts.append(bytes((len(n),)) + n + len(hval).to_bytes(2, "little") + hval)
    h = b"".join(hparts)
    body = _BODY.pack(spooled_at_ms, timestamp_ms, len(t), len(key), len(h)) + t + key + h + value
    return _HEAD.pack(MAGIC, len(body), zlib.crc32(body)) + body


def _decode_body(body: bytes | memoryview) -> SpoolRecord:
    spooled_at_ms, timestamp_ms, tlen, klen, hlen = _BODY.unpack_from(body, 0)
    pos = _BODY.size
    topic = bytes(body[pos : pos + tlen]).decode()
    pos += tlen
    key = bytes(body[pos : pos + klen])
    pos += klen
    hend = pos + hlen
    headers: Headers = []
    while pos < hend:
        nlen = body[pos]
        name = bytes(body[pos + 1 : pos + 1 + nlen]).decode()
        pos += 1 + nlen
        vlen = int.from_bytes(body[pos : pos + 2], "little")
        headers.append((name, bytes(body[pos + 2 : pos + 2 + vlen])))
        pos += 2 + vlen
    return SpoolRecord(topic, key, headers, timestamp_ms, spooled_at_ms, bytes(body[hend:]))


class Incomplete(Exception):
    """Not enough bytes yet for a whole frame at this offset."""


class Corrupt(Exception):
    """The bytes at this offset are not a valid frame."""


def decode_at(buf: bytes | memoryview, off: int) -> tuple[SpoolRecord, int]:
    """Decode the frame at ``off``; returns the record and the offset after it."""
    if len(buf) - off < HEAD_SIZE:
        raise Incomplete
    magic, blen, crc = _HEAD.unpack_from(buf, off)
    if magic != MAGIC or blen > MAX_BODY or blen < _BODY.size:
        raise Corrupt
    start = off + HEAD_SIZE
    end = start + blen
    if end > len(buf):
        raise Incomplete
    body = memoryview(buf)[start:end]
    if zlib.crc32(body) != crc:
        raise Corrupt
    try:
        return _decode_body(body), end
    except (struct.error, UnicodeDecodeError, IndexError) as exc:  # crc matched but body malformed
        raise Corrupt from exc


def next_valid(buf: bytes | memoryview, off: int) -> int | None:
    """The offset of the next whole valid frame after ``off``, or None if there is none in ``buf``."""
    data = bytes(buf) if isinstance(buf, memoryview) else buf
    pos = data.find(MAGIC, off + 1)
    while pos != -1:
        try:
            decode_at(data, pos)
            return pos
        except (Corrupt, Incomplete):
            pos = data.find(MAGIC, pos + 1)
    return None
