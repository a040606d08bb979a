"""Secrets never reach a log line: tokens in headers or query strings, SASL passwords."""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import httpx
import orjson
import pytest

from ingest.tokens import TokensFile, TokenStore
from plumbing.logs import JsonFormatter, RedactingFilter, redact, register_secret
from tests.support.processes import TOKEN, new_receiver, tpipe_env


def test_redact_covers_query_tokens_bearer_headers_and_passwords() -> None:
    assert "s3cret" not in redact("POST /webhook?token=s3cret&x=1 HTTP/1.1")
    assert "x=1" in redact("POST /webhook?token=s3cret&x=1")
    assert "abc.def" not in redact("Authorization: Bearer abc.def")
    assert "hunter2" not in redact("{'sasl_plain_password': 'hunter2', 'user': 'u'}")
    assert "hunter2" not in redact("password=hunter2")
    register_secret("literal-secret-value")
    assert "literal-secret-value" not in redact("connecting with literal-secret-value now")


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        ("token=s3cr3t-a&x=1", "s3cr3t-a"),  # a query string logged without its '?'
        ("token=s3cr3t-b", "s3cr3t-b"),  # the whole string
        ("x=1&token=s3cr3t-c", "s3cr3t-c"),
        ("GET /webhook?token=s3cr3t-d HTTP/1.1", "s3cr3t-d"),
        ("access_token=s3cr3t-e&x=1", "s3cr3t-e"),
        ("POST /cb?x=1&access_token=s3cr3t-f", "s3cr3t-f"),
        ("refresh_token=s3cr3t-g", "s3cr3t-g"),
        ("Token=s3cr3t-h", "s3cr3t-h"),  # any case
        ('{"query": "token=s3cr3t-i"}', "s3cr3t-i"),  # inside rendered JSON
        ("query='token=s3cr3t-j'", "s3cr3t-j"),
        ("url http://127.0.0.1:9/webhook?token=s3cr3t-k#top", "s3cr3t-k"),
        ("next=http%3A%2F%2Fh%2Fwebhook%3Ftoken%3Ds3cr3t-l%26x%3D1", "s3cr3t-l"),  # URL-encoded in a URL
        ("{'token': 's3cr3t-m', 'n': 1}", "s3cr3t-m"),  # a rendered dict
        ('{"access_token": "s3cr3t-n"}', "s3cr3t-n"),
    ],
)
def test_redact_removes_query_tokens_wherever_they_start(text: str, secret: str) -> None:
    out = redact(text)
    assert secret not in out, out
    assert "***" in out


def test_redact_keeps_what_is_not_a_token_value() -> None:
    assert redact("token=s3cr3t&x=1&y=two") == "token=***&x=1&y=two"  # the other parameters stay
    assert redact("mytoken=abc12345") == "mytoken=abc12345"  # not a token key: a word goes before it
    assert redact("tokens=3 active_tokens=4") == "tokens=3 active_tokens=4"
    assert redact("token=&x=1") == "token=&x=1"  # nothing to hide
    assert redact("tokens reloaded") == "tokens reloaded"
    assert redact("a/b/c.seg") == "a/b/c.seg"


def test_literal_secrets_longest_first_and_secret_extra_fields() -> None:
    register_secret("abcd-literal")
    register_secret("abcd-literal-and-more")
    assert redact("x abcd-literal-and-more y") == "x *** y"  # not "*** -and-more"
    register_secret("abc")  # too short to register: it would redact ordinary words
    assert redact("abc") == "abc"
    rec = logging.LogRecord("t", logging.INFO, __file__, 1, "loaded", None, None)
    rec.token = "opaque-value-1"  # a field named as a secret: its whole value goes
    rec.webhook_secret = "opaque-value-2"
    rec.active_tokens = 3  # a count, not a secret
    data = orjson.loads(JsonFormatter().format(rec))
    assert (data["token"], data["webhook_secret"], data["active_tokens"]) == ("***", "***", 3)


def test_a_token_from_the_tokens_file_is_redacted_once_accepted(tmp_path: Path) -> None:
    token, _ = TokensFile(tmp_path / "tokens.json").new("file")
    store = TokenStore([], tmp_path / "tokens.json")
    assert redact(f"body mentions {token}") == f"body mentions {token}"  # only a digest is known so far
    assert not store.check(token + "x")
    assert store.check(token)
    assert redact(f"body mentions {token}") == "body mentions ***"


