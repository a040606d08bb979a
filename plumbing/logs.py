"""Structured logs with secrets redacted, for every tpipe process.

One handler, installed once by ``configure_logging``, in one of two formats: ``json`` (one JSON
object per line: what services and log collectors want, the default when stderr is not a terminal)
or ``console`` (``12:04:05.123 INFO  consumers.runtime  worker started  group=... topics=[...]``, the
default on a terminal). In both the message and every extra field pass through ``redact`` so that
webhook tokens (in query strings or ``Authorization`` headers) and SASL passwords never reach a log
line, whoever logged them (uvicorn, aiokafka, our own code). Benign start-up noise from aiokafka is
moved below warning by ``plumbing.log_noise``.
"""

from __future__ import annotations

import logging
import re
import sys
import time
from typing import Any

import orjson

_REDACTED = "***"
# A key naming a token: token, access_token, refresh_token, id_token, api_token, ...
_TOKEN_KEY = r"(?:[a-z0-9]+_)*token"
_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    # token=abc wherever a query string shows it: ?token=abc, &token=abc, a query string logged without
    # its '?' ("token=abc&x=1"), and its URL-encoded form inside another URL (%3Ftoken%3Dabc%26...).
    # The key must start a word, so "mytoken=" or "tokens=" is left alone.
    (re.compile(r"(?i)(?:(?<![A-Za-z0-9_])|(?<=%3F)|(?<=%26))(" + _TOKEN_KEY + r"(?:=|%3D))(?:(?!%26)[^&\s\"'#])+"),
     r"\1" + _REDACTED),
    # a quoted key in a rendered dict or JSON: {'token': 'abc'}, "access_token": "abc"
    (re.compile(r"(?i)(['\"]" + _TOKEN_KEY + r"['\"]\s*:\s*['\"])[^'\"]+"), r"\1" + _REDACTED),
    (re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=-]+"), r"\1" + _REDACTED),
    (re.compile(r"(?i)((?:sasl_plain_)?password['\"]?\s*[:=]\s*['\"]?)[^'\"\s,}]+"), r"\1" + _REDACTED),
    (re.compile(r"(?i)(authorization['\"]?\s*[:=]\s*['\"]?)[^'\"\n,}]+"), r"\1" + _REDACTED),
)
# Extra fields whose whole (string) value is a secret, whatever it looks like.
_SECRET_FIELD = re.compile(r"(?i)^(?:.*_)?(?:" + _TOKEN_KEY + r"|password|secret|authorization)$")
# Literal secrets, longest first (a secret containing another is replaced whole). A tuple replaced on
# each registration: log calls from other threads iterate a snapshot, never a set being resized.
_extra_secrets: tuple[str, ...] = ()

_STD_ATTRS = frozenset(
    vars(logging.LogRecord("x", 0, "x", 0, "x", None, None)).keys() | {"message", "asctime", "taskName"}
)


def register_secret(secret: str | None) -> None:
    """Redact this literal value wherever it appears (webhook tokens, SASL passwords, signing keys)."""
    global _extra_secrets
    if secret and len(secret) >= 4 and secret not in _extra_secrets:
        _extra_secrets = tuple(sorted({*_extra_secrets, secret}, key=len, reverse=True))


# Every pattern above needs one of these words: one search tells most strings (ids, paths) are clean.
_TRIGGER = re.compile(r"(?i)token|bearer|password|authorization")


def redact(text: str) -> str:
    """``text`` with webhook tokens, bearer credentials, passwords and registered secrets as ``***``."""
    if _TRIGGER.search(text) is not None:
        for pattern, repl in _PATTERNS:
            text = pattern.sub(repl, text)
    for secret in _extra_secrets:
        if secret in text:
            text = text.replace(secret, _REDACTED)
    return text


def _clean(value: Any, key: str = "") -> Any:
    if isinstance(value, str):
        return _REDACTED if value and _SECRET_FIELD.match(key) else redact(value)
    if isinstance(value, dict):
        return {k: _clean(v, str(k)) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


def _extras(record: logging.LogRecord) -> dict[str, Any]:
    """The record's extra fields (``extra={...}``), redacted."""
    return {
        key: _clean(value, key)
        for key, value in record.__dict__.items()
        if key not in _STD_ATTRS and not key.startswith("_")
    }


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": redact(record.getMessage()),
        }
        out.update(_extras(record))
        if record.exc_info:
            out["exc"] = redact(self.formatException(record.exc_info))
        return orjson.dumps(out, default=str).decode()


def _console_value(value: Any) -> str:
    if isinstance(value, str):
        return value if value and not any(c.isspace() or c in "\"=" for c in value) else orjson.dumps(value).decode()
    return orjson.dumps(value, default=str).decode()


#: extra fields that only repeat the message for other renderers (uvicorn's ANSI-coloured copy)
_CONSOLE_HIDDEN = frozenset({"color_message"})


class ConsoleFormatter(logging.Formatter):
    """One readable line per record: local time, level, logger, message, then ``key=value`` fields
    (values with spaces quoted as JSON strings); a traceback follows on its own lines."""

    def format(self, record: logging.LogRecord) -> str:
        stamp = time.strftime("%H:%M:%S", time.localtime(record.created)) + f".{int(record.msecs):03d}"
        line = f"{stamp} {record.levelname:<7} {record.name}  {redact(record.getMessage())}"
        fields = "  ".join(
            f"{k}={_console_value(v)}" for k, v in _extras(record).items() if k not in _CONSOLE_HIDDEN
        )
        if fields:
            line += "  " + fields
        if record.exc_info:
            line += "\n" + redact(self.formatException(record.exc_info))
        return line


class RedactingFilter(logging.Filter):
    """For handlers we do not own (e.g. a test's caplog): redact the rendered message in place."""

    def filter(self, record: logging.LogRecord) -> bool:
        msg = record.getMessage()
        clean = redact(msg)
        if clean != msg:
            record.msg, record.args = clean, None
        return True


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stderr`` is now (test runners swap it), never to a closed stream."""

    @property
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, value: Any) -> None:
        pass


LOG_FORMATS = ("console", "json")


def resolve_format(fmt: str | None = None) -> str:
    """``fmt``, else ``TPIPE_LOG_FORMAT``, else ``console`` when stderr is a terminal and ``json`` otherwise."""
    import os

    chosen = (fmt or os.environ.get("TPIPE_LOG_FORMAT") or "").strip().lower()
    if chosen in LOG_FORMATS:
        return chosen
    try:
        return "console" if sys.stderr.isatty() else "json"
    except (AttributeError, ValueError):  # a replaced or closed stderr
        return "json"


def configure_logging(level: str = "INFO", fmt: str | None = None) -> None:
    """Install the one handler on stderr: ``fmt`` (``console``/``json``; None: ``resolve_format``),
    redaction, and the demotion of aiokafka's benign start-up noise."""
    from plumbing.log_noise import BenignNoiseFilter

    handler = _StderrHandler()
    handler.setFormatter(ConsoleFormatter() if resolve_format(fmt) == "console" else JsonFormatter())
    handler.addFilter(BenignNoiseFilter())
    handler.addFilter(RedactingFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access", "aiokafka"):
        lg = logging.getLogger(name)
        lg.handlers[:] = []
        lg.propagate = True
    logging.getLogger("aiokafka").setLevel(max(logging.WARNING, root.level))
    for name in ("httpx", "httpcore"):  # one INFO line per HTTP request (replay --to-url, readiness polls):
        logging.getLogger(name).setLevel(logging.DEBUG if root.level <= logging.DEBUG else logging.WARNING)
