"""4.x C++ client: send_orderly by key + an orderly PushConsumer (LOCK_BATCH_MQ): every message arrives
once and in send order per key.

    orderly.py NAMESRV_ADDR TOPIC GROUP [COUNT]

Prints one JSON line {"sent": n, "received": n, "in_order": bool}.
"""

from __future__ import annotations

import json
import sys
import threading
import time

from rocketmq.client import Message, Producer, PushConsumer


def main() -> int:
    ns, topic, group = sys.argv[1], sys.argv[2], sys.argv[3]
    count = int(sys.argv[4]) if len(sys.argv) > 4 else 60
    keys = ["A", "B", "C"]
    lock = threading.Lock()
    got: dict[str, list[int]] = {k: [] for k in keys}

    def on_message(msg):  # type: ignore[no-untyped-def]
        key, _, n = msg.body.decode().partition("-")
        with lock:
            got[key].append(int(n))

    consumer = PushConsumer(group, orderly=True)
    consumer.set_namesrv_addr(ns)
    consumer.subscribe(topic, on_message)
    consumer.start()
    # no wait for the first rebalance: the broker answers a new group's offset query on a young queue
    # with 0 (RocketMQ's rule), so messages sent before the consumer has its queues are not skipped
    producer = Producer(group + "_P")
    producer.set_namesrv_addr(ns)
    producer.start()
    for i in range(count):
        key = keys[i % len(keys)]
        m = Message(topic)
        m.set_keys(key)
        m.set_body(f"{key}-{i}")
        producer.send_orderly(m, keys.index(key))
    producer.shutdown()
    deadline = time.time() + 60
    while time.time() < deadline:
        with lock:
            if sum(len(v) for v in got.values()) >= count:
                break
        time.sleep(0.2)
    time.sleep(1.0)
    consumer.shutdown()
    with lock:
        received = sum(len(v) for v in got.values())
        in_order = all(v == sorted(v) and len(v) == len(set(v)) for v in got.values())
    print(json.dumps({"sent": count, "received": received, "in_order": in_order}), flush=True)
    return 0 if received == count and in_order else 2


if __name__ == "__main__":
    raise SystemExit(main())
