"""The Replay and DLQ pages' forms read as ``tpipe replay`` / ``tpipe dlq redrive`` would read their
flags: the selection, the target (a file only by name, under the replay directory; a URL's token never
shown), the dead letters ticked or matching; and the console's defaults under the state root."""

from __future__ import annotations

from pathlib import Path

import pytest
from starlette.datastructures import FormData

from consumers.dlq.reader import DlqFilter
from consumers.errors import ReplayError, UsageError
from schemas.event_types import EventType
from tpipe.console.dlq_form import filter_of, redrive_spec_of, selected_filter
from tpipe.console.replay_form import file_in, spec_of
from tpipe.console.settings import ConsoleSettings


@pytest.fixture
def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ConsoleSettings:
    for var in ("TPIPE_HOME", "TPIPE_REPLAY_TOKEN", "TPIPE_CONSOLE_REPLAY_DIR", "TPIPE_RECEIVER_URL"):
        monkeypatch.delenv(var, raising=False)
    return ConsoleSettings(home=str(tmp_path), receiver_url=["http://10.0.0.5:9090/", "http://10.0.0.6:8080"],
                           replay_token="configured-token-1")


def _form(**fields: str | list[str]) -> FormData:
    return FormData([(k, v) for k, vs in fields.items() for v in (vs if isinstance(vs, list) else [vs])])


def test_defaults_live_under_the_state_root(settings: ConsoleSettings, tmp_path: Path) -> None:
    assert settings.console_replay_dir == str(tmp_path / "replays")
    assert settings.alerts_db_url == f"sqlite:///{tmp_path / 'alerts.db'}"
    assert settings.credits_db_url == f"sqlite:///{tmp_path / 'credits.db'}"
    assert settings.webhook_urls() == ["http://10.0.0.5:9090/webhook", "http://10.0.0.6:8080/webhook"]
    given = ConsoleSettings(home=str(tmp_path), console_webhook_url=["https://rx.example/webhook"])
    assert given.webhook_urls() == ["https://rx.example/webhook"]


@pytest.mark.parametrize("name", ["../escape.jsonl", "/tmp/x.jsonl", ".hidden", "a/b.jsonl", "", "x" * 129,
                                  "name with space", "..", "C:\\x"])
def test_a_file_target_is_a_plain_name_in_the_replay_dir(tmp_path: Path, name: str) -> None:
    with pytest.raises(ReplayError, match="plain name"):
        file_in(str(tmp_path), name)


def test_a_file_target_in_the_replay_dir_and_never_over_a_file(settings: ConsoleSettings, tmp_path: Path) -> None:
    spec = spec_of(_form(types=["data", "state"], vins="VIN1, VIN2\nVIN3", target="file", file="day-1.jsonl",
                         **{"from": "2026-01-01T00:00:00Z", "to": "2026-01-02T00:00:00Z"}), settings)
    assert spec.source == "kafka" and spec.rate is None
    assert spec.selection.types == (EventType.DATA, EventType.STATE)
    assert spec.selection.vins == {"VIN1", "VIN2", "VIN3"}
    assert (spec.selection.from_ms, spec.selection.to_ms) == (1_767_225_600_000, 1_767_312_000_000)
    assert (spec.target.kind, spec.target.value) == ("file", str(tmp_path / "replays" / "day-1.jsonl"))
    (tmp_path / "replays").mkdir()
    (tmp_path / "replays" / "day-1.jsonl").write_text("kept\n")
    with pytest.raises(ReplayError, match="exists already"):
        spec_of(_form(target="file", file="day-1.jsonl"), settings)
    with pytest.raises(ReplayError, match="exists already"):
        spec.target.sink(settings)  # made in between: still not overwritten
    assert (tmp_path / "replays" / "day-1.jsonl").read_text() == "kept\n"


