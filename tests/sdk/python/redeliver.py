"""Redelivery after the invisible time: usage redeliver.py ENDPOINT TOPIC GROUP

Receives one message with a 10 s invisible duration, does not ack it, and receives it again after
the invisible time with delivery attempt 2; then acks it and checks an ack with a stale handle."""

from __future__ import annotations

import sys
import time

from common import emit, err_code, msg_dict
from rocketmq import ClientConfiguration, Credentials, FilterExpression, Message, Producer, SimpleConsumer


def main() -> None:
    endpoint, topic, group = sys.argv[1:4]
    cfg = ClientConfiguration(endpoint, Credentials(), request_timeout=5)
    consumer = SimpleConsumer(cfg, group, {topic: FilterExpression("*")}, await_duration=5)
    consumer.startup()
    producer = Producer(cfg, (topic,))
    producer.startup()
    m = Message()
    m.topic = topic
    m.body = b"redeliver-me"
    sent = producer.send(m).message_id
    out: dict = {"sent": sent, "first": [], "second": []}
    deadline = time.monotonic() + 20
    while not out["first"] and time.monotonic() < deadline:
        out["first"] = consumer.receive(1, 10) or []
    t0 = time.monotonic()
    while not out["second"] and time.monotonic() < t0 + 30:
        out["second"] = consumer.receive(1, 10) or []
    out["after_s"] = time.monotonic() - t0
    first, second = out["first"], out["second"]
    if second:
        consumer.ack(second[0])
    if first:
        try:  # the first handle is stale now
            consumer.ack(first[0])
            out["stale_ack"] = "ok"
        except Exception as e:  # noqa: BLE001
            out["stale_ack"] = err_code(e)
    out["first"] = [msg_dict(x) for x in first]
    out["second"] = [msg_dict(x) for x in second]
    producer.shutdown()
    consumer.shutdown()
    emit(out)


if __name__ == "__main__":
    main()
