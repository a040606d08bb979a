"""Webhook tokens: ``tpipe token new|list|revoke`` and a real ``tpipe serve`` process picking changes up.

The CLI is run in-process through ``tpipe.cli.main``; the receiver is a real subprocess. Its Kafka
address is a closed port: in spool mode the receiver accepts (202) without a broker, so these tests
need no Kafka. Every wait polls with a deadline.
"""

from __future__ import annotations

import hashlib
import os
import re
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import orjson
import pytest

from ingest.tokens import MAX_ACTIVE_TOKENS, TokenEntry, TokensFile, digest
from localbroker import free_port
from tests.support.processes import event_body, tpipe_env, wait_healthy
from tpipe.cli import main as tpipe_main

TOKEN_RE = re.compile(r"^tp_[A-Za-z0-9_-]{20,}$")


# --------------------------------------------------------------------------------------------- CLI


def token_cli(capsys: pytest.CaptureFixture[str], tokens_file: Path, *argv: str) -> tuple[int, str, str]:
    """``tpipe token --tokens-file F <argv>`` in-process: (exit code, stdout, stderr)."""
    capsys.readouterr()  # drop earlier output
    rc = tpipe_main(["token", "--tokens-file", str(tokens_file), *argv])
    out, err = capsys.readouterr()
    return rc, out, err


def new_token(capsys: pytest.CaptureFixture[str], tokens_file: Path, label: str = "") -> tuple[str, str]:
    """Create a token with the CLI; returns (token, id)."""
    rc, out, err = token_cli(capsys, tokens_file, "new", "--label", label)
    assert rc == 0, err
    token = out.strip()
    m = re.search(r"id:\s+(\S+)", err)
    assert m, err
    return token, m.group(1)


