"""The console in tests: ``tpipe console`` as a subprocess (``ConsoleProcess``), a stack of real
processes behind it (``Pipeline``: receiver and workers on the test's broker, state in ``tmp``), and
Debian's chromium driven by Playwright (``browser``), with the screenshots written to ``docs/console/``."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import subprocess
import sys
import time
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx
from playwright.sync_api import Browser, Page, sync_playwright

from localbroker import free_port
from tests.support.paths import REPO
from tests.support.processes import TOKEN, ReceiverProcess, new_receiver, tpipe_env

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
SCREENSHOTS = REPO / "docs" / "console"
T = TypeVar("T")


@contextlib.contextmanager
def browser() -> Iterator[Browser]:
    """Debian's chromium (``make browser`` installs it), headless; fails when it is missing."""
    assert Path(CHROMIUM).exists(), f"{CHROMIUM} is missing: run `make browser` (Debian's chromium package)"
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


def reload_until(page: Page, url: str, selector: str, timeout: float = 30.0) -> None:
    """Open ``url`` again until ``selector`` is on it (the data is on its way through the pipeline)."""
    deadline = time.monotonic() + timeout
    while True:
        page.goto(url)
        if page.locator(selector).count():
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"{selector} not on {url} within {timeout}s:\n{page.inner_text('main')[:2000]}")
        page.wait_for_timeout(300)  # between reloads while the event travels


def until(condition: Callable[[], object], what: str, timeout: float = 15.0) -> None:
    """Poll ``condition`` (every 0.2 s) until it is truthy; fail after ``timeout`` seconds naming ``what``."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        time.sleep(0.2)  # poll interval


def run_async(coro: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run(coro)`` in a thread of its own: Playwright's sync API keeps an event loop running in
    the test's thread, where ``asyncio.run`` refuses to start another."""
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()


def screenshot(page: Page, name: str) -> Path:
    """A full-page PNG of ``page`` as ``docs/console/<name>.png`` (linked from the README)."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


@dataclass
class ConsoleProcess:
    """``tpipe console`` on a free port with ``flags``; its output in ``log_path``."""

    env: dict[str, str]
    flags: list[str]
    log_path: Path
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60.0) -> ConsoleProcess:
        cmd = [sys.executable, "-m", "tpipe.cli", "console", "--console-port", str(self.port), *self.flags]
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=self.env)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"console exited {self.proc.returncode}:\n{self.log_tail()}")
            try:
                if httpx.get(self.url + "/static/console.css", timeout=1).status_code in (200, 401):
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.05)  # readiness poll interval
        raise AssertionError(f"console not answering in {timeout}s:\n{self.log_tail()}")

    def log_tail(self, n: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except FileNotFoundError:
            return ""

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)


@dataclass
class Pipeline:
    """A receiver and, optionally, workers (``tpipe consume ...`` processes) on ``kafka`` with
    ``prefix``; the lake, databases and tokens file under ``tmp``."""

    tmp: Path
    kafka: str
    prefix: str
    receiver: ReceiverProcess | None = None
    workers: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    @property
    def state_env(self) -> dict[str, str]:
        """The ``TPIPE_*`` variables of the stores, as ``tpipe run`` sets them."""
        return {
            "TPIPE_KAFKA": self.kafka, "TPIPE_TOPIC_PREFIX": self.prefix,
            "TPIPE_CATALOG_URI": f"sqlite:///{self.tmp / 'lake' / 'catalog.db'}",
            "TPIPE_WAREHOUSE": str(self.tmp / "lake" / "warehouse"),
            "TPIPE_ALERTS_DB_URL": f"sqlite:///{self.tmp / 'alerts.db'}",
            "TPIPE_CREDITS_DB_URL": f"sqlite:///{self.tmp / 'credits.db'}",
            "TPIPE_TOKENS_FILE": str(self.tmp / "tokens.json"),
        }

    def start_receiver(self, *extra: str) -> ReceiverProcess:
        self.receiver = new_receiver(self.tmp, self.kafka, self.prefix, "--tokens-file",
                                     str(self.tmp / "tokens.json"), *extra).start()
        return self.receiver

    def start_worker(self, name: str, *extra: str) -> None:
        flags = ["--metrics-port", "0", "--batch-timeout-ms", "200"]
        if name == "telemetry":
            flags += ["--commit-interval-s", "0.5"]
        with open(self.tmp / f"{name}.log", "ab") as log:
            self.workers[name] = subprocess.Popen(
                [sys.executable, "-m", "tpipe.cli", "consume", name, *flags, *extra], stdout=log,
                stderr=subprocess.STDOUT, env=tpipe_env(**self.state_env))

    def console(self, *flags: str, **env: str) -> ConsoleProcess:
        receiver = [] if self.receiver is None else ["--receiver-url", self.receiver.ops_url]
        return ConsoleProcess(tpipe_env(**self.state_env, **env), [*receiver, *flags],
                              self.tmp / "console.log").start()

    def post(self, body: bytes | str, token: str = TOKEN) -> httpx.Response:
        assert self.receiver is not None
        return httpx.post(self.receiver.url + "/webhook", content=body, timeout=10,
                          headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})

    def stop(self) -> None:
        for p in self.workers.values():
            if p.poll() is None:
                p.terminate()
        for p in self.workers.values():
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
        if self.receiver is not None and self.receiver.proc is not None and self.receiver.proc.poll() is None:
            self.receiver.terminate()
