"""4.x C++ client: a PushConsumer that fails the first delivery of each message (RECONSUME_LATER) gets it
again through the broker's retry topic (CONSUMER_SEND_MSG_BACK + delay level), with reconsume_times 1.

    retry.py NAMESRV_ADDR TOPIC GROUP [COUNT]

Prints one JSON line {"sent": n, "first": n, "redelivered": n, "reconsume_times": [...]}.
"""

from __future__ import annotations

import json
import sys
import threading
import time

from rocketmq.client import Message, Producer, PushConsumer


class Retry(Exception):
    pass


def main() -> int:
    ns, topic, group = sys.argv[1], sys.argv[2], sys.argv[3]
    count = int(sys.argv[4]) if len(sys.argv) > 4 else 5
    lock = threading.Lock()
    first: set[str] = set()
    again: dict[str, int] = {}

    def on_message(msg):  # type: ignore[no-untyped-def]
        key = msg.body.decode()
        with lock:
            if key not in first:
                first.add(key)
                raise Retry(key)
            again[key] = msg.reconsume_times

    consumer = PushConsumer(group)
    consumer.set_namesrv_addr(ns)
    consumer.set_thread_count(1)
    consumer.subscribe(topic, on_message)
    consumer.start()
    # no wait for the first rebalance: the broker answers a new group's offset query on a young queue
    # with 0 (RocketMQ's rule), so messages sent before the consumer has its queues are not skipped
    producer = Producer(group + "_P")
    producer.set_namesrv_addr(ns)
    producer.start()
    for i in range(count):
        m = Message(topic)
        m.set_body(f"r-{i}")
        producer.send_sync(m)
    producer.shutdown()
    deadline = time.time() + 60
    while time.time() < deadline:
        with lock:
            if len(again) >= count:
                break
        time.sleep(0.2)
    consumer.shutdown()
    with lock:
        print(json.dumps({"sent": count, "first": len(first), "redelivered": len(again),
                          "reconsume_times": sorted(set(again.values()))}), flush=True)
    return 0 if len(again) == count else 2


if __name__ == "__main__":
    raise SystemExit(main())
