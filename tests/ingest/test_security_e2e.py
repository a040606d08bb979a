"""Kafka security end to end: the receiver, a worker and replay as real processes against a real broker
with a SASL listener (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512), configured only through ``TPIPE_*``
environment variables; secrets never reach their logs; a wrong password loses nothing.

TLS: a second local broker gets SSL (mutual TLS) and SASL_SSL listeners through ``LocalBroker``'s
``overrides`` (PEM key/trust stores from certificates made with the ``openssl`` CLI), and tpipe's
clients, built by ``plumbing.kafka_clients``, produce and consume over both.
"""

from __future__ import annotations

import asyncio
import signal
import ssl
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from consumers.credits.store import CreditStore
from consumers.credits.store import parse_event as parse_credit
from consumers.sqlstore import make_engine
from localbroker import LocalBroker, free_port
from plumbing.kafka_clients import common_config, make_consumer, make_producer
from plumbing.settings import KafkaSettings, SaslMechanism
from schemas.envelope import Envelope
from schemas.topics import notifications_topic, topic_for
from tests.support.events import envelopes
from tests.support.kafka_broker import produce_envelopes, read_all, read_until_quiet
from tests.support.processes import event_body, tpipe_env, wait_healthy
from tests.support.receiver_harness import events_of
from tests.support.samples.credits import START, credit_events
from tests.support.waiting import wait_until

WEBHOOK_TOKEN = "tp_e2e-webhook-token-7c41d0a9"


def sasl_env(broker: LocalBroker, mechanism: SaslMechanism, prefix: str, password: str | None = None) -> dict[str, str]:
    return {
        "TPIPE_KAFKA": broker.sasl_bootstrap,
        "TPIPE_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
        "TPIPE_KAFKA_SASL_MECHANISM": mechanism,
        "TPIPE_KAFKA_SASL_USERNAME": broker.username,
        "TPIPE_KAFKA_SASL_PASSWORD": broker.password if password is None else password,
        "TPIPE_TOPIC_PREFIX": prefix,
    }


def sasl_settings(broker: LocalBroker, mechanism: SaslMechanism, prefix: str) -> KafkaSettings:
    return broker.client_settings(mechanism, topic_prefix=prefix, topic_partitions=3)


class Proc:
    """A ``tpipe`` subprocess with separate stdout/stderr capture files."""

    def __init__(self, tmp: Path, name: str, argv: list[str], env: dict[str, str]) -> None:
        self.out_path, self.err_path = tmp / f"{name}.stdout", tmp / f"{name}.stderr"
        self._out, self._err = open(self.out_path, "ab"), open(self.err_path, "ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "tpipe.cli", *argv], stdout=self._out,
                                     stderr=self._err, env=tpipe_env(**env), cwd=tmp)

    def output(self) -> str:
        return self.out_path.read_text(errors="replace") + self.err_path.read_text(errors="replace")

    def check_alive(self) -> None:
        if self.proc.poll() is not None:
            pytest.fail(f"process exited {self.proc.returncode}:\n{self.output()[-4000:]}")

    def terminate(self, timeout: float = 60) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._out.close()
        self._err.close()
        return self.proc.returncode


class Receiver(Proc):
    def __init__(self, tmp: Path, name: str, kafka_env: dict[str, str], spool: Path) -> None:
        self.port = free_port()
        self.prefix = kafka_env["TPIPE_TOPIC_PREFIX"]
        env = {
            **kafka_env,
            "TPIPE_PORT": str(self.port),
            "TPIPE_SPOOL_DIR": str(spool),
            "TPIPE_TOKEN": orjson.dumps([WEBHOOK_TOKEN]).decode(),
            "TPIPE_LOG_REQUESTS": "true",
            "TPIPE_DRAIN_TIMEOUT_S": "3",
            "TPIPE_BROKER_TIMEOUT_S": "5",
        }
        super().__init__(tmp, name, ["--log-level", "DEBUG", "serve"], env)  # no Kafka flag at all
        self.client = httpx.Client(base_url=f"http://127.0.0.1:{self.port}", timeout=10)

    def wait_ready(self, timeout: float = 60) -> Receiver:
        wait_healthy(f"http://127.0.0.1:{self.port}/healthz", self.proc, lambda: self.output()[-4000:], timeout)
        return self

    def post_events(self, n: int, worker: int = 7) -> list[dict[str, str]]:
        accepted: list[dict[str, str]] = []
        for seq in range(n):
            body = event_body(worker, seq)
            r = self.client.post("/webhook", content=body, headers={"Authorization": f"Bearer {WEBHOOK_TOKEN}"})
            assert r.status_code == 202, (r.status_code, r.text)
            accepted.extend(events_of(body, self.prefix))
        return accepted

    def health(self) -> dict[str, Any]:
        return self.client.get("/healthz").json()  # type: ignore[no-any-return]

    def wait_health(self, pred: Callable[[dict[str, Any]], bool], what: str, timeout: float = 60) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            self.check_alive()
            h = self.health()
            if pred(h):
                return h
            if time.monotonic() > deadline:
                pytest.fail(f"{what}: not within {timeout}s; last /healthz {h}\n{self.output()[-3000:]}")
            time.sleep(0.1)  # poll interval

    def terminate(self, timeout: float = 60) -> int:
        self.client.close()
        return super().terminate(timeout)


