"""The replication tpipe gives the topics it creates: fitted to the brokers unless set."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from plumbing.kafka_clients import fitted_replication, topic_configs
from plumbing.settings import KafkaSettings


def test_fitted_to_the_cluster_size() -> None:
    # one copy per broker up to 3; writes go on with one copy missing
    assert [fitted_replication(n) for n in (1, 2, 3, 5)] == [(1, 1), (2, 1), (3, 2), (3, 2)]


def test_min_insync_replicas_is_a_topic_config_and_never_above_the_replication_factor() -> None:
    s = KafkaSettings(topic_replication_factor=3, topic_min_insync_replicas=2)
    assert topic_configs(s)["min.insync.replicas"] == "2"
    assert "min.insync.replicas" not in topic_configs(KafkaSettings())  # fitted when the topics are created
    with pytest.raises(ValidationError, match="above topic_replication_factor 2"):
        KafkaSettings(topic_replication_factor=2, topic_min_insync_replicas=3)
