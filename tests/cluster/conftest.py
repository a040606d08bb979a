"""One real 3-node Kafka cluster per session for the ``cluster`` tests: tpipe's ``LocalCluster`` from
the Maven jars (each node a broker and a controller voter; topics RF 3, min.insync.replicas 2).

Every test gets it with all three nodes running and every partition in sync, and leaves it so (a
node a test killed is started again, even when the test failed). A cluster that cannot start FAILS
the tests; they are never skipped.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from localbroker import LocalCluster
from localbroker.readiness import run_coro
from localbroker.replicas import wait_in_sync
from plumbing.settings import KafkaSettings
from tests.support.kafka_broker import broker_settings


@pytest.fixture(scope="session")
def kafka_cluster() -> Iterator[LocalCluster]:
    cluster = LocalCluster(3)
    try:
        cluster.start()
    except Exception as e:
        cluster.cleanup()
        pytest.fail(f"could not start the 3-node Kafka cluster (localbroker.LocalCluster): {e}", pytrace=False)
    try:
        yield cluster
    finally:
        cluster.kill()  # its data is thrown away: no clean shutdown needed
        cluster.cleanup()


def _heal(cluster: LocalCluster) -> None:
    for node in cluster.nodes:
        if not node.is_running():
            node.start()
    run_coro(lambda: wait_in_sync(cluster.client_settings(), timeout_s=120))


@pytest.fixture
def cluster(kafka_cluster: LocalCluster) -> Iterator[LocalCluster]:
    """The session's cluster, every node up and every partition in sync before and after the test."""
    _heal(kafka_cluster)
    yield kafka_cluster
    _heal(kafka_cluster)


@pytest.fixture
def cluster_settings(cluster: LocalCluster, topic_prefix: str) -> KafkaSettings:
    """Settings for the cluster with this test's own topic prefix, 3 partitions (RF and min ISR fitted: 3, 2)."""
    return broker_settings(cluster.bootstrap, topic_prefix=topic_prefix, topic_partitions=3)
