"""Take network addresses out of error text shown by ``/healthz`` and ``/readyz``.

The health endpoints report the forwarder's last Kafka error. Its text comes from aiokafka and the OS and
names the brokers: ``Unable to bootstrap from [('10.0.3.7', 9093, <AddressFamily.AF_INET: 2>)]``,
``Connection at kafka-0.kafka.svc:9093 closed``, ``Connect call failed ('::1', 9092, 0, 0)``. The
endpoints are for probes and dashboards, not a map of the network behind the receiver, so every address
becomes ``<address>``; the kind of error stays readable. The full text still goes to the log.
"""

from __future__ import annotations

import re

ADDRESS = "<address>"

# Order matters: whole socket-address tuples first, then IPv6 (which contains colons that the
# host:port rule would otherwise split), IPv4, and finally name:port.
_PATTERNS: tuple[re.Pattern[str], ...] = (
    # Python reprs of socket addresses: ('10.0.0.1', 9092), ('::1', 9092, 0, 0),
    # ('kafka', 9092, <AddressFamily.AF_UNSPEC: 0>)
    re.compile(r"\(\s*'[^']*'\s*,\s*\d+(?:\s*,\s*(?:<AddressFamily\.\w+:\s*-?\d+>|-?\d+))*\s*\)"),
    # aiokafka's connection repr: host=... port=...
    re.compile(r"(?<=\bhost=)[^\s>,)]+|(?<=\bport=)\d+"),
    # [IPv6] with an optional port
    re.compile(r"\[[0-9A-Fa-f:.]*:[0-9A-Fa-f:.%\w]*\](?::\d{1,5})?"),
    # bare IPv6 (compressed with '::', or all eight groups; some digit), an optional zone, and whatever
    # :port follows
    re.compile(
        r"(?<![\w:.])(?=[0-9A-Fa-f:.]*::|(?:[0-9A-Fa-f]{1,4}:){7}[0-9A-Fa-f]{1,4})(?=[0-9A-Fa-f:.]*\d)"
        r"[0-9A-Fa-f:.]{2,}(?:%\w+)?(?![\w:])"
    ),
    # IPv4 with an optional port
    re.compile(r"(?<![\w.])(?:\d{1,3}\.){3}\d{1,3}(?::\d{1,5})?(?![\w.])"),
    # host name:port (a name has at least one letter, so times such as 12:30 are left alone, and is not
    # the date of an ISO timestamp)
    re.compile(r"(?<![\w.-])(?!\d{4}-\d\d-\d\dT)(?=[A-Za-z0-9.-]*[A-Za-z])[A-Za-z0-9](?:[A-Za-z0-9-]*)(?:\.[A-Za-z0-9-]+)*\.?:\d{1,5}(?!\d)"),
)


def strip_addresses(text: str | None) -> str | None:
    """``text`` with every host:port, IP address and socket-address tuple replaced by ``<address>``."""
    if not text:
        return text
    for pattern in _PATTERNS:
        text = pattern.sub(ADDRESS, text)
    return text