def test_new_prints_the_token_once_and_the_file_holds_only_its_digest(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    f = tmp_path / "conf" / "tokens.json"
    rc, out, err = token_cli(capsys, f, "new", "--label", "teslemetry-prod")
    assert rc == 0, err
    # stdout is exactly the token (one line, scriptable); stderr carries the id and the advice
    assert out.count("\n") == 1
    token = out.strip()
    assert TOKEN_RE.match(token), out
    assert token not in err
    token_id = re.search(r"id:\s+(\S+)", err).group(1)  # type: ignore[union-attr]

    raw = f.read_bytes()
    text = raw.decode()
    assert token not in text
    assert token.removeprefix("tp_") not in text  # not even the random part
    data = orjson.loads(raw)
    assert [t["id"] for t in data["tokens"]] == [token_id]
    entry = data["tokens"][0]
    assert entry["digest"] == hashlib.sha256(token.encode()).hexdigest()
    assert entry["label"] == "teslemetry-prod" and entry["revoked_at"] is None
    assert set(entry) == {"id", "digest", "created_at", "label", "revoked_at"}  # nothing else stored
    assert stat.S_IMODE(f.stat().st_mode) == 0o600

    # a second token: both digests, still neither token in the file, and two different tokens
    token2, _ = new_token(capsys, f, "spare")
    assert token2 != token
    text = f.read_text()
    assert token not in text and token2 not in text
    assert {t["digest"] for t in orjson.loads(text)["tokens"]} == {digest(token).hex(), digest(token2).hex()}


def test_list_shows_ids_and_labels_never_tokens_and_revoke_marks_revoked(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    f = tmp_path / "tokens.json"
    rc, out, _ = token_cli(capsys, f, "list")  # no file yet: an empty table, not an error
    assert rc == 0 and out.strip().splitlines() == [out.strip().splitlines()[0]]

    tok_a, id_a = new_token(capsys, f, "alpha")
    tok_b, id_b = new_token(capsys, f, "beta")
    rc, out, err = token_cli(capsys, f, "list")
    assert rc == 0
    listing = out + err
    assert tok_a not in listing and tok_b not in listing
    assert digest(tok_a).hex() not in listing  # not the digest either
    rows = {line.split()[0]: line for line in out.splitlines()[1:]}
    assert set(rows) == {id_a, id_b}
    assert "active" in rows[id_a] and rows[id_a].rstrip().endswith("alpha")
    assert "active" in rows[id_b] and rows[id_b].rstrip().endswith("beta")

    rc, out, err = token_cli(capsys, f, "revoke", id_a)
    assert rc == 0, err
    assert id_a in out and tok_a not in out
    entries = {e.id: e for e in TokensFile(f).load()}
    assert entries[id_a].revoked_at is not None and not entries[id_a].active
    assert entries[id_b].active
    rc, out, _ = token_cli(capsys, f, "list")
    rows = {line.split()[0]: line for line in out.splitlines()[1:]}
    assert rows[id_a].split()[1] == "revoked" and rows[id_b].split()[1] == "active"
    assert entries[id_a].revoked_at in rows[id_a]

    # revoking again keeps the first revocation time; an unknown id is an error (exit 2)
    first = entries[id_a].revoked_at
    assert token_cli(capsys, f, "revoke", id_a)[0] == 0
    assert TokensFile(f).load()[0].revoked_at == first
    rc, out, err = token_cli(capsys, f, "revoke", "tok_nope")
    assert rc == 2 and "tok_nope" in err


def test_tokens_file_stays_0600_with_a_permissive_umask(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = tmp_path / "tokens.json"
    leftover = tmp_path / "tokens.json.tmp"  # an interrupted earlier write, readable by everyone
    leftover.write_text("{}")
    os.chmod(leftover, 0o666)
    old = os.umask(0o002)
    try:
        _, token_id = new_token(capsys, f, "a")
        assert stat.S_IMODE(f.stat().st_mode) == 0o600
        assert token_cli(capsys, f, "revoke", token_id)[0] == 0
        new_token(capsys, f, "b")
    finally:
        os.umask(old)
    assert stat.S_IMODE(f.stat().st_mode) == 0o600
    assert not leftover.exists()


def test_at_most_ten_active_tokens(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = tmp_path / "tokens.json"
    ids = [new_token(capsys, f, f"t{i}")[1] for i in range(MAX_ACTIVE_TOKENS)]
    before = f.read_bytes()
    rc, out, err = token_cli(capsys, f, "new", "--label", "eleventh")
    assert rc == 2
    assert out == ""  # no token printed
    assert "10 tokens are already active" in err and "revoke" in err
    assert f.read_bytes() == before  # nothing written

    assert token_cli(capsys, f, "revoke", ids[3])[0] == 0
    token, _ = new_token(capsys, f, "after-revoke")  # a revoked one frees a slot
    assert TOKEN_RE.match(token)
    entries = TokensFile(f).load()
    assert len(entries) == MAX_ACTIVE_TOKENS + 1 and sum(e.active for e in entries) == MAX_ACTIVE_TOKENS
    assert token_cli(capsys, f, "new")[0] == 2


def test_tokens_file_from_environment(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    f = tmp_path / "env-tokens.json"
    monkeypatch.setenv("TPIPE_TOKENS_FILE", str(f))
    capsys.readouterr()
    assert tpipe_main(["token", "new", "--label", "from-env"]) == 0
    token = capsys.readouterr().out.strip()
    assert [e.digest_hex for e in TokensFile(f).load()] == [digest(token).hex()]


# ------------------------------------------------------------------------------------- receiver


class Serve:
    """A real ``tpipe serve`` subprocess (Kafka unreachable: spool mode accepts anyway)."""

    def __init__(self, tmp: Path, *args: str, name: str = "receiver") -> None:
        self.port = free_port()
        self.log_path = tmp / f"{name}.log"
        self.cwd = tmp / f"{name}-cwd"  # no var/tokens.json default here
        self.cwd.mkdir(exist_ok=True)
        dead_kafka = f"127.0.0.1:{free_port()}"
        self.cmd = [
            sys.executable, "-m", "tpipe.cli", "serve", "--port", str(self.port), "--kafka", dead_kafka,
            "--spool-dir", str(tmp / f"{name}-spool"), "--drain-timeout-s", "1", *args,
        ]
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(self.cmd, stdout=self._log, stderr=subprocess.STDOUT, env=tpipe_env(),
                                     cwd=self.cwd)
        self.client = httpx.Client(base_url=f"http://127.0.0.1:{self.port}", timeout=5)
        self.seq = 0

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_ready(self, timeout: float = 60) -> Serve:
        wait_healthy(f"http://127.0.0.1:{self.port}/healthz", self.proc, lambda: self.log()[-3000:], timeout)
        return self

    def wait_exit(self, timeout: float = 60) -> int:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"receiver still running after {timeout}s:\n{self.log()[-3000:]}") from None

    def post(self, token: str) -> int:
        self.seq += 1
        r = self.client.post("/webhook", content=event_body(1, self.seq), headers={"Authorization": f"Bearer {token}"})
        return r.status_code

    def wait_status(self, token: str, status: int, timeout: float = 5.0, what: str = "") -> float:
        """Poll until a webhook with ``token`` gets ``status``; returns the seconds it took."""
        t0 = time.monotonic()
        last = None
        while time.monotonic() - t0 < timeout:
            last = self.post(token)
            if last == status:
                return time.monotonic() - t0
            time.sleep(0.05)  # poll interval
        raise AssertionError(f"{what or 'webhook'}: still {last}, not {status}, after {timeout}s\n{self.log()[-2000:]}")

    def close(self) -> None:
        self.client.close()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Callable[..., Serve]]:
    made: list[Serve] = []

    def start(*args: str, name: str = "receiver") -> Serve:
        s = Serve(tmp_path, *args, name=name)
        made.append(s)
        return s

    yield start
    for s in made:
        s.close()


def test_receiver_picks_up_new_and_revoked_tokens_without_restart(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], serve: Callable[..., Serve]
) -> None:
    f = tmp_path / "tokens.json"
    tok_a, id_a = new_token(capsys, f, "a")
    rx = serve("--tokens-file", str(f)).wait_ready()
    pid = rx.proc.pid
    assert rx.post(tok_a) == 202
    assert rx.post("tp_not-a-token") == 401

    tok_b, id_b = new_token(capsys, f, "b")  # created while the receiver runs
    took = rx.wait_status(tok_b, 202, timeout=5, what="new token via the file watcher")
    assert took < 5
    assert rx.post(tok_a) == 202  # the old one still works

    assert token_cli(capsys, f, "revoke", id_a)[0] == 0
    rx.wait_status(tok_a, 401, timeout=5, what="revoked token via the file watcher")
    assert rx.post(tok_b) == 202

    assert token_cli(capsys, f, "revoke", id_b)[0] == 0  # all revoked: nothing is accepted any more
    rx.wait_status(tok_b, 401, timeout=5, what="second revoked token")
    assert rx.proc.poll() is None and rx.proc.pid == pid  # never restarted
    log = rx.log()
    assert "tokens reloaded" in log
    assert tok_a not in log and tok_b not in log


def _swap_keeping_mtime(path: Path, change: Callable[[Path], None]) -> None:
    """Apply ``change`` to a copy of the tokens file, give the copy the original's mtime and atomically
    put it in place: the receiver's mtime watcher sees no change, only SIGHUP can reveal it."""
    st = path.stat()
    staging = path.with_name("staging-" + path.name)
    staging.write_bytes(path.read_bytes())
    change(staging)
    os.utime(staging, ns=(st.st_atime_ns, st.st_mtime_ns))
    os.replace(staging, path)
    assert path.stat().st_mtime_ns == st.st_mtime_ns


def test_sighup_reloads_the_tokens_file_immediately(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], serve: Callable[..., Serve]
) -> None:
    f = tmp_path / "tokens.json"
    tok_a, id_a = new_token(capsys, f, "a")
    # SIGHUP only: the file watcher is off, so nothing but the signal can reveal a change
    rx = serve("--tokens-file", str(f), "--tokens-watch-interval-s", "0").wait_ready()
    assert rx.post(tok_a) == 202

    box: dict[str, str] = {}

    def add(p: Path) -> None:
        box["token"], box["id"] = new_token(capsys, p, "hup")

    _swap_keeping_mtime(f, add)
    tok_b = box["token"]
    # Without a signal the change is not seen: still refused for 2.5 s (a watcher would have taken 1 s).
    end = time.monotonic() + 2.5
    while time.monotonic() < end:
        assert rx.post(tok_b) == 401, "the watcher reloaded a file whose mtime did not change"
        time.sleep(0.1)
    rx.proc.send_signal(signal.SIGHUP)
    took = rx.wait_status(tok_b, 202, timeout=2, what="new token after SIGHUP")
    assert took < 1.0  # immediately, not at some later watcher tick
    assert rx.post(tok_a) == 202

    _swap_keeping_mtime(f, lambda p: TokensFile(p).revoke(id_a) and None)
    assert rx.post(tok_a) == 202  # not yet: no mtime change, no signal
    rx.proc.send_signal(signal.SIGHUP)
    rx.wait_status(tok_a, 401, timeout=2, what="revoked token after SIGHUP")
    assert rx.post(tok_b) == 202
    assert rx.proc.poll() is None  # SIGHUP reloads, it does not stop the receiver


def test_bad_tokens_file_at_runtime_keeps_the_previous_tokens(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], serve: Callable[..., Serve]
) -> None:
    f = tmp_path / "tokens.json"
    tok_a, _ = new_token(capsys, f, "a")
    rx = serve("--tokens-file", str(f)).wait_ready()
    assert rx.post(tok_a) == 202
    # hand-edited to 11 active entries (one more than allowed): rejected, the old set stays in force
    _write_active_entries(f, MAX_ACTIVE_TOKENS + 1)
    deadline = time.monotonic() + 5
    while "tokens file rejected" not in rx.log():
        assert time.monotonic() < deadline, rx.log()[-2000:]
        time.sleep(0.05)  # poll the log
    assert rx.post(tok_a) == 202
    assert rx.proc.poll() is None


