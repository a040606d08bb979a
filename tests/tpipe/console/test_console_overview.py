"""The Overview's verdict follows the broker: a broker of the test's own, a receiver on it, the
console sampling every half second and the page refreshing itself (no reload by the test). Stopping
the broker turns the verdict red within seconds; restarting it brings it back. Also the admin
credential: pages need it, a change without it gets 403."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect

from localbroker import LocalBroker
from tests.support.console import Pipeline, screenshot

pytestmark = [pytest.mark.kafka, pytest.mark.browser, pytest.mark.fault]


def _event(vin: str, speed: int) -> str:
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    return f'{{"createdAt": "{now}", "vin": "{vin}", "data": {{"VehicleSpeed": {speed}}}}}'


def _level_becomes(page: Page, want: Callable[[str], bool], what: str, timeout: float) -> tuple[str, float]:
    started = time.monotonic()
    while True:
        level = page.get_attribute(".verdict", "data-level") or ""
        if want(level):
            return level, time.monotonic() - started
        assert time.monotonic() - started < timeout, f"verdict still {level!r} after {timeout}s, wanted {what}: " \
                                                      f"{page.inner_text('.verdict')}"
        page.wait_for_timeout(200)  # the page refreshes itself every second


def test_stopping_the_broker_turns_the_verdict_red_and_a_restart_back(
    local_broker_factory: Callable[..., LocalBroker], tmp_path: Path, chromium: Browser
) -> None:
    broker = local_broker_factory().start()
    p = Pipeline(tmp_path, broker.bootstrap, f"t{uuid.uuid4().hex[:8]}")
    p.start_receiver()
    console = p.console("--console-sample-s", "0.5", "--console-refresh-s", "1", TPIPE_WORKER_GROUP="[]")
    page = chromium.new_page(viewport={"width": 1280, "height": 900})
    try:
        for i in range(3):
            assert p.post(_event(f"5YJ3OVERVIEW0000{i}", i)).status_code == 202
        page.goto(console.url + "/")
        _level_becomes(page, lambda lv: lv == "green", "green", 30)
        assert "all events reach Kafka within 2 s" in page.inner_text(".verdict")
        screenshot(page, "overview")
        broker.stop()
        for i in range(3):  # the sender keeps getting 202: the spool holds the events
            assert p.post(_event(f"5YJ3OVERVIEW0001{i}", i)).status_code == 202
        _, took = _level_becomes(page, lambda lv: lv == "red", "red", 15)
        assert "Kafka" in page.inner_text(".verdict")  # the console's own probe or the receiver's, first wins
        print(f"verdict red {took:.1f} s after the broker stopped: {page.inner_text('.verdict')}")
        expect(page.locator("#overview")).to_contain_text("Kafka unreachable since", timeout=15_000)
        screenshot(page, "overview-broker-down")
        broker.start()
        _, took = _level_becomes(page, lambda lv: lv != "red", "not red", 60)
        print(f"verdict back ({page.get_attribute('.verdict', 'data-level')}) {took:.1f} s after the restart")
        assert p.receiver is not None
        _level_becomes(page, lambda lv: lv == "green", "green once the spool drained", 60)
    finally:
        page.close()
        console.stop()
        p.stop()


def test_with_a_password_every_page_needs_it_and_a_change_without_it_gets_403(
    kafka_bootstrap: str, tmp_path: Path, chromium: Browser
) -> None:
    p = Pipeline(tmp_path, kafka_bootstrap, f"t{uuid.uuid4().hex[:8]}")
    secret = "console-" + uuid.uuid4().hex
    console = p.console(TPIPE_CONSOLE_PASSWORD=secret)
    try:
        with httpx.Client(base_url=console.url) as anon:
            for path in ("/", "/events", "/vehicle", "/alerts", "/credits", "/tokens", "/static/console.css"):
                r = anon.get(path)
                assert r.status_code == 401 and r.headers["www-authenticate"].startswith("Basic"), path
            assert anon.post("/tokens/new", data={"label": "x"}).status_code == 403
        with httpx.Client(base_url=console.url, auth=("admin", "wrong-password")) as wrong:
            assert wrong.get("/tokens").status_code == 401
        context = chromium.new_context(http_credentials={"username": "admin", "password": secret})
        page = context.new_page()
        page.goto(console.url + "/tokens")
        page.click("#create-token")
        assert page.inner_text("#new-token").startswith("tp_")
        context.close()
        log = (tmp_path / "console.log").read_text()
        assert '"who":"admin"' in log and '"action":"token created"' in log
        assert secret not in log
    finally:
        console.stop()


def test_listening_beyond_loopback_without_a_password_is_refused(tmp_path: Path) -> None:
    import subprocess
    import sys

    from tests.support.processes import tpipe_env

    r = subprocess.run([sys.executable, "-m", "tpipe.cli", "console", "--console-host", "0.0.0.0"],
                       capture_output=True, text=True, env=tpipe_env(), timeout=60)
    assert r.returncode == 2
    assert r.stderr.strip().splitlines()[-1] == (
        "tpipe console: error: listening on 0.0.0.0 needs --console-password (TPIPE_CONSOLE_PASSWORD)")
