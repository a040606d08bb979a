"""The DLQ and Replay pages in a real headless Chromium, against a real receiver, a real credits worker
and the session's broker.

* A credits worker whose database refuses writes (a trigger on its ledger) dead-letters the credits
  events, a redelivered webhook among them; once writes are allowed again they are redriven from the
  DLQ page (dry run, then confirm) and the ledger holds each event once; redriving them again sends
  nothing.
* A webhook body the receiver could not parse is redriven into the receiver the console knows (the
  token from ``TPIPE_REPLAY_TOKEN``): its event reaches Kafka once.
* A replay to a file from the Replay page writes exactly the dry run's count of events, its progress
  bar moving while it runs.
* The new changes refuse a request without the admin credential or the CSRF token (403), and a file
  target outside the replay directory (400), and change nothing.
"""

from __future__ import annotations

import contextlib
import sqlite3
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from playwright.sync_api import Page, expect

from plumbing.kafka_clients import make_producer
from schemas.parse import parse_object
from schemas.topics import topic_for
from tests.support.console import ConsoleProcess, Pipeline, reload_until, run_async, screenshot, until
from tests.support.kafka_broker import broker_settings, committed_offsets, end_offsets, read_until_quiet
from tests.support.processes import TOKEN

pytestmark = [pytest.mark.kafka, pytest.mark.browser]

NOW_MS = int(time.time() * 1000)
PASSWORD = "console-admin-pw-1234"


def _iso(ms: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ms / 1000)) + f".{ms % 1000:03d}Z"


@pytest.fixture(scope="module")
def pipeline(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pipeline]:
    p = Pipeline(tmp_path_factory.mktemp("console-dlq"), kafka_bootstrap, f"t{uuid.uuid4().hex[:8]}")
    try:
        p.start_receiver()
        p.start_worker("credits", "--retry-backoff-ms", "100")
        yield p
    finally:
        p.stop()


@pytest.fixture(scope="module")
def console(pipeline: Pipeline) -> Iterator[ConsoleProcess]:
    c = pipeline.console("--console-sample-s", "0.5", "--console-replay-dir", str(pipeline.tmp / "replays"),
                         TPIPE_REPLAY_TOKEN=TOKEN)
    try:
        yield c
    finally:
        c.stop()


def _ledger(pipeline: Pipeline, sql: str) -> list[Any]:
    with contextlib.closing(sqlite3.connect(pipeline.tmp / "credits.db")) as db:
        rows = db.execute(sql).fetchall()
        db.commit()
        return rows


def _records(pipeline: Pipeline, topic: str) -> int:
    ends = run_async(end_offsets(broker_settings(pipeline.kafka, pipeline.prefix), topic))
    return sum(ends.values())


def _caught_up(pipeline: Pipeline, group: str, topic: str) -> bool:
    s = broker_settings(pipeline.kafka, pipeline.prefix)
    done = run_async(committed_offsets(s, group))
    return all(done.get(tp, 0) >= end for tp, end in run_async(end_offsets(s, topic)).items())


def _dry_run_then_confirm(page: Page, to_send: int) -> None:
    """On a redrive's dry-run page: wait for the plan, check the count, confirm, wait for the result."""
    expect(page.locator("#to-send")).to_have_text(str(to_send), timeout=30_000)
    page.click("#confirm")
    expect(page.locator("#sent-count")).to_have_text(str(to_send), timeout=30_000)