def assert_no_secret(text: str, *secrets: str) -> None:
    for s in secrets:
        assert s not in text, f"secret {s[:3]}… leaked into the log"


# ------------------------------------------------------------------------------ (a) the receiver


@pytest.mark.kafka
async def test_receiver_env_only_scram512_forwards_and_never_logs_the_password(
    sasl_broker: LocalBroker, tmp_path: Path, topic_prefix: str
) -> None:
    env = sasl_env(sasl_broker, "SCRAM-SHA-512", topic_prefix)
    rx = Receiver(tmp_path, "receiver", env, tmp_path / "spool").wait_ready()
    try:
        accepted = rx.post_events(6)
        h = await asyncio.to_thread(
            rx.wait_health, lambda h: h["spool"]["pending_events"] == 0 and h["broker"]["up"], "spool drained"
        )
        assert h["broker"]["last_error"] is None
    finally:
        rc = rx.terminate()
    assert rc == 0, rx.output()[-3000:]

    topic = topic_for("data", topic_prefix)
    assert {a["topic"] for a in accepted} == {topic}
    # read back over SASL with another mechanism than the receiver used
    records = await read_all(sasl_settings(sasl_broker, "SCRAM-SHA-256", topic_prefix), topic, expected_count=6)
    assert sorted(Envelope.from_json(r.value).event_id for r in records) == sorted(a["event_id"] for a in accepted)
    assert all(dict(r.headers)["event_type"] == b"data" for r in records)

    out = rx.output()
    # It ran with --log-level DEBUG and TPIPE_LOG_REQUESTS (one line per request). Note: nothing on this
    # path logs at debug level today (aiokafka is pinned to WARNING by plumbing.logs.configure_logging).
    assert "receiver ready" in out and '"accepted"' in out
    assert_no_secret(out, sasl_broker.password, WEBHOOK_TOKEN)


@pytest.mark.kafka
async def test_wrong_password_spools_then_right_password_delivers_everything(
    sasl_broker: LocalBroker, tmp_path: Path, topic_prefix: str
) -> None:
    spool = tmp_path / "spool"
    wrong = "wrong-" + uuid.uuid4().hex[:12]
    rx = Receiver(tmp_path, "wrong", sasl_env(sasl_broker, "SCRAM-SHA-512", topic_prefix, password=wrong), spool)
    rx.wait_ready()
    try:
        accepted = rx.post_events(5)
        accepted += rx.post_events(3, worker=8)  # keeps accepting while the broker refuses us
        h = await asyncio.to_thread(rx.wait_health, lambda h: h["broker"]["last_error"] is not None,
                                    "a failed forward attempt")
        assert h["broker"]["up"] is False
        assert h["spool"]["pending_events"] == 8
        assert rx.client.get("/readyz").status_code == 200  # spool mode: still ready to accept
        accepted += rx.post_events(1, worker=9)  # and still accepts
    finally:
        rx.terminate()
    out = rx.output()
    assert "SaslAuthenticationFailed" in out  # the operator can tell why
    assert_no_secret(out, wrong, WEBHOOK_TOKEN)

    # fixed: the same spool dir, the right password
    rx2 = Receiver(tmp_path, "right", sasl_env(sasl_broker, "SCRAM-SHA-512", topic_prefix), spool).wait_ready()
    try:
        await asyncio.to_thread(rx2.wait_health, lambda h: h["spool"]["pending_events"] == 0 and h["broker"]["up"],
                                "spool forwarded after the fix")
    finally:
        assert rx2.terminate() == 0, rx2.output()[-3000:]
    assert_no_secret(rx2.output(), sasl_broker.password, WEBHOOK_TOKEN)

    topic = topic_for("data", topic_prefix)
    records = await read_until_quiet(sasl_settings(sasl_broker, "PLAIN", topic_prefix), topic, quiet_s=1.0,
                                     min_count=9)
    got = {Envelope.from_json(r.value).event_id for r in records}
    expected = {a["event_id"] for a in accepted}
    assert len(expected) == 9
    assert got == expected  # nothing lost (duplicates allowed by at-least-once, none foreign)


