"""PubSubMessageBus: the MessageBus port on Pub/Sub (google-cloud-pubsub).

Subscriptions are created with a dead-letter policy (after ``max_attempts``
deliveries a message moves to the dead-letter topic, where one subscription
keeps it) and an exponential retry policy. On Google Cloud the functions are
pushed their messages by Eventarc/Pub/Sub; ``pull`` serves tools and tests.

A message's ``id`` here is its ack id: Pub/Sub acknowledges deliveries, not
messages, so that is what ``ack``/``nack`` need.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Mapping
from typing import Any

from google.api_core import exceptions as gexc
from google.api_core import retry as gretry
from google.cloud import pubsub_v1
from google.protobuf import duration_pb2

from minimlops.ports import Message

TIMEOUT = 30.0
RETRY = gretry.Retry(
    initial=0.2, maximum=5.0, multiplier=2.0, timeout=60.0, predicate=gretry.if_transient_error
)


class PubSubMessageBus:
    """Topics and subscriptions of one project.

    Args:
        project: the Google Cloud project.
        dead_letter_topic: where messages go after ``max_attempts`` deliveries.
        max_attempts: deliveries before dead-lettering (Pub/Sub allows 5 to 100).
        min_backoff, max_backoff: the retry policy's delays, in seconds.
        ack_deadline: seconds a pulled message stays leased.
    """

    def __init__(
        self,
        project: str,
        *,
        dead_letter_topic: str = "minimlops-dead-letter",
        max_attempts: int = 5,
        min_backoff: float = 10.0,
        max_backoff: float = 600.0,
        ack_deadline: int = 600,
    ) -> None:
        self.project, self.dead_letter_topic = project, dead_letter_topic
        self.max_attempts = max(5, min(100, max_attempts))
        self.min_backoff, self.max_backoff = min_backoff, max_backoff
        self.ack_deadline = max(10, min(600, ack_deadline))
        self.publisher = pubsub_v1.PublisherClient()
        self.subscriber = pubsub_v1.SubscriberClient()

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.subscriber.close()

    def topic_path(self, topic: str) -> str:
        return self.publisher.topic_path(self.project, topic)

    def subscription_path(self, subscription: str) -> str:
        return self.subscriber.subscription_path(self.project, subscription)

    @property
    def dead_letter_subscription(self) -> str:
        return self.dead_letter_topic

    def ensure_topic(self, topic: str) -> str:
        """Create a topic if missing: 'created' or 'found'."""
        try:
            self.publisher.create_topic(name=self.topic_path(topic), retry=RETRY, timeout=TIMEOUT)
            return "created"
        except gexc.AlreadyExists:
            return "found"

    def ensure_dead_letter(self) -> str:
        """The dead-letter topic and the subscription that keeps its messages."""
        self.ensure_topic(self.dead_letter_topic)
        return self._create(
            self.dead_letter_subscription, self.dead_letter_topic, dead_letter=False
        )

    def create_subscription(
        self,
        subscription: str,
        topic: str,
        *,
        push_endpoint: str | None = None,
        max_attempts: int | None = None,
    ) -> str:
        """Attach a subscription (with dead letter and retry policies) to a topic;
        ``max_attempts``: its deliveries before dead-lettering, else the bus's.

        Idempotent: returns 'created' or 'found'.
        """
        self.ensure_topic(topic)
        self.ensure_dead_letter()
        return self._create(
            subscription,
            topic,
            dead_letter=True,
            push_endpoint=push_endpoint,
            max_attempts=max_attempts,
        )

    def _create(
        self,
        subscription: str,
        topic: str,
        *,
        dead_letter: bool,
        push_endpoint: str | None = None,
        max_attempts: int | None = None,
    ) -> str:
        request: dict[str, Any] = {
            "name": self.subscription_path(subscription),
            "topic": self.topic_path(topic),
            "ack_deadline_seconds": self.ack_deadline,
            "retry_policy": {
                "minimum_backoff": duration_pb2.Duration(seconds=int(self.min_backoff)),
                "maximum_backoff": duration_pb2.Duration(seconds=int(self.max_backoff)),
            },
        }
        if dead_letter:
            request["dead_letter_policy"] = {
                "dead_letter_topic": self.topic_path(self.dead_letter_topic),
                "max_delivery_attempts": max_attempts or self.max_attempts,
            }
        if push_endpoint:
            request["push_config"] = {"push_endpoint": push_endpoint}
        try:
            self.subscriber.create_subscription(request=request, retry=RETRY, timeout=TIMEOUT)
            return "created"
        except gexc.AlreadyExists:
            return "found"

    def publish(self, topic: str, data: bytes, attributes: Mapping[str, str]) -> str:
        """Publish and wait for the server's message id (the message is stored)."""
        try:
            return self._publish(topic, data, attributes)
        except gexc.NotFound:  # like the embedded bus: a topic nobody created yet
            self.ensure_topic(topic)
            return self._publish(topic, data, attributes)

    def _publish(self, topic: str, data: bytes, attributes: Mapping[str, str]) -> str:
        future = self.publisher.publish(
            self.topic_path(topic), data, retry=RETRY, timeout=TIMEOUT, **dict(attributes)
        )
        return str(future.result(timeout=TIMEOUT))

    def pull(self, subscription: str, max_messages: int = 1, *, wait: float = 1.0) -> list[Message]:
        """Lease up to max_messages; waits up to ``wait`` seconds for the first."""
        deadline = time.monotonic() + wait
        while True:
            # A synchronous pull blocks until a message comes or its deadline
            # passes: the deadline is what is left of ``wait``.
            left = max(0.3, deadline - time.monotonic())
            try:
                response = self.subscriber.pull(
                    request={
                        "subscription": self.subscription_path(subscription),
                        "max_messages": max_messages,
                    },
                    retry=None,
                    timeout=left,
                )
                received = list(response.received_messages)
            except (gexc.DeadlineExceeded, gexc.ServiceUnavailable):
                received = []
            if received or time.monotonic() >= deadline:
                return [
                    Message(
                        id=r.ack_id,
                        data=bytes(r.message.data),
                        attributes=dict(r.message.attributes),
                        attempt=max(1, int(r.delivery_attempt or 1)),
                    )
                    for r in received
                ]

    def ack(self, subscription: str, message_id: str) -> None:
        self.subscriber.acknowledge(
            request={"subscription": self.subscription_path(subscription), "ack_ids": [message_id]},
            retry=RETRY,
            timeout=TIMEOUT,
        )

    def nack(self, subscription: str, message_id: str, error: str) -> None:
        """Give the message back; Pub/Sub redelivers it with backoff and
        dead-letters it after max_attempts deliveries."""
        self.subscriber.modify_ack_deadline(
            request={
                "subscription": self.subscription_path(subscription),
                "ack_ids": [message_id],
                "ack_deadline_seconds": 0,
            },
            retry=RETRY,
            timeout=TIMEOUT,
        )

    def dead_letter(self, subscription: str, message_id: str, error: str) -> None:
        """Pub/Sub cannot move one delivery by request: nack it, and it reaches
        the dead-letter topic after max_attempts deliveries."""
        self.nack(subscription, message_id, error)

    def stats(self) -> list[dict[str, Any]]:
        """Subscriptions of the project.

        Pub/Sub reports backlog sizes through Cloud Monitoring only, so
        ``pending``, ``leased`` and ``dead_lettered`` are None here: counting
        dead letters would mean pulling them (a read that changes delivery
        state, and a permission the functions do not have). ``minimlops gcp
        dead-letters`` lists them, with the operator's credentials.
        """
        out = []
        for sub in self.subscriber.list_subscriptions(
            request={"project": f"projects/{self.project}"}, retry=RETRY, timeout=TIMEOUT
        ):
            name = sub.name.rsplit("/", 1)[-1]
            if name == self.dead_letter_subscription:
                continue
            out.append(
                {
                    "subscription": name,
                    "topic": sub.topic.rsplit("/", 1)[-1],
                    "pending": None,
                    "leased": None,
                    "acked": None,
                    "dead_lettered": None,
                }
            )
        return out

    def redrive(self, *, apply: bool, batch: int = 100) -> list[tuple[str, str, dict[str, str]]]:
        """The dead-lettered messages: (source subscription, its topic,
        attributes) each. With ``apply``, each is published again to its
        source subscription's topic and then acknowledged (published first:
        a crash between the two redelivers it once more, which handlers
        tolerate); without, each is given back untouched."""
        out: list[tuple[str, str, dict[str, str]]] = []
        topics: dict[str, str] = {}
        while True:
            held = self.pull(self.dead_letter_subscription, batch, wait=2.0)
            stuck = False
            for m in held:
                source = m.attributes.get("CloudPubSubDeadLetterSourceSubscription", "")
                if source and source not in topics:
                    sub = self.subscriber.get_subscription(
                        request={"subscription": self.subscription_path(source.rsplit("/", 1)[-1])},
                        retry=RETRY,
                        timeout=TIMEOUT,
                    )
                    topics[source] = sub.topic.rsplit("/", 1)[-1]
                topic = topics.get(source, "")
                out.append((source.rsplit("/", 1)[-1], topic, dict(m.attributes)))
                if apply and topic:
                    self._publish(
                        topic,
                        m.data,
                        {
                            k: v
                            for k, v in m.attributes.items()
                            if not k.startswith("CloudPubSubDeadLetter")
                        },
                    )
                    self.ack(self.dead_letter_subscription, m.id)
                else:  # listed only, or no source to send it back to
                    self.nack(self.dead_letter_subscription, m.id, "")
                    stuck = True
            if not held or not apply or stuck:
                return out
