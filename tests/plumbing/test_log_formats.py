"""The two log formats (console on a terminal, JSON otherwise), redaction in both, and aiokafka's
benign coordinator noise below warning while young, an error once it lasts."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import orjson
import pytest
from aiokafka.errors import GroupAuthorizationFailedError, GroupCoordinatorNotAvailableError

from plumbing.log_noise import BenignNoiseFilter
from plumbing.logs import ConsoleFormatter, JsonFormatter, configure_logging, resolve_format


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def _record(msg: str, *args: object, level: int = logging.INFO, name: str = "consumers.runtime",
            **extra: object) -> logging.LogRecord:
    rec = logging.LogRecord(name, level, __file__, 1, msg, args, None)
    rec.__dict__.update(extra)
    return rec


def test_console_line_has_level_logger_message_and_fields_redacted() -> None:
    line = ConsoleFormatter().format(_record(
        "POST /webhook?token=s3cr3t-console answered", worker="alerts", topics=["t.a", "t.b"],
        note="two words", password="hunter2", level=logging.WARNING))
    assert " WARNING consumers.runtime  POST /webhook?token=*** answered" in line
    assert 'worker=alerts' in line and 'topics=["t.a","t.b"]' in line and 'note="two words"' in line
    assert "s3cr3t-console" not in line and "hunter2" not in line and "password=***" in line


def test_json_stays_one_object_per_line_redacted() -> None:
    out = orjson.loads(JsonFormatter().format(_record("Bearer abc.def.ghi used", worker="x")))
    assert out["level"] == "info" and out["logger"] == "consumers.runtime" and out["worker"] == "x"
    assert "abc.def.ghi" not in out["msg"]


def test_format_defaults_console_on_a_terminal_json_otherwise(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TPIPE_LOG_FORMAT", raising=False)
    monkeypatch.setattr("sys.stderr", _Tty())
    assert resolve_format() == "console"
    monkeypatch.setattr("sys.stderr", io.StringIO())
    assert resolve_format() == "json"
    monkeypatch.setenv("TPIPE_LOG_FORMAT", "console")
    assert resolve_format() == "console" and resolve_format("json") == "json"


@pytest.fixture
def json_logs() -> Iterator[None]:
    configure_logging("INFO", "json")  # a fresh filter: no streak from other tests
    yield
    configure_logging("INFO", "json")


def test_young_coordinator_streak_is_info_real_failures_stay_errors(
    json_logs: None, capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()
    log = logging.getLogger("aiokafka.consumer.group_coordinator")
    log.error("Group Coordinator Request failed: %s", GroupCoordinatorNotAvailableError())
    log.error("Heartbeat failed: %r", GroupCoordinatorNotAvailableError())  # not the start-up message
    log.error("Group Coordinator Request failed: %s", GroupAuthorizationFailedError("g"))  # not retried
    lines = [orjson.loads(x) for x in capsys.readouterr().err.splitlines() if x.startswith("{")]
    levels = [(x["level"], str(x["msg"])[:30]) for x in lines]
    assert levels == [("info", "Group Coordinator Request fail"), ("error", "Heartbeat failed: GroupCoordin"),
                      ("error", "Group Coordinator Request fail")]


def test_a_streak_that_lasts_is_an_error() -> None:
    now = [0.0]
    f = BenignNoiseFilter(grace_s=30, clock=lambda: now[0])

    def level_at(t: float) -> int:
        now[0] = t
        rec = _record("Group Coordinator Request failed: %s", GroupCoordinatorNotAvailableError(),
                      level=logging.ERROR, name="aiokafka.consumer.group_coordinator")
        f.filter(rec)
        return rec.levelno

    assert [level_at(t) for t in (0, 5, 20, 29)] == [logging.INFO] * 4
    assert level_at(31) == logging.ERROR  # the same streak, over 30 s: the coordinator is really gone
    assert level_at(100) == logging.INFO  # 69 s of quiet ended it: a new, young streak