# ------------------------------------------------------------------------------- (b) a worker


@pytest.mark.kafka
async def test_credits_worker_process_consumes_and_notifies_over_scram256(
    sasl_broker: LocalBroker, tmp_path: Path, topic_prefix: str
) -> None:
    producer_settings = sasl_settings(sasl_broker, "SCRAM-SHA-512", topic_prefix)
    events = envelopes(credit_events(start_ms=START, days=1, per_day=12, balance=60, seed=2))  # ends < 50
    await produce_envelopes(producer_settings, events)
    db = f"sqlite:///{tmp_path}/credits.db"
    env = {
        **sasl_env(sasl_broker, "SCRAM-SHA-256", topic_prefix),
        "TPIPE_CREDITS_DB_URL": db,
        "TPIPE_LOW_BALANCE": "50",
        "TPIPE_METRICS_PORT": "0",
        "TPIPE_BATCH_TIMEOUT_MS": "200",
        "TPIPE_LOG_LEVEL": "DEBUG",
    }
    worker = Proc(tmp_path, "credits", ["consume", "credits"], env)
    store = CreditStore(make_engine(db))

    def done() -> bool:
        worker.check_alive()
        try:
            return store.totals()["events"] == len(events) and store.outbox.counts(store.engine)["pending"] == 0
        except Exception:  # tables not created yet
            return False

    try:
        await wait_until(done, "the credits worker to fill the ledger over SASL", timeout=90, in_thread=True)
    finally:
        rc = worker.terminate()
    assert rc == 0, worker.output()[-3000:]
    assert store.totals()["cost"] == sum(parse_credit(e).cost for e in events)
    # its effect in Kafka: the low-balance notification, produced over SASL
    notes = await read_until_quiet(producer_settings, notifications_topic(topic_prefix), quiet_s=1.0, min_count=1)
    assert len(notes) == 1 and orjson.loads(notes[0].value)["kind"] == "low_balance"
    assert_no_secret(worker.output(), sasl_broker.password)
    store.engine.dispose()


# ------------------------------------------------------------------------------- (c) replay


@pytest.mark.kafka
async def test_replay_to_file_over_sasl_plain(sasl_broker: LocalBroker, tmp_path: Path, topic_prefix: str) -> None:
    events = envelopes(credit_events(start_ms=START, days=2, per_day=10, balance=900, seed=5))
    await produce_envelopes(sasl_settings(sasl_broker, "SCRAM-SHA-256", topic_prefix), events)
    out = tmp_path / "replayed.jsonl"
    proc = Proc(tmp_path, "replay", ["replay", "--types", "credits", "--to-file", str(out)],
                sasl_env(sasl_broker, "PLAIN", topic_prefix))
    try:
        rc = await asyncio.to_thread(proc.proc.wait, 120)
    finally:
        proc.terminate()
    assert rc == 0, proc.output()[-3000:]
    got = [Envelope.from_json(line) for line in out.read_bytes().splitlines()]
    assert sorted(e.event_id for e in got) == sorted(e.event_id for e in events)
    assert f"replayed {len(events)} events" in proc.output()
    assert_no_secret(proc.output(), sasl_broker.password)

    # the same command with a wrong password fails with a message, and does not print the password
    bad = "bad-" + uuid.uuid4().hex[:10]
    proc2 = Proc(tmp_path, "replay-bad", ["replay", "--types", "credits", "--to-file", str(tmp_path / "x.jsonl")],
                 {**sasl_env(sasl_broker, "PLAIN", topic_prefix, password=bad)})
    try:
        rc2 = await asyncio.to_thread(proc2.proc.wait, 120)
    finally:
        proc2.terminate()
    assert rc2 != 0
    assert "error" in proc2.output().lower()
    assert_no_secret(proc2.output(), bad)


