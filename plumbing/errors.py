"""Errors raised by ``plumbing``::

    TopicsNotCreatedError (aiokafka KafkaError, not retriable)   Kafka refused to create a topic
                                                                 (replication factor above the brokers,
                                                                 a policy, an ACL); the message is Kafka's
"""

from __future__ import annotations

from aiokafka.errors import KafkaError

__all__ = ["TopicsNotCreatedError"]


class TopicsNotCreatedError(KafkaError):  # type: ignore[misc]
    """Kafka refused to create a topic (replication factor above the brokers, a policy, an ACL)."""

    retriable = False

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else type(self).__name__
