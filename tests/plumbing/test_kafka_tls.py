"""tpipe's Kafka clients over TLS: ``plumbing.kafka_clients`` builds the SSL contexts, and a local broker
with SSL (mutual TLS) and SASL_SSL listeners (``LocalBroker``'s ``overrides``, PEM key and trust stores
from certificates made with the ``openssl`` CLI) takes their records and refuses bad credentials."""

from __future__ import annotations

import asyncio
import ssl
import subprocess
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from localbroker import LocalBroker, free_port
from plumbing.kafka_clients import common_config, make_consumer, make_producer
from plumbing.settings import KafkaSettings
from tests.support.kafka_broker import read_all


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
