"""The spool's on-disk record: a checksummed frame holding one ready-to-publish Kafka record.

Layout (little endian)::

    magic "TPS1" | body_len u32 | crc32(body) u32 | body
    body = spooled_at_ms i64 | timestamp_ms i64 | topic_len u8 | key_len u16 | headers_len u32
           | topic | key | headers | value
    headers = (name_len u8 | name | value_len u16 | value)*

A frame holds either a ready-to-publish Kafka record, or — with an empty topic (``RAW_TOPIC``) — a
webhook body exactly as it was received (``encode_raw``: value = the body, timestamp = received at).
The receiver spools raw bodies, so its request path stays auth + JSON check + append + fsync; the
forwarder turns each body into records (``ingest.records``) just before publishing. The magic lets
recovery find the next good frame after a damaged one; the CRC tells a torn or corrupt frame from a
good one.
"""

from __future__ import annotations

import struct
import zlib
from typing import NamedTuple

MAGIC = b"TPS1"
_HEAD = struct.Struct("<4sII")
_BODY = struct.Struct("<qqBHI")
HEAD_SIZE = _HEAD.size
MAX_BODY = 64 << 20

Headers = list[tuple[str, bytes]]


class SpoolRecord(NamedTuple):
    topic: str
    key: bytes
    headers: Headers
    timestamp_ms: int
    spooled_at_ms: int
    value: bytes


RAW_TOPIC = ""  # the topic of a frame that holds a received webhook body, not yet a Kafka record


_name_prefix: dict[str, bytes] = {}  # header name -> length byte + utf-8, built once per name


def encode(topic: str, key: bytes, headers: Headers, timestamp_ms: int, spooled_at_ms: int, value: bytes) -> bytes:
    t = topic.encode()
    hparts: list[bytes] = []
    for name, hval in headers:
        prefix = _name_prefix.get(name)
        if prefix is None:
            n = name.encode()
            prefix = _name_prefix[name] = bytes((len(n),)) + n
        hparts.append(prefix)
        hparts.append(len(hval).to_bytes(2, "little"))
        hparts.append(hval)
    h = b"".join(hparts)
    body = b"".join((_BODY.pack(spooled_at_ms, timestamp_ms, len(t), len(key), len(h)), t, key, h, value))
    return _HEAD.pack(MAGIC, len(body), zlib.crc32(body)) + body


def encode_raw(body: bytes, received_at_ms: int) -> bytes:
    """A frame holding one received webhook body (``RAW_TOPIC``, no key, no headers)."""
    b = _BODY.pack(received_at_ms, received_at_ms, 0, 0, 0) + body
    return _HEAD.pack(MAGIC, len(b), zlib.crc32(b)) + b


_BODY_SIZE = _BODY.size
_names: dict[bytes, str] = {}  # header names and topics repeat: decode each once


def _text(raw: bytes) -> str:
    text = _names.get(raw)
    if text is None:
        text = raw.decode()
        if len(_names) < 4096:
            _names[raw] = text
    return text


def _decode_body(body: bytes) -> SpoolRecord:
    spooled_at_ms, timestamp_ms, tlen, klen, hlen = _BODY.unpack_from(body, 0)
    pos = _BODY_SIZE
    topic = _text(body[pos : pos + tlen])
    pos += tlen
    key = body[pos : pos + klen]
    pos += klen
    hend = pos + hlen
    headers: Headers = []
    while pos < hend:
        nlen = body[pos]
        pos += 1
        name = _text(body[pos : pos + nlen])
        pos += nlen
        vlen = body[pos] | (body[pos + 1] << 8)
        pos += 2
        headers.append((name, body[pos : pos + vlen]))
        pos += vlen
    return SpoolRecord(topic, key, headers, timestamp_ms, spooled_at_ms, body[hend:])


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
    body = bytes(buf[start:end])  # one copy; slicing bytes below is cheaper than memoryviews
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
