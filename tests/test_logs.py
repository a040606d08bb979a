"""Secrets never reach a log line: tokens in headers or query strings, SASL passwords."""

from __future__ import annotations

import logging
from pathlib import Path

import httpx
import orjson
import pytest

from tests.processes import TOKEN, new_receiver
from tpipe.logs import JsonFormatter, RedactingFilter, redact, register_secret


def test_redact_covers_query_tokens_bearer_headers_and_passwords() -> None:
    assert "s3cret" not in redact("POST /webhook?token=s3cret&x=1 HTTP/1.1")
    assert "x=1" in redact("POST /webhook?token=s3cret&x=1")
    assert "abc.def" not in redact("Authorization: Bearer abc.def")
    assert "hunter2" not in redact("{'sasl_plain_password': 'hunter2', 'user': 'u'}")
    assert "hunter2" not in redact("password=hunter2")
    register_secret("literal-secret-value")
    assert "literal-secret-value" not in redact("connecting with literal-secret-value now")


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
