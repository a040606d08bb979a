"""`tpipe replay --to-url` into this project's own receiver (`tpipe serve`, a real process): the
receiver recomputes the same event_ids, and one VIN's events arrive in order."""

from __future__ import annotations

import asyncio
import uuid
from collections import defaultdict
from pathlib import Path

import pytest

from schemas.envelope import Envelope
from schemas.topics import topic_for
from tests.kafka_broker import broker_settings, read_all
from tests.processes import TOKEN, new_receiver
from tests.test_replay_helpers import MIN, VINS, iso, kafka_args, make_history, run_cli

pytestmark = pytest.mark.kafka


def test_replay_to_own_receiver_keeps_event_ids(
    kafka_bootstrap: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    src = broker_settings(kafka_bootstrap, topic_prefix=f"u{uuid.uuid4().hex[:8]}", topic_partitions=3)
    dst = broker_settings(kafka_bootstrap, topic_prefix=f"v{uuid.uuid4().hex[:8]}", topic_partitions=3)
    history = make_history(src)
    frm, to = history.base_ms + 100 * MIN, history.base_ms + 130 * MIN
    types, vins = {"data", "state", "alerts"}, {VINS[1], VINS[0]}
    expected = history.select(types, vins, frm, to)
    assert expected

    receiver = new_receiver(tmp_path, kafka_bootstrap, dst.topic_prefix).start()
    try:
        monkeypatch.setenv("TPIPE_REPLAY_TOKEN", TOKEN)  # the token from the environment, not argv
        rc = run_cli(
            "replay", "--types", "data,state,alerts", "--from", iso(frm), "--to", iso(to),
            "--vin", VINS[0], "--vin", VINS[1], "--slack", "40m",
            "--to-url", receiver.url + "/webhook", *kafka_args(src),
        )
        assert rc == 0, receiver.log_tail()
        err = capsys.readouterr().err
        assert f"sent={len(expected)}" in err and "id_mismatches=0" in err, err
        asyncio.run(receiver.wait_drained())
    finally:
        receiver.terminate()

    async def read_back() -> list[Envelope]:
        out: list[Envelope] = []
        for t in sorted(types):
            want = sum(1 for e in expected if e.type == t)
            recs = await read_all(dst, topic_for(t, dst.topic_prefix), expected_count=want, timeout=30)
            recs.sort(key=lambda r: (r.partition, r.offset))
            out.extend(Envelope.from_json(r.value) for r in recs)
        return out

    got = asyncio.run(read_back())
    assert sorted(e.event_id for e in got) == sorted(e.event_id for e in expected)
    lanes: dict[tuple[str | None, str], list[str]] = defaultdict(list)
    want_lanes: dict[tuple[str | None, str], list[str]] = defaultdict(list)
    for e in got:
        lanes[(e.vin, e.type)].append(e.event_id)
    for e in expected:
        want_lanes[(e.vin, e.type)].append(e.event_id)
    assert lanes == want_lanes  # per VIN (and type): the original order
    # the receiver stored the same payload and event time
    by_id = {e.event_id: e for e in expected}
    for e in got:
        assert e.payload == by_id[e.event_id].payload
        assert e.created_at_ms == by_id[e.event_id].created_at_ms
