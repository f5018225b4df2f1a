"""Namespaces: a producer and a consumer in namespace NS use TOPIC / GROUP; a consumer without a
namespace reads the stored topic NS%TOPIC with group NS%RAW_GROUP.

usage: namespace.py ENDPOINT NS TOPIC GROUP RAW_GROUP
Prints RESULT {"sent": [ids], "received": [{"id", "topic"}], "raw": [{"id", "topic"}], "errors": [...]}.
"""

from __future__ import annotations

import sys

from common import emit, receive_until
from rocketmq import ClientConfiguration, Credentials, FilterExpression, Message, Producer, SimpleConsumer


def drain(cfg: ClientConfiguration, group: str, topic: str, want: set[str], errors: list[str]) -> list[dict]:
    consumer = SimpleConsumer(cfg, group, {topic: FilterExpression("*")}, await_duration=5)
    consumer.startup()
    got = [{"id": m.message_id, "topic": m.topic} for m in receive_until(consumer, want, 40, errors)]
    consumer.shutdown()
    return got


def main() -> None:
    endpoint, ns, topic, group, raw_group = sys.argv[1:6]
    cfg = ClientConfiguration(endpoint, Credentials(), namespace=ns, request_timeout=10)
    errors: list[str] = []
    producer = Producer(cfg, (topic,))
    producer.startup()
    sent = []
    for i in range(2):
        m = Message()
        m.topic, m.body, m.tag = topic, f"ns-{i}".encode(), "t"
        sent.append(producer.send(m).message_id)
    producer.shutdown()
    received = drain(cfg, group, topic, set(sent), errors)
    raw = drain(ClientConfiguration(endpoint, Credentials(), request_timeout=10), f"{ns}%{raw_group}",
                f"{ns}%{topic}", set(sent), errors)
    emit({"sent": sent, "received": received, "raw": raw, "errors": errors[:5]})


if __name__ == "__main__":
    main()