def test_dead_lettered_credits_are_redriven_from_the_dlq_page_once(pipeline: Pipeline, console: ConsoleProcess,
                                                                    page: Page) -> None:
    until(lambda: _ledger(pipeline, "SELECT count(*) FROM sqlite_master WHERE name = 'credit_events'")[0][0],
          "the credits worker's ledger", timeout=60)
    # the fault: the ledger refuses every write (a migration gone wrong)
    _ledger(pipeline, "CREATE TRIGGER refuse_writes BEFORE INSERT ON credit_events "
                      "BEGIN SELECT RAISE(ABORT, 'writes refused: ledger read-only'); END")
    bodies = [orjson.dumps({"createdAt": _iso(NOW_MS - 3 * 86_400_000 + i * 60_000), "credits": {
        "type": "command", "name": "honk", "cost": 2, "balance": 5000 - 2 * (i + 1)}}) for i in range(2)]
    for body in (*bodies, bodies[0]):  # the first one redelivered
        assert pipeline.post(body).status_code == 202
    dlq = f"{console.url}/dlq?worker=credits"
    reload_until(page, dlq, "#dead-letters tr.dead-letter:nth-of-type(4)", timeout=60)  # header row + 3
    expect(page.locator("#dead-letters tr.dead-letter")).to_have_count(3)
    expect(page.locator("#dead-letters tr.dead-letter").first).to_contain_text("writes refused")
    expect(page.locator("#dlq-stats")).to_contain_text("IntegrityError")
    screenshot(page, "dlq")

    page.locator("#dead-letters tr.dead-letter a").first.click()
    expect(page.locator("#payload")).to_contain_text('"honk"')
    expect(page.locator("#headers")).to_contain_text("dlq_source_topic")
    expect(page.locator("#reason")).to_contain_text("writes refused")
    screenshot(page, "dlq-record")

    _ledger(pipeline, "DROP TRIGGER refuse_writes")  # the cause fixed
    page.goto(dlq)
    for box in page.locator("#dead-letters input[name=pos]").all():
        box.check()
    page.click("#redrive-selected")
    expect(page.locator("#to-send")).to_have_text("3", timeout=30_000)
    expect(page.locator("#plan tr.send")).to_have_count(3)
    screenshot(page, "dlq-redrive")
    _dry_run_then_confirm(page, 3)

    credits_topic = topic_for("credits", pipeline.prefix)
    until(lambda: _ledger(pipeline, "SELECT count(*) FROM credit_events")[0][0] == 2, "both events in the ledger",
          timeout=60)
    until(lambda: _caught_up(pipeline, f"{pipeline.prefix}.credits", credits_topic), "the worker caught up", 60)
    assert _ledger(pipeline, "SELECT balance FROM credit_events ORDER BY created_at_ms") == [(4998,), (4996,)]

    # the same dead letters again: already redriven, nothing is sent
    written = _records(pipeline, credits_topic)
    page.goto(dlq)
    expect(page.locator("#dead-letters td.redriven .ok")).to_have_count(3)
    for box in page.locator("#dead-letters input[name=pos]").all():
        box.check()
    page.click("#redrive-selected")
    expect(page.locator("#to-send")).to_have_text("0", timeout=30_000)
    expect(page.locator("#nothing-to-send")).to_be_visible()
    expect(page.locator("#plan")).to_contain_text("already redriven")
    assert _records(pipeline, credits_topic) == written == 6
    assert _ledger(pipeline, "SELECT count(*) FROM credit_events")[0][0] == 2


def test_a_webhook_body_the_receiver_refused_is_redriven_into_the_receiver(pipeline: Pipeline,
                                                                         console: ConsoleProcess,
                                                                         page: Page) -> None:
    from ingest.records import RecordBuilder
    from ingest.spool.frame import SpooledBody

    vin = "5YJ3REDRIVE" + uuid.uuid4().hex[:6].upper()
    body = orjson.dumps({"createdAt": _iso(NOW_MS - 60_000), "vin": vin, "data": {"Odometer": 4321.5}})
    # what the receiver dead-letters for a body its parser refused (e.g. spooled under older limits)
    rec = RecordBuilder(pipeline.prefix, None).raw_dead_letter(SpooledBody(NOW_MS, NOW_MS, body),
                                                               "body nested too deep", "BodyError")

    async def put() -> None:
        producer = make_producer(broker_settings(pipeline.kafka, pipeline.prefix))
        await producer.start()
        try:
            await producer.send_and_wait(rec.topic, rec.value, key=rec.key, headers=rec.headers,
                                         timestamp_ms=rec.timestamp_ms)
        finally:
            await producer.stop()

    run_async(put())
    dlq = f"{console.url}/dlq?error_type=BodyError"
    reload_until(page, dlq, "#dead-letters tr.dead-letter[data-kind=webhook_body]")
    page.check("#dead-letters input[name=pos]")
    page.check("input[name=target][value='receiver:0']")
    page.click("#redrive-selected")
    _dry_run_then_confirm(page, 1)

    [env] = parse_object(orjson.loads(body), received_at_ms=0)
    data = run_async(read_until_quiet(broker_settings(pipeline.kafka, pipeline.prefix),
                                        topic_for("data", pipeline.prefix), quiet_s=3.0, timeout=30))
    assert [dict(r.headers)["event_id"].decode() for r in data if r.key == vin.encode()] == [env.event_id]

    page.goto(dlq)
    page.check("#dead-letters input[name=pos]")
    page.check("input[name=target][value='receiver:0']")
    page.click("#redrive-selected")
    expect(page.locator("#to-send")).to_have_text("0", timeout=30_000)
    assert TOKEN not in (pipeline.tmp / "console.log").read_text()


