"""Send N messages, then receive and ack them all (or until a deadline).

usage: send_receive.py ENDPOINT TOPIC GROUP N
With SDK_TLS=1 in the environment the clients connect with TLS (the SDK's ``tls_enable``).
Prints RESULT {"sent": [ids], "received": [ids], "errors": [...]}.
"""

from __future__ import annotations

import os
import sys

from common import emit, receive_until
from rocketmq import ClientConfiguration, Credentials, FilterExpression, Message, Producer, SimpleConsumer


def main() -> None:
    endpoint, topic, group, n = sys.argv[1:5]
    cfg = ClientConfiguration(endpoint, Credentials(), request_timeout=10)
    errors: list[str] = []
    tls = os.environ.get("SDK_TLS") == "1"
    producer = Producer(cfg, (topic,), tls_enable=tls)
    producer.startup()
    sent: list[str] = []
    for i in range(int(n)):
        msg = Message()
        msg.topic, msg.body, msg.tag = topic, f"body-{i}".encode(), "m"
        sent.append(producer.send(msg).message_id)
    producer.shutdown()
    consumer = SimpleConsumer(cfg, group, {topic: FilterExpression("*")}, await_duration=5, tls_enable=tls)
    consumer.startup()
    seen = [m.message_id for m in receive_until(consumer, set(sent), 60, errors, batch=32)]
    consumer.shutdown()
    emit({"sent": sent, "received": seen, "errors": errors[:5]})


if __name__ == "__main__":
    main()