def _write_active_entries(f: Path, n: int) -> list[str]:
    tokens = [f"tp_handmade_{i:02d}_{os.urandom(6).hex()}" for i in range(n)]
    TokensFile(f).save(
        [TokenEntry(f"tok_{i:08x}", digest(t).hex(), "2026-01-01T00:00:00Z", f"h{i}") for i, t in enumerate(tokens)]
    )
    return tokens


def test_receiver_without_any_token_refuses_to_start(tmp_path: Path, serve: Callable[..., Serve]) -> None:
    rx = serve()  # no --token, no --tokens-file, no var/tokens.json in its working directory
    rc = rx.wait_exit()
    assert rc != 0
    assert "no webhook token configured" in rx.log()
    assert "tpipe token new" in rx.log()

    # a tokens file whose every token is revoked is no better
    f = tmp_path / "revoked.json"
    TokensFile(f).save([TokenEntry("tok_dead", digest("tp_x").hex(), "2026-01-01T00:00:00Z", "", "2026-01-02T00:00:00Z")])
    rx2 = serve("--tokens-file", str(f), name="revoked")
    assert rx2.wait_exit() != 0
    assert "no webhook token configured" in rx2.log()


def test_receiver_rejects_a_tokens_file_with_eleven_active_tokens(
    tmp_path: Path, serve: Callable[..., Serve]
) -> None:
    f = tmp_path / "tokens.json"
    _write_active_entries(f, MAX_ACTIVE_TOKENS + 1)
    rx = serve("--tokens-file", str(f))
    assert rx.wait_exit() != 0
    assert f"{MAX_ACTIVE_TOKENS + 1} active tokens configured; at most {MAX_ACTIVE_TOKENS}" in rx.log()

    # 10 in the file plus one on the command line is also 11
    _write_active_entries(f, MAX_ACTIVE_TOKENS)
    rx2 = serve("--tokens-file", str(f), "--token", "tp_cli_token_123456", name="plus-cli")
    assert rx2.wait_exit() != 0
    assert "at most 10 are allowed" in rx2.log()
    assert "tp_cli_token_123456" not in rx2.log()

    # exactly 10 starts
    rx3 = serve("--tokens-file", str(f), name="ten").wait_ready()
    assert rx3.proc.poll() is None
