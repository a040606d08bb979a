"""The local Apache Kafka broker: ``make run``'s embedded default and the tests' broker.

Jar resolution from Maven Central (``jars``), the node's config and storage (``config``), the
process (``node.LocalBroker``), a cluster of such nodes (``cluster.LocalCluster``) and where its
partitions live (``replicas``), readiness (``readiness``) and one CLI (``cli``: ``tpipe broker
[--nodes N]``, ``python -m localbroker``). Nothing else.
"""

from localbroker.cluster import LocalCluster
from localbroker.errors import BrokerError
from localbroker.jars import ensure_kafka_jars
from localbroker.node import LocalBroker, running_broker
from localbroker.ports import free_port

__all__ = ["BrokerError", "LocalBroker", "LocalCluster", "ensure_kafka_jars", "free_port", "running_broker"]
