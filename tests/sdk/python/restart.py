"""A producer and a SimpleConsumer survive a proxy restart: usage restart.py ENDPOINT TOPIC GROUP SIGNAL_DIR

Sends and receives one message, writes SIGNAL_DIR/ready, waits for SIGNAL_DIR/go (the test restarts the
proxy in between), then sends and receives again through the new proxy process."""

from __future__ import annotations

import os
import sys
import time

from common import emit
from rocketmq import ClientConfiguration, Credentials, FilterExpression, Message, Producer, SimpleConsumer


def pause(deadline: float) -> None:
    """The short pause between two attempts of a bounded retry loop, never past its deadline."""
    time.sleep(max(0.0, min(0.2, deadline - time.monotonic())))


def round_trip(producer, consumer, topic: str, body: bytes, seconds: float) -> dict:
    out: dict = {}
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and "sent" not in out:
        try:
            m = Message()
            m.topic = topic
            m.body = body
            out["sent"] = producer.send(m).message_id
        except Exception as e:  # noqa: BLE001
            out["send_error"] = str(e)
            pause(deadline)  # retry until sent / received or the deadline
    while time.monotonic() < deadline and "received" not in out:
        try:
            for r in consumer.receive(8, 15) or []:
                consumer.ack(r)
                if r.body == body:
                    out["received"] = r.message_id
        except Exception as e:  # noqa: BLE001
            out["receive_error"] = str(e)
            pause(deadline)  # retry until sent / received or the deadline
    return out


def main() -> None:
    endpoint, topic, group, sig = sys.argv[1:5]
    cfg = ClientConfiguration(endpoint, Credentials(), request_timeout=5)
    consumer = SimpleConsumer(cfg, group, {topic: FilterExpression("*")}, await_duration=5)
    consumer.startup()
    producer = Producer(cfg, (topic,))
    producer.startup()
    out = {"before": round_trip(producer, consumer, topic, b"before", 30)}
    open(os.path.join(sig, "ready"), "w").close()
    deadline = time.monotonic() + 60  # poll for the test's go file (it restarts the proxy first), bounded
    while not os.path.exists(os.path.join(sig, "go")) and time.monotonic() < deadline:
        time.sleep(0.05)
    if not os.path.exists(os.path.join(sig, "go")):
        out["go_timeout"] = True  # carry on: the "after" round trip and the test's assertions show what failed
    out["after"] = round_trip(producer, consumer, topic, b"after", 60)
    producer.shutdown()
    consumer.shutdown()
    emit(out)


if __name__ == "__main__":
    main()