# ------------------------------------------------------------------------------------------ TLS


def _openssl(*args: str, cwd: Path) -> None:
    res = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True, check=False)
    assert res.returncode == 0, f"openssl {' '.join(args)}:\n{res.stderr}"


def make_pki(d: Path) -> dict[str, Path]:
    """A CA, a server certificate for 127.0.0.1/localhost and a client certificate, all PEM."""
    d.mkdir(parents=True, exist_ok=True)
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
             "-subj", "/CN=tpipe-test-ca", cwd=d)
    for name, san in (("server", "subjectAltName=IP:127.0.0.1,DNS:localhost"), ("client", None)):
        _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.csr",
                 "-subj", f"/CN=tpipe-{name}", cwd=d)
        ext: list[str] = []
        if san:
            (d / f"{name}.ext").write_text(san + "\n")
            ext = ["-extfile", f"{name}.ext"]
        _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
                 "-out", f"{name}.pem", "-days", "2", *ext, cwd=d)
    # Kafka's PEM key store: the (PKCS#8) private key followed by the certificate chain
    (d / "server-keystore.pem").write_text((d / "server.key").read_text() + (d / "server.pem").read_text())
    return {n: d / n for n in ("ca.pem", "server.pem", "server.key", "client.pem", "client.key")}


def test_common_config_builds_ssl_contexts_for_ssl_and_sasl_ssl(tmp_path: Path) -> None:
    pki = make_pki(tmp_path / "pki")
    ssl_s = KafkaSettings(kafka="b:9093", kafka_security_protocol="SSL", kafka_ssl_cafile=str(pki["ca.pem"]),
                          kafka_ssl_certfile=str(pki["client.pem"]), kafka_ssl_keyfile=str(pki["client.key"]))
    cfg = common_config(ssl_s, role="t")
    ctx = cfg["ssl_context"]
    assert isinstance(ctx, ssl.SSLContext)
    assert ctx.verify_mode == ssl.CERT_REQUIRED and ctx.check_hostname
    assert any("tpipe-test-ca" in str(c.get("subject")) for c in ctx.get_ca_certs())  # our CA, loaded
    assert cfg["security_protocol"] == "SSL" and "sasl_mechanism" not in cfg

    sasl_ssl = KafkaSettings(kafka="b:9093", kafka_security_protocol="SASL_SSL", kafka_ssl_cafile=str(pki["ca.pem"]),
                             kafka_sasl_mechanism="SCRAM-SHA-256", kafka_sasl_username="u",
                             kafka_sasl_password="p4ssw0rd", kafka_ssl_check_hostname=False)
    cfg = common_config(sasl_ssl, role="t")
    assert isinstance(cfg["ssl_context"], ssl.SSLContext) and not cfg["ssl_context"].check_hostname
    assert (cfg["sasl_mechanism"], cfg["sasl_plain_username"], cfg["sasl_plain_password"]) == (
        "SCRAM-SHA-256", "u", "p4ssw0rd")
    assert "p4ssw0rd" not in repr(sasl_ssl)  # settings print the password masked

    for plain in ("PLAINTEXT", "SASL_PLAINTEXT"):
        assert "ssl_context" not in common_config(KafkaSettings(kafka_security_protocol=plain), role="t")
    # a client certificate whose key does not match fails loudly, at config time
    bad = ssl_s.model_copy(update={"kafka_ssl_keyfile": str(pki["server.key"])})
    with pytest.raises(ssl.SSLError):
        common_config(bad, role="t")