def test_a_replay_to_a_file_writes_the_dry_runs_count(pipeline: Pipeline, console: ConsoleProcess,
                                                      page: Page) -> None:
    vin = "5YJ3REPLAY0" + uuid.uuid4().hex[:6].upper()
    bodies = [orjson.dumps({"createdAt": _iso(NOW_MS - 1_800_000 + i * 1000), "vin": vin,
                            "data": {"VehicleSpeed": 10.0 + i}}) for i in range(5)]
    for body in (*bodies, bodies[2]):  # one redelivered: a replay sends it once
        assert pipeline.post(body).status_code == 202
    data_topic = topic_for("data", pipeline.prefix)
    until(lambda: len([r for r in run_async(read_until_quiet(broker_settings(pipeline.kafka, pipeline.prefix),
                                                               data_topic, quiet_s=0.5, timeout=10))
                       if r.key == vin.encode()]) == 6, "the six records in Kafka", timeout=30)

    page.goto(console.url + "/replay")
    page.check("input[name=types][value=data]")
    page.fill("input[name=vins]", vin)
    page.fill("input[name=from]", "2h")
    page.check("input[name=target][value=file]")
    page.fill("input[name=file]", f"{vin}.jsonl")
    page.fill("input[name=rate]", "3")
    screenshot(page, "replay-form")
    page.click("#dry-run")
    expect(page.locator("#dry-count")).to_have_text("5", timeout=30_000)
    expect(page.locator("#ranges")).to_contain_text(data_topic)
    assert not (pipeline.tmp / "replays").exists()  # a dry run writes nothing
    screenshot(page, "replay")
    page.click("#send")
    seen = set()  # what the bar showed while the replay ran (three events a second: it takes ~1.5 s)
    deadline = time.monotonic() + 30
    while (state := page.get_attribute(".job-state", "data-state")) == "running":
        assert time.monotonic() < deadline, f"the page still says running; it showed {seen}"
        seen.add(int(page.get_attribute("#progress", "value") or 0))
        page.wait_for_timeout(100)  # the page refreshes its bar every half second by itself
    assert state == "done" and seen & {1, 2, 3, 4}, seen
    expect(page.locator("#sent-count")).to_have_text("5")
    expect(page.locator("#progress")).to_have_attribute("data-percent", "100")
    screenshot(page, "replay-sent")
    lines = (pipeline.tmp / "replays" / f"{vin}.jsonl").read_bytes().splitlines()
    assert sorted(orjson.loads(x)["event_id"] for x in lines) == sorted(
        parse_object(orjson.loads(b), received_at_ms=0)[0].event_id for b in bodies)
    with page.expect_download() as download:
        page.click("#download")
    assert Path(download.value.path()).read_bytes().splitlines() == lines


def test_changes_need_the_credential_and_the_csrf_token_and_files_stay_in_the_replay_dir(
    pipeline: Pipeline, console: ConsoleProcess, tmp_path: Path
) -> None:
    changes = ["/dlq/redrive", "/dlq/jobs/0123456789abcdef/run", "/replay/plan", "/replay/jobs/0123456789abcdef/run"]
    form = {"scope": "matching", "target": "file", "file": "x.jsonl", "types": "data"}
    guarded = Pipeline(tmp_path, pipeline.kafka, pipeline.prefix).console(
        "--console-replay-dir", str(tmp_path / "replays"), TPIPE_CONSOLE_PASSWORD=PASSWORD)
    try:
        with httpx.Client(base_url=guarded.url) as anonymous:
            for path in changes:
                assert anonymous.post(path, data=form).status_code == 403, path
        with httpx.Client(base_url=guarded.url, auth=("admin", PASSWORD)) as admin:
            assert admin.get("/replay").status_code == 200  # the CSRF cookie
            for path in changes:
                assert admin.post(path, data=form).status_code == 403, path  # no CSRF field
            assert "Recent" not in admin.get("/replay").text and "Recent" not in admin.get("/dlq").text
    finally:
        guarded.stop()
    assert not (tmp_path / "replays").exists()

    with httpx.Client(base_url=console.url) as client:
        client.get("/replay")
        for name in ("../escape.jsonl", "/tmp/escape.jsonl", ".hidden", "a/b.jsonl"):
            r = client.post("/replay/plan", data={**form, "file": name, "csrf": client.cookies["tpipe_csrf"]})
            assert r.status_code == 400 and "plain name" in r.text, (name, r.text[-500:])
        assert client.get("/replay/files/..%2Fconsole.log").status_code == 404
    assert not (pipeline.tmp / "escape.jsonl").exists() and not Path("/tmp/escape.jsonl").exists()
