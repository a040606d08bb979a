"""`tpipe replay --to-url` into this project's own receiver (`tpipe serve`, a real process): the
receiver recomputes the same event_ids, and one VIN's events arrive in order; and a token in the
--to-url query string never shows in replay's output."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
import uuid
from collections import defaultdict
from pathlib import Path

import pytest

from schemas.envelope import Envelope
from schemas.topics import topic_for
from tests.support.events import iso
from tests.support.hook_server import HookServer
from tests.support.kafka_broker import broker_settings, read_all
from tests.support.processes import TOKEN, new_receiver, tpipe_env
from tests.support.replay_data import (
    MIN,
    VINS,
    build_history,
    kafka_args,
    make_history,
    produce_history,
    run_cli,
)

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


def _replay_process(*argv: str) -> subprocess.CompletedProcess[str]:
    """``tpipe --log-level DEBUG replay <argv>`` as a real process: its real stdout and stderr."""
    return subprocess.run([sys.executable, "-m", "tpipe.cli", "--log-level", "DEBUG", "replay", *argv],
                          capture_output=True, text=True, env=tpipe_env(), timeout=120, check=False)


def test_replay_to_url_never_prints_the_token_in_its_query(kafka_bootstrap: str) -> None:
    src = broker_settings(kafka_bootstrap, topic_prefix=f"q{uuid.uuid4().hex[:8]}", topic_partitions=1)
    base = (int(time.time() * 1000) // MIN) * MIN - 60 * MIN
    history = build_history(base, minutes=3)
    asyncio.run(produce_history(src, history))
    expected = history.select({"data"}, set(VINS), 0, base + 60 * MIN)
    secret = "qs-secret-" + uuid.uuid4().hex
    select = ["--types", "data", *kafka_args(src)]

    # a receiver that fails once (a retry, logged) and then accepts everything
    with HookServer(fail_first=1) as hook:
        res = _replay_process(*select, "--to-url", f"{hook.url}?token={secret}&x=1")
    out = res.stdout + res.stderr
    assert res.returncode == 0, out[-3000:]
    assert f"sent={len(expected)}" in res.stderr and "retries=1" in res.stderr, res.stderr[-2000:]
    assert f"target=url {hook.url}?token=***&x=1" in res.stderr  # shown, with the token redacted
    assert "replay POST retried" in res.stderr and "HTTP Request: POST" in res.stderr  # logs were on
    assert {r.query for r in hook.all()} == {f"token={secret}&x=1"}, "the real URL was requested"
    assert len(hook.accepted()) == len(expected)
    assert secret not in out

    # a receiver that refuses: the error names the URL, without the token
    with HookServer(status=400) as hook:
        res = _replay_process(*select, "--to-url", f"{hook.url}?token={secret}")
    assert res.returncode == 1
    assert f"tpipe replay: error: POST {hook.url}?token=*** answered 400" in res.stderr, res.stderr[-2000:]
    assert secret not in res.stdout + res.stderr

    # not a URL replay can post to: refused before anything is read
    res = _replay_process(*select, "--to-url", f"ftp://127.0.0.1/hook?token={secret}")
    assert res.returncode == 1 and "--to-url must be an http:// or https:// URL" in res.stderr, res.stderr
    assert secret not in res.stdout + res.stderr
