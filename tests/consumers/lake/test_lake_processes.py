"""``tpipe consume telemetry`` as a real process: killed mid-stream and restarted it loses and duplicates
nothing; SIGTERM drains (commits what is buffered) and exits 0."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from consumers.lake.settings import LakeSettings
from localbroker import free_port
from plumbing.settings import KafkaSettings
from tests.support.kafka_broker import produce_envelopes
from tests.support.lake import (
    assert_offsets_stored,
    drive_stream,
    expected_counts,
    lake_settings,
    raw_counts,
    rows_reach,
)
from tests.support.paths import REPO
from tests.support.processes import tpipe_env
from tests.support.waiting import wait_until

pytestmark = pytest.mark.kafka


def _spawn(s: LakeSettings, *extra: str) -> subprocess.Popen[bytes]:
    args = [
        sys.executable, "-m", "tpipe.cli", "consume", "telemetry", "--kafka", s.kafka, "--topic-prefix", s.topic_prefix,
        "--catalog-uri", s.catalog_uri, "--warehouse", s.warehouse,
        "--batch-size", str(s.batch_size), "--batch-timeout-ms", str(s.batch_timeout_ms),
        "--commit-rows", str(s.commit_rows), "--commit-interval-s", str(s.commit_interval_s),
        "--metrics-port", str(s.metrics_port), *extra,
    ]
    env = tpipe_env(TPIPE_LOG_LEVEL="WARNING")
    return subprocess.Popen(args, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _stop(p: subprocess.Popen[bytes]) -> None:
    if p.poll() is None:
        p.kill()
    p.wait(10)


@pytest.mark.fault
async def test_sigkill_mid_stream_then_restart_loses_and_duplicates_nothing(
    kafka_settings: KafkaSettings, tmp_path: Path
) -> None:
    s = lake_settings(kafka_settings, tmp_path, batch_size=100, commit_rows=300, commit_interval_s=0.2)
    envs = drive_stream(3000)
    want = expected_counts(envs)
    await produce_envelopes(s, envs)
    p = _spawn(s)
    try:
        def some_rows() -> bool:
            return 1500 <= raw_counts(s).get("telemetry", (0, 0))[0]

        await wait_until(some_rows, "a part of the stream in the lake", timeout=90, interval=0.05, in_thread=True)
        os.kill(p.pid, signal.SIGKILL)
        p.wait(10)
        at_kill = raw_counts(s)
    finally:
        _stop(p)
    assert at_kill["telemetry"][0] < want["telemetry"], "killed too late to prove anything"
    p = _spawn(s)
    try:
        await rows_reach(s, want, timeout=120)
        final_wait = await asyncio.to_thread(raw_counts, s)
    finally:
        p.send_signal(signal.SIGTERM)
        p.wait(60)
    final = raw_counts(s)
    print(f"\nCRASH TEST rows at SIGKILL: {at_kill}; after restart: {final}; expected: {want}")
    assert final == final_wait == {k: (v, v) for k, v in want.items()}
    await assert_offsets_stored(s)


@pytest.mark.fault
async def test_sigterm_drains_and_commits(kafka_settings: KafkaSettings, tmp_path: Path) -> None:
    port = free_port()
    # nothing is due by size or time: only the drain can commit
    s = lake_settings(kafka_settings, tmp_path, commit_rows=10**6, commit_interval_s=3600, metrics_port=port)
    envs = drive_stream(50)
    await produce_envelopes(s, envs)
    p = _spawn(s)
    try:
        async def all_handled() -> bool:
            try:
                async with httpx.AsyncClient() as client:
                    text = (await client.get(f"http://127.0.0.1:{port}/metrics", timeout=2)).text
            except httpx.HTTPError:
                return False
            return 'tpipe_worker_records_processed_total{worker="telemetry"} 50.0' in text

        await wait_until(all_handled, timeout=60, interval=0.2, what="50 records handled (metrics)")
        assert raw_counts(s).get("telemetry", (0, 0))[0] == 0  # still buffered
        p.send_signal(signal.SIGTERM)
        rc = await asyncio.to_thread(p.wait, 60)
        err = p.stderr.read().decode() if p.stderr else ""
    finally:
        _stop(p)
    assert rc == 0, err[-2000:]
    want = expected_counts(envs)
    assert raw_counts(s) == {k: (v, v) for k, v in want.items()}
    await assert_offsets_stored(s)
