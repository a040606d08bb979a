"""The console in a real headless Chromium against a real receiver, real workers (lake, alerts,
credits) and the session's broker: a posted webhook appears on Events with its journey, the Vehicle
chart shows the posted values, tokens are created and revoked from the page (and the receiver honours
both), every page is photographed into docs/console/."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import pytest
from playwright.sync_api import Browser, Page, expect

from tests.support.console import ConsoleProcess, Pipeline, reload_until, screenshot, until

pytestmark = [pytest.mark.kafka, pytest.mark.browser]

NOW_MS = int(time.time() * 1000)
VIN = "5YJ3CONS0LE" + uuid.uuid4().hex[:6].upper()
BATTERY = [81.5, 80.25, 79.0]
SPEEDS = [12.0, 48.5, 65.25]


def _iso(ms: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ms / 1000)) + f".{ms % 1000:03d}Z"


@pytest.fixture(scope="module")
def pipeline(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pipeline]:
    tmp = tmp_path_factory.mktemp("console")
    p = Pipeline(tmp, kafka_bootstrap, f"t{uuid.uuid4().hex[:8]}")
    try:
        p.start_receiver()
        for worker in ("telemetry", "alerts", "credits"):
            p.start_worker(worker)
        yield p
    finally:
        p.stop()


@pytest.fixture(scope="module")
def console(pipeline: Pipeline) -> Iterator[ConsoleProcess]:
    c = pipeline.console("--console-sample-s", "0.5", "--console-refresh-s", "1")
    try:
        yield c
    finally:
        c.stop()


def test_posted_webhook_appears_on_events_with_its_journey(pipeline: Pipeline, console: ConsoleProcess,
                                                           page: Page) -> None:
    body = {"createdAt": _iso(NOW_MS - 60_000), "vin": VIN, "data": {"VehicleSpeed": 34.8, "Gear": "ShiftStateD"}}
    assert pipeline.post(orjson.dumps(body)).status_code == 202
    posted = time.monotonic()
    reload_until(page, f"{console.url}/events?vin={VIN}&since=1h", "#kafka-events tr.event", timeout=20)
    assert time.monotonic() - posted < 20
    row = page.locator("#kafka-events tr.event").first
    expect(row).to_contain_text(VIN)
    expect(row).to_contain_text("data")
    # the lake half shows it once the telemetry worker has committed it
    reload_until(page, f"{console.url}/events?vin={VIN}&since=1h", "#lake-events tr.event", timeout=30)
    assert "read in" in page.inner_text("#lake-timing")
    screenshot(page, "events")
    page.locator("#kafka-events tr.event a").first.click()
    expect(page.locator("#journey li[data-step=kafka]")).to_contain_text(f"{pipeline.prefix}.data")
    expect(page.locator("#journey li[data-step=lake]")).to_have_attribute("data-state", "ok")
    expect(page.locator("#payload")).to_contain_text("34.8")
    expect(page.locator("#headers")).to_contain_text(VIN)
    screenshot(page, "event")


def test_vehicle_chart_shows_the_posted_values(pipeline: Pipeline, console: ConsoleProcess, page: Page) -> None:
    for i, (battery, speed) in enumerate(zip(BATTERY, SPEEDS, strict=True)):
        ms = NOW_MS - 3_600_000 + i * 600_000
        body = {"createdAt": _iso(ms), "vin": VIN, "data": {
            "BatteryLevel": battery, "VehicleSpeed": speed,
            "Location": {"latitude": 52.09 + i * 0.01, "longitude": 5.12 + i * 0.015}}}
        assert pipeline.post(orjson.dumps(body)).status_code == 202
    url = f"{console.url}/vehicle?vin={VIN}&since=2h&fields=BatteryLevel,VehicleSpeed"
    deadline = time.monotonic() + 45
    while True:
        page.goto(url)
        values = page.locator("svg[data-field=BatteryLevel] circle.point").evaluate_all(
            "els => els.map(e => Number(e.dataset.value))")
        if sorted(values) == sorted(BATTERY):
            break
        assert time.monotonic() < deadline, f"chart shows {values}, posted {BATTERY}"
        page.wait_for_timeout(300)  # the lake worker commits every half second
    speeds = page.locator("svg[data-field=VehicleSpeed] circle.point").evaluate_all(
        "els => els.map(e => Number(e.dataset.value))")
    assert set(SPEEDS) <= set(speeds)  # plus the first test's 34.8
    expect(page.locator("#latest tr[data-field=BatteryLevel]")).to_contain_text("79.0 %")
    assert int(page.locator("svg.route").get_attribute("data-points") or 0) == 3
    screenshot(page, "vehicle")


def test_alerts_and_credits_pages_show_what_the_workers_stored(pipeline: Pipeline, console: ConsoleProcess,
                                                              page: Page) -> None:
    alert = {"createdAt": _iso(NOW_MS - 120_000), "vin": VIN, "alerts": [
        {"name": "APP_w009_aebFault", "audiences": ["Customer"], "startedAt": _iso(NOW_MS - 130_000),
         "description": "AEB unavailable", "customerFacingMessage1": "AEB unavailable"}]}
    assert pipeline.post(orjson.dumps(alert)).status_code == 202
    for i, (cost, balance) in enumerate(((20, 1980), (5, 1975), (40, 1935))):
        credit = {"createdAt": _iso(NOW_MS - 86_400_000 * (2 - i)), "credits": {
            "type": "wake_up" if cost == 20 else "command", "cost": cost, "name": "x", "balance": balance}}
        assert pipeline.post(orjson.dumps(credit)).status_code == 202
    reload_until(page, f"{console.url}/alerts?vin={VIN}", "#active td:has-text('APP_w009_aebFault')")
    screenshot(page, "alerts")
    reload_until(page, f"{console.url}/credits", "#balance:has-text('1935')")
    expect(page.locator("svg.bars rect.bar")).to_have_count(14)
    screenshot(page, "credits")


def test_token_create_and_revoke_round_trip(pipeline: Pipeline, console: ConsoleProcess, page: Page) -> None:
    page.goto(console.url + "/tokens")
    page.fill("input[name=label]", "from-the-console")
    page.click("#create-token")
    token = page.inner_text("#new-token").strip()
    token_id = page.locator("#created code").first.inner_text()
    assert token.startswith("tp_") and token_id.startswith("tok_")
    expect(page.locator(f"#tokens tr[data-id={token_id}]")).to_have_class("active")
    screenshot(page, "tokens")
    until(lambda: pipeline.post(b'{"vin": "X", "data": {}}', token=token).status_code == 202,
           "the receiver accepts the new token")
    page.goto(console.url + "/tokens")
    page.locator(f"#tokens tr[data-id={token_id}] button").click()
    expect(page.locator(f"#tokens tr[data-id={token_id}]")).to_have_class("revoked")
    until(lambda: pipeline.post(b'{"vin": "X", "data": {}}', token=token).status_code == 401,
           "the receiver refuses the revoked token")
    assert token not in (pipeline.tmp / "console.log").read_text()  # shown once, never logged
    assert token_id in (pipeline.tmp / "console.log").read_text()  # the change is logged with its id


def test_the_limit_of_ten_tokens_is_the_same_as_tpipe_tokens(pipeline: Pipeline, console: ConsoleProcess,
                                                             page: Page) -> None:
    tokens = orjson.loads((pipeline.tmp / "tokens.json").read_bytes())["tokens"]
    active = sum(t["revoked_at"] is None for t in tokens)
    page.goto(console.url + "/tokens")
    for _ in range(10 - active):
        page.click("#create-token")
        expect(page.locator("#new-token")).to_be_visible()
    page.click("#create-token")
    expect(page.locator("#token-error")).to_contain_text("10 tokens are already active; revoke one first")
    assert sum(t["revoked_at"] is None for t in orjson.loads((pipeline.tmp / "tokens.json").read_bytes())["tokens"]) == 10


def test_a_mutating_request_without_the_csrf_token_gets_403(pipeline: Pipeline, console: ConsoleProcess) -> None:
    before = (pipeline.tmp / "tokens.json").read_bytes() if (pipeline.tmp / "tokens.json").exists() else b""
    with httpx.Client(base_url=console.url) as client:
        assert client.post("/tokens/new", data={"label": "x"}).status_code == 403  # no cookie, no field
        client.get("/tokens")  # now the client has the cookie, but the form has no token
        assert client.post("/tokens/new", data={"label": "x"}).status_code == 403
        assert client.post("/tokens/new", data={"label": "x", "csrf": "forged" * 8}).status_code == 403
        cross = client.post("/tokens/new", data={"label": "x", "csrf": client.cookies["tpipe_csrf"]},
                            headers={"Origin": "http://evil.example"})
        assert cross.status_code == 403
    after = (pipeline.tmp / "tokens.json").read_bytes() if (pipeline.tmp / "tokens.json").exists() else b""
    assert after == before


def test_pages_say_where_a_missing_store_should_be_and_create_nothing(kafka_bootstrap: str, tmp_path: Path,
                                                                      chromium: Browser) -> None:
    p = Pipeline(tmp_path, kafka_bootstrap, f"t{uuid.uuid4().hex[:8]}")
    c = p.console("--worker-group", "telemetry")
    try:
        with httpx.Client(base_url=c.url) as client:
            for path, text in (("/vehicle?vin=X", f"no lake catalog at {tmp_path / 'lake' / 'catalog.db'}"),
                               ("/events?source=lake", f"no lake catalog at {tmp_path / 'lake' / 'catalog.db'}"),
                               ("/alerts", f"no alerts database at {tmp_path / 'alerts.db'}"),
                               ("/credits", f"no credits database at {tmp_path / 'credits.db'}")):
                r = client.get(path)
                assert r.status_code == 200 and text in r.text, (path, r.text[-2000:])
    finally:
        c.stop()
    assert sorted(x.name for x in tmp_path.iterdir()) == ["console.log"]
