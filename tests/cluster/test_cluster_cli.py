"""``tpipe broker --nodes 3`` and ``tpipe topics create --replication-factor/--min-insync-replicas``,
as a user runs them."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from localbroker.replicas import partition_states
from plumbing.kafka_clients import make_admin
from plumbing.settings import KafkaSettings
from schemas.topics import all_topics
from tests.support.kafka_broker import broker_settings
from tests.support.paths import REPO
from tpipe.cli import main as tpipe

pytestmark = [pytest.mark.cluster, pytest.mark.kafka]

NODE_LINE = re.compile(r"node (\d) 127\.0\.0\.1:(\d+) controller 127\.0\.0\.1:(\d+) data (\S+) pid (\d+)")


async def _replication(settings: KafkaSettings, names: list[str]) -> dict[str, tuple[int, int, str]]:
    """topic -> (partitions, replicas of each, its min.insync.replicas)."""
    states = await partition_states(settings, names)
    admin = make_admin(settings)
    await admin.start()
    try:
        configs = {}
        for resp in await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, n) for n in names]):
            for res in resp.resources:
                configs[res[3]] = {e[0]: e[1] for e in res[4]}["min.insync.replicas"]
    finally:
        await admin.close()
    out = {}
    for n in names:
        mine = [p for p in states if p.topic == n]
        assert len({len(p.replicas) for p in mine}) == 1, mine
        out[n] = (len(mine), len(mine[0].replicas), configs[n])
    return out


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().rpartition(")")[2].split()[0] != "Z"


def test_broker_nodes_3_prints_its_ports_and_topics_get_rf_3_min_isr_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "cluster"
    env = {k: v for k, v in os.environ.items() if not k.startswith("TPIPE_")}
    with open(tmp_path / "broker.err", "wb") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "tpipe.cli", "broker", "--nodes", "3", "--port", "0", "--data-dir", str(data)],
            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=err, text=True,
        )
    pids: list[int] = []
    try:
        assert proc.stdout is not None
        bootstrap = proc.stdout.readline().strip()  # printed once every node serves
        nodes = [NODE_LINE.fullmatch(proc.stdout.readline().strip()) for _ in range(3)]
        assert all(nodes), (bootstrap, nodes, (tmp_path / "broker.err").read_text()[-2000:])
        ports = [int(m.group(2)) for m in nodes if m]
        assert bootstrap == ",".join(f"127.0.0.1:{p}" for p in ports)
        assert [m.group(4) for m in nodes if m] == [str(data / f"node{i}") for i in (1, 2, 3)]
        pids = [int(m.group(5)) for m in nodes if m]

        settings = broker_settings(bootstrap, topic_prefix="clu")
        assert tpipe(["topics", "create", "--kafka", bootstrap, "--topic-prefix", "clu"]) == 0
        out = capsys.readouterr().out
        assert out.count("replication factor 3, min.insync.replicas 2") == len(all_topics("clu")), out
        assert set(asyncio.run(_replication(settings, all_topics("clu"))).values()) == {(3, 3, "2")}
        assert tpipe(["topics", "list", "--kafka", bootstrap, "--topic-prefix", "clu"]) == 0
        rows = [ln.split() for ln in capsys.readouterr().out.splitlines()[1:]]
        assert {tuple(r[1:4]) for r in rows} == {("3", "3", "2")}  # partitions, replicas, min_isr

        proc.send_signal(signal.SIGTERM)
        assert proc.wait(90) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert not [p for p in pids if _alive(p)], "every node stopped with the command"
    for i in (1, 2, 3):
        assert (data / f"node{i}" / "kraft-logs" / "meta.properties").is_file()
    # the data dir is a 3-node cluster's: another size is refused in one line, nothing started
    res = subprocess.run([sys.executable, "-m", "tpipe.cli", "broker", "--nodes", "2", "--port", "0",
                          "--data-dir", str(data)], cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
    assert res.returncode == 1 and res.stdout == ""
    assert "holds a cluster of 3 nodes, not 2" in res.stderr.splitlines()[-1]


def test_topics_create_takes_replication_factor_and_min_insync_replicas(
    cluster_settings: KafkaSettings, capsys: pytest.CaptureFixture[str]
) -> None:
    s = cluster_settings
    names = all_topics(s.topic_prefix)
    kafka = ["--kafka", s.kafka, "--topic-prefix", s.topic_prefix]

    assert tpipe(["topics", "create", "--replication-factor", "4", *kafka]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "InvalidReplicationFactorError" in err and "3 broker" in err, err
    assert tpipe(["topics", "create", "--replication-factor", "2", "--min-insync-replicas", "3", *kafka]) == 1
    err = capsys.readouterr().err.strip()
    assert err == "tpipe topics create: error: min.insync.replicas 3 is above the replication factor 2: " \
                  "no write could ever be acknowledged"
    assert tpipe(["topics", "list", *kafka]) == 0
    assert capsys.readouterr().out.count("(missing)") == len(names), "a refused create creates nothing"

    assert tpipe(["topics", "create", "--replication-factor", "2", "--min-insync-replicas", "1", "--partitions", "2",
                  *kafka]) == 0
    assert capsys.readouterr().out.count("(partitions 2, replication factor 2, min.insync.replicas 1,") == len(names)
    assert set(asyncio.run(_replication(s, names)).values()) == {(2, 2, "1")}