@pytest.mark.kafka
async def test_ssl_and_sasl_ssl_against_a_tls_broker(
    local_broker_factory: Callable[..., LocalBroker], tmp_path: Path
) -> None:
    pki = make_pki(tmp_path / "pki")
    port, cport, sport, tls_port, sasl_tls_port = (free_port() for _ in range(5))
    password = "tls-" + uuid.uuid4().hex[:12]
    plain_jaas = ("org.apache.kafka.common.security.plain.PlainLoginModule required "
                  f'username="tpipe" password="{password}" user_tpipe="{password}";')
    scram_jaas = "org.apache.kafka.common.security.scram.ScramLoginModule required;"
    overrides = {
        "listeners": ",".join([f"PLAINTEXT://127.0.0.1:{port}", f"CONTROLLER://127.0.0.1:{cport}",
                               f"SASL_PLAINTEXT://127.0.0.1:{sport}", f"SSL://127.0.0.1:{tls_port}",
                               f"SASL_SSL://127.0.0.1:{sasl_tls_port}"]),
        "advertised.listeners": ",".join([f"PLAINTEXT://127.0.0.1:{port}", f"SASL_PLAINTEXT://127.0.0.1:{sport}",
                                          f"SSL://127.0.0.1:{tls_port}", f"SASL_SSL://127.0.0.1:{sasl_tls_port}"]),
        "ssl.keystore.type": "PEM",
        "ssl.keystore.location": str(tmp_path / "pki" / "server-keystore.pem"),
        "ssl.truststore.type": "PEM",
        "ssl.truststore.location": str(pki["ca.pem"]),
        "listener.name.ssl.ssl.client.auth": "required",  # mutual TLS on the SSL listener
        "listener.name.sasl_ssl.plain.sasl.jaas.config": plain_jaas,
        "listener.name.sasl_ssl.scram-sha-256.sasl.jaas.config": scram_jaas,
        "listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config": scram_jaas,
    }
    broker = local_broker_factory(port=port, controller_port=cport, sasl=True, sasl_port=sport,
                                  password=password, overrides=overrides)
    await broker.astart()
    prefix = f"t{uuid.uuid4().hex[:8]}"
    tls = KafkaSettings(kafka=f"127.0.0.1:{tls_port}", kafka_security_protocol="SSL",
                        kafka_ssl_cafile=str(pki["ca.pem"]), kafka_ssl_certfile=str(pki["client.pem"]),
                        kafka_ssl_keyfile=str(pki["client.key"]), topic_prefix=prefix,
                        kafka_sasl_mechanism=None, kafka_sasl_username=None, kafka_sasl_password=None)
    sasl_tls = {
        mech: KafkaSettings(kafka=f"127.0.0.1:{sasl_tls_port}", kafka_security_protocol="SASL_SSL",
                            kafka_ssl_cafile=str(pki["ca.pem"]), kafka_ssl_certfile=None, kafka_ssl_keyfile=None,
                            kafka_sasl_mechanism=mech, kafka_sasl_username="tpipe", kafka_sasl_password=password,
                            topic_prefix=prefix)
        for mech in ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
    }
    topic = f"{prefix}.tls"
    sent: list[bytes] = []
    for name, s in [("SSL", tls), *sasl_tls.items()]:
        producer = make_producer(s, request_timeout_ms=10_000)
        await producer.start()
        try:
            value = f"via {name}".encode()
            await producer.send_and_wait(topic, value=value, key=b"k")
            sent.append(value)
        finally:
            await producer.stop()
    for s in (tls, sasl_tls["SCRAM-SHA-512"]):
        records = await read_all(s, topic, expected_count=len(sent))
        assert [r.value for r in records] == sent

    # TLS really is checked: no client certificate on the mutual-TLS listener, an unknown CA, a wrong
    # SASL password over TLS -- all refused
    refused = [
        tls.model_copy(update={"kafka_ssl_certfile": None, "kafka_ssl_keyfile": None}),
        sasl_tls["PLAIN"].model_copy(update={"kafka_ssl_cafile": str(pki["client.pem"])}),
        sasl_tls["SCRAM-SHA-256"].model_copy(update={"kafka_sasl_password": KafkaSettings(
            kafka_sasl_password="nope-nope").kafka_sasl_password}),
    ]
    for s in refused:
        consumer = make_consumer(s, topic, group_id=None, request_timeout_ms=5000)
        with pytest.raises(Exception):  # noqa: B017 - aiokafka raises connection/SSL errors of several kinds
            await asyncio.wait_for(consumer.start(), 30)
        await consumer.stop()