def test_json_lines_carry_extras_and_redact_them() -> None:
    rec = logging.LogRecord("t", logging.INFO, __file__, 1, "GET %s", ("/webhook?token=zzz999",), None)
    rec.request = {"headers": {"authorization": "Bearer zzz999"}}
    line = JsonFormatter().format(rec)
    data = orjson.loads(line)
    assert data["level"] == "info" and data["logger"] == "t"
    assert "zzz999" not in line


def test_filter_redacts_records_for_handlers_we_do_not_own(caplog: pytest.LogCaptureFixture) -> None:
    lg = logging.getLogger("tpipe.test.filter")
    caplog.handler.addFilter(RedactingFilter())
    with caplog.at_level(logging.INFO):
        lg.info("url was %s", "https://x/webhook?token=leaky-token-1")
    assert "leaky-token-1" not in caplog.text


@pytest.mark.kafka
def test_receiver_logs_never_contain_the_token(kafka_bootstrap: str, tmp_path: Path, topic_prefix: str) -> None:
    rx = new_receiver(tmp_path, kafka_bootstrap, topic_prefix, "--log-requests").start()
    body = b'{"createdAt":"2025-01-01T00:00:00Z","vin":"V1","state":"online"}'
    wrong = "wrong-token-7d1e0c"
    with httpx.Client(timeout=10) as client:
        first = client.post(f"{rx.url}/webhook?token={TOKEN}", content=body)
        assert first.status_code == 202
        assert client.post(f"{rx.url}/webhook", content=body, headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 202
        assert client.post(f"{rx.url}/webhook?token={wrong}", content=body).status_code == 401
        assert client.post(f"{rx.url}/webhook?x=1&token={TOKEN}", content=b"{bad").status_code == 400
    assert rx.terminate() == 0
    text = rx.log_path.read_text()
    assert '"msg":"accepted"' in text, "the request log line was written"
    spooled = [orjson.loads(x) for x in text.splitlines() if '"msg":"spooled"' in x]
    assert sum(line["requests"] for line in spooled) == 2, "the commit summary counts the two stored requests"
    assert first.json() == {"status": "accepted", "durability": "spool"}
    assert TOKEN not in text and wrong not in text
    for line in text.splitlines():
        orjson.loads(line)  # every line is one JSON object


def _token_new(tokens_file: Path) -> str:
    """``tpipe token new`` as a real process: the token it prints on stdout."""
    res = subprocess.run([sys.executable, "-m", "tpipe.cli", "token", "--tokens-file", str(tokens_file), "new",
                          "--label", "e2e"], capture_output=True, text=True, env=tpipe_env(), timeout=60, check=False)
    assert res.returncode == 0, res.stderr
    return res.stdout.strip()


@pytest.mark.kafka
def test_query_tokens_from_flag_and_tokens_file_never_reach_the_request_log(
    kafka_bootstrap: str, tmp_path: Path, topic_prefix: str
) -> None:
    tokens_file = tmp_path / "tokens.json"
    file_token = _token_new(tokens_file)
    assert file_token and file_token not in tokens_file.read_text()
    rx = new_receiver(tmp_path, kafka_bootstrap, topic_prefix, "--log-requests", "--tokens-file", str(tokens_file)).start()
    body = b'{"createdAt":"2025-01-01T00:00:00Z","vin":"V1","state":"online"}'
    with httpx.Client(timeout=10) as client:
        # query strings that start with the token: logged as "token=...", without their '?'
        for query in (f"token={TOKEN}", f"token={file_token}", f"token={file_token}&x=1",
                      f"x=1&token={file_token}"):
            r = client.post(f"{rx.url}/webhook?{query}", content=body)
            assert r.status_code == 202, (query, r.text)
        r = client.post(f"{rx.url}/webhook", content=body, headers={"Authorization": f"Bearer {file_token}"})
        assert r.status_code == 202
    assert rx.terminate() == 0
    text = rx.log_path.read_text()
    accepted = [orjson.loads(x) for x in text.splitlines() if '"msg":"accepted"' in x]
    assert len(accepted) == 5, text[-3000:]  # every request was logged, with its query string
    assert accepted[0]["query"] == "token=***" and accepted[2]["query"] == "token=***&x=1"
    assert TOKEN not in text
    assert file_token not in text
    assert file_token.removeprefix("tp_") not in text