def test_a_url_target_never_shows_its_token(settings: ConsoleSettings) -> None:
    spec = spec_of(_form(target="url", url="http://rx:8080/webhook?token=in-the-url-secret"), settings)
    assert "in-the-url-secret" not in spec.target.shown and spec.target.shown.startswith("url http://rx:8080/")
    assert spec.target.token == "configured-token-1"
    typed = spec_of(_form(target="url", url="https://staging.example/webhook", token="typed-token-77"), settings)
    assert typed.target.token == "typed-token-77" and "typed-token-77" not in typed.target.shown
    with pytest.raises(ReplayError, match="http:// or https://"):
        spec_of(_form(target="url", url="file:///etc/passwd"), settings)


@pytest.mark.parametrize(("fields", "reason"), [
    ({}, "choose a target"),
    ({"target": "topic", "topic": "bad topic!"}, "not a Kafka topic name"),
    ({"target": "topic"}, "needs a value"),
    ({"target": "file", "file": "x", "from": "yesterday-ish"}, "yesterday-ish"),
    ({"target": "file", "file": "x", "from": "2h", "to": "3h"}, "earlier than"),
    ({"target": "file", "file": "x", "types": "bogus"}, "unknown event type"),
    ({"target": "file", "file": "x", "rate": "0"}, "rate must be positive"),
    ({"target": "file", "file": "x", "source": "s3"}, "kafka or lake"),
])
def test_what_cannot_be_a_replay_is_refused_in_one_line(settings: ConsoleSettings, fields: dict[str, str],
                                                        reason: str) -> None:
    with pytest.raises(ReplayError, match=reason) as err:
        spec_of(_form(**fields), settings)
    assert "\n" not in str(err.value)


def test_dlq_filters_and_the_dead_letters_ticked() -> None:
    flt, typed = filter_of({"worker": "credits", "error_type": "IntegrityError", "since": "2026-01-01T00:00:00Z",
                            "until": "", "vin": "A, B"})
    assert flt == DlqFilter(frozenset({"credits"}), frozenset({"IntegrityError"}), 1_767_225_600_000, None,
                            frozenset({"A", "B"}))
    assert typed["vin"] == "A, B"
    assert filter_of({})[0] == DlqFilter()
    with pytest.raises(UsageError):
        filter_of({"since": "last tuesday"})
    assert selected_filter(_form(pos=["0:3", "2:10"])) == DlqFilter(positions=frozenset({(0, 3), (2, 10)}))
    assert selected_filter(_form(scope="matching", worker="alerts", pos="0:1")) == DlqFilter(frozenset({"alerts"}))
    with pytest.raises(UsageError, match="tick the dead letters"):
        selected_filter(_form(scope="selected"))
    with pytest.raises(UsageError, match="position"):
        selected_filter(_form(pos="3"))


def test_redrive_targets_are_the_source_a_topic_or_a_known_receiver(settings: ConsoleSettings) -> None:
    source = redrive_spec_of(_form(pos="0:1"), settings)
    assert (source.to_topic, source.url, source.force, source.shown) == (None, None, False,
                                                                         "each record's source topic")
    topic = redrive_spec_of(_form(pos="0:1", target="topic", topic="staging.data", force="on"), settings)
    assert (topic.to_topic, topic.force, topic.shown) == ("staging.data", True, "topic staging.data")
    rx = redrive_spec_of(_form(pos="0:1", target="receiver:1"), settings)
    assert (rx.url, rx.token, rx.shown) == ("http://10.0.0.6:8080/webhook", "configured-token-1",
                                            "url http://10.0.0.6:8080/webhook")
    typed = redrive_spec_of(_form(pos="0:1", target="receiver:0", token="typed-token-88"), settings)
    assert typed.token == "typed-token-88" and "typed-token-88" not in typed.shown
    only = typed.only(frozenset({(0, 1)}))
    assert (only.flt, only.url, only.token) == (DlqFilter(positions=frozenset({(0, 1)})), typed.url, typed.token)
    for bad in ("receiver:2", "receiver:x", "http://elsewhere/webhook"):
        with pytest.raises(UsageError, match="no such target"):
            redrive_spec_of(_form(pos="0:1", target=bad), settings)
    with pytest.raises(UsageError, match="topic name"):
        redrive_spec_of(_form(pos="0:1", target="topic", topic=""), settings)
