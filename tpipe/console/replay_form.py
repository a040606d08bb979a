"""The Replay page's form as a replay: the selection (``consumers.replay.selection.Selection``, as
``tpipe replay`` builds it), the source (Kafka or the lake) and the target, checked.

Targets are ``tpipe replay``'s sinks (``consumers.replay.sinks``):

* a topic: a legal Kafka topic name;
* a file: a file *name*, written in ``--console-replay-dir`` (default ``<home>/replays``) and nowhere
  else — no separator, no leading dot, and never over an existing file;
* a URL: http(s) only; the token (typed in its own field, else ``--replay-token`` /
  ``TPIPE_REPLAY_TOKEN``, or ``?token=`` in the URL) is never shown: pages and logs show the URL
  through ``plumbing.logs.redact``.

A value that does not hold raises ``ReplayError`` with a one-line reason the form shows.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from starlette.datastructures import FormData

from consumers.errors import ReplayError
from consumers.replay.selection import Selection
from consumers.replay.sinks import FileSink, Sink, TopicSink, UrlSink
from plumbing.logs import register_secret
from schemas.times import parse_time_ms
from tpipe.console.settings import ConsoleSettings

__all__ = ["ReplaySpec", "ReplayTarget", "file_in", "spec_of"]

FILE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
TOPIC_NAME = re.compile(r"[A-Za-z0-9._-]{1,249}")
SOURCES = ("kafka", "lake")
TARGETS = ("file", "topic", "url")


@dataclass(frozen=True, slots=True)
class ReplayTarget:
    kind: str  # file | topic | url
    value: str  # the file's path, the topic, or the URL as typed (its token included)
    shown: str  # "file /…/replays/x.jsonl", "topic staging.data", "url http://host/webhook?token=***"
    token: str | None = None  # the bearer token of a URL target; never shown

    def sink(self, settings: ConsoleSettings) -> Sink:
        if self.kind == "topic":
            return TopicSink(settings, self.value)
        if self.kind == "file":
            Path(self.value).parent.mkdir(parents=True, exist_ok=True)  # the replay directory, on first use
            if Path(self.value).exists():
                raise ReplayError(f"{self.value} exists already: choose another name")
            return FileSink(self.value)
        return UrlSink(self.value, self.token)


@dataclass(frozen=True, slots=True)
class ReplaySpec:
    source: str  # kafka | lake
    selection: Selection
    target: ReplayTarget
    rate: float | None


def file_in(directory: str, name: str) -> Path:
    """``directory/name`` for a plain file name; ``ReplayError`` for anything else (a path, ``..``, a dot file)."""
    if not FILE_NAME.fullmatch(name):
        raise ReplayError(f"the file must be a plain name (letters, digits, '.', '_', '-'; no '/'), written in "
                          f"{directory}: {name!r}")
    return Path(directory).absolute() / name


def _target(form: FormData, settings: ConsoleSettings) -> ReplayTarget:
    kind = str(form.get("target") or "")
    if kind not in TARGETS:
        raise ReplayError("choose a target: a file, a topic or a URL")
    value = str(form.get(kind) or "").strip()
    if not value:
        raise ReplayError(f"the {kind} target needs a value")
    if kind == "topic":
        if not TOPIC_NAME.fullmatch(value) or value in (".", ".."):
            raise ReplayError(f"not a Kafka topic name: {value!r}")
        return ReplayTarget("topic", value, f"topic {value}")
    if kind == "file":
        path = file_in(settings.console_replay_dir, value)
        if path.exists():
            raise ReplayError(f"{path} exists already: choose another name")
        return ReplayTarget("file", str(path), f"file {path}")
    typed = str(form.get("token") or "").strip() or None
    configured = settings.replay_token.get_secret_value() if settings.replay_token else None
    token = typed or configured
    register_secret(token)
    sink = UrlSink(value, token)  # checks the URL; registers the secrets in it
    return ReplayTarget("url", value, f"url {sink.shown_url}", token)


def spec_of(form: FormData, settings: ConsoleSettings) -> ReplaySpec:
    """The replay the form asks for; ``ReplayError`` with the reason when it cannot be one."""
    source = str(form.get("source") or "kafka")
    if source not in SOURCES:
        raise ReplayError(f"source: kafka or lake, not {source!r}")
    try:
        from_ms = parse_time_ms(str(form.get("from"))) if form.get("from") else None
        to_ms = parse_time_ms(str(form.get("to"))) if form.get("to") else None
    except ValueError as exc:
        raise ReplayError(str(exc)) from None
    vins = [v for v in re.split(r"[\s,]+", str(form.get("vins") or "")) if v]
    types = [str(t) for t in form.getlist("types")]
    selection = Selection.build(types=types, from_ms=from_ms, to_ms=to_ms, vins=vins)
    rate = None
    if form.get("rate"):
        try:
            rate = float(str(form.get("rate")))
        except ValueError:
            raise ReplayError(f"rate: not a number: {form.get('rate')!r}") from None
        if rate <= 0:
            raise ReplayError("rate must be positive (or empty: as fast as the target takes them)")
    return ReplaySpec(source, selection, _target(form, settings), rate)
