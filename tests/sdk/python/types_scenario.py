"""Message types through the proxy: usage types_scenario.py ENDPOINT FIFO_TOPIC DELAY_TOPIC TX_TOPIC GROUP

FIFO: 6 messages in 2 message groups, received by a SimpleConsumer of a FIFO group (ordered within a
group). DELAY: one message due in 3 s. TRANSACTION: one committed, one rolled back, one left unknown
(the broker's check-back reaches the producer's TransactionChecker through the proxy's Telemetry).
Each section records its outcome; errors are recorded, not raised.
"""

from __future__ import annotations

import sys
import threading
import time

from common import emit, msg_dict
from rocketmq import (
    ClientConfiguration,
    Credentials,
    FilterExpression,
    Message,
    Producer,
    SimpleConsumer,
    TransactionChecker,
    TransactionResolution,
)


class Checker(TransactionChecker):
    def __init__(self) -> None:
        self.checked: list[str] = []

    def check(self, message) -> TransactionResolution:
        self.checked.append(message.message_id)
        return TransactionResolution.COMMIT


def receive_all(consumer, want: int, seconds: float) -> list:
    got: list = []
    deadline = time.monotonic() + seconds
    while len(got) < want and time.monotonic() < deadline:
        msgs = consumer.receive(16, 15) or []
        for m in msgs:
            got.append(m)
            consumer.ack(m)
    return got


def main() -> None:
    endpoint, fifo_topic, delay_topic, tx_topic, group = sys.argv[1:6]
    out: dict = {}
    cfg = ClientConfiguration(endpoint, Credentials(), request_timeout=5)
    consumer = SimpleConsumer(cfg, group, {fifo_topic: FilterExpression("*"), delay_topic: FilterExpression("*"),
                                           tx_topic: FilterExpression("*")}, await_duration=5)
    consumer.startup()
    primed = threading.Event()

    def prime() -> None:  # first pops start the group's offsets before anything is sent
        try:
            for _ in range(3):
                consumer.receive(1, 15)
        except Exception:  # noqa: BLE001
            pass
        primed.set()

    threading.Thread(target=prime, daemon=True).start()
    primed.wait(20)
    checker = Checker()
    producer = Producer(cfg, (fifo_topic, delay_topic, tx_topic), checker)
    producer.startup()
    # FIFO
    try:
        sent = []
        for i in range(6):
            m = Message()
            m.topic = fifo_topic
            m.body = f"fifo-{i % 2}-{i // 2}".encode()
            m.message_group = f"order-{i % 2}"
            sent.append(producer.send(m).message_id)
        got = receive_all(consumer, 6, 40)
        out["fifo"] = {"sent": sent, "received": [msg_dict(m) for m in got]}
    except Exception as e:  # noqa: BLE001
        out["fifo"] = {"error": f"{type(e).__name__}: {e}"}
    # DELAY
    try:
        m = Message()
        m.topic = delay_topic
        m.body = b"delayed"
        m.delivery_timestamp = int(time.time()) + 3  # this SDK takes seconds
        t0 = time.time()
        mid = producer.send(m).message_id
        got = receive_all(consumer, 1, 30)
        out["delay"] = {"sent": mid, "received": [msg_dict(x) for x in got], "after_s": time.time() - t0}
    except Exception as e:  # noqa: BLE001
        out["delay"] = {"error": f"{type(e).__name__}: {e}"}
    # TRANSACTION
    try:
        ids = {}
        for what in ("commit", "rollback"):
            tx = producer.begin_transaction()
            m = Message()
            m.topic = tx_topic
            m.body = f"tx-{what}".encode()
            ids[what] = producer.send(m, tx).message_id
            (tx.commit if what == "commit" else tx.rollback)()
        # left unresolved: the broker's check-back asks this producer (checker answers COMMIT)
        tx = producer.begin_transaction()
        m = Message()
        m.topic = tx_topic
        m.body = b"tx-unknown"
        ids["unknown"] = producer.send(m, tx).message_id
        got = receive_all(consumer, 2, float(sys.argv[6]) if len(sys.argv) > 6 else 20)
        out["transaction"] = {"ids": ids, "received": [msg_dict(x) for x in got]}
    except Exception as e:  # noqa: BLE001
        out["transaction"] = {"error": f"{type(e).__name__}: {e}"}
    out["checked"] = checker.checked
    producer.shutdown()
    consumer.shutdown()
    emit(out)


if __name__ == "__main__":
    main()
