"""Apache RocketMQ 4.x C++ client (PyPI ``rocketmq`` 0.4.4, librocketmq) against our broker.

    send_and_consume.py NAMESRV_ADDR TOPIC GROUP [COUNT]

Starts a PushConsumer, waits for it to be assigned its queues, sends COUNT messages with send_sync and
waits until each has been received. Prints one JSON line: {"sent": n, "received": n, "duplicates": n,
"missing": [...]} and exits 0 when every message arrived exactly once.
"""

from __future__ import annotations

import json
import sys
import threading
import time

from rocketmq.client import Message, Producer, PushConsumer, SendStatus


def main() -> int:
    ns, topic, group = sys.argv[1], sys.argv[2], sys.argv[3]
    count = int(sys.argv[4]) if len(sys.argv) > 4 else 100
    lock = threading.Lock()
    seen: dict[str, int] = {}

    def on_message(msg):  # type: ignore[no-untyped-def]
        key = msg.body.decode()
        with lock:
            seen[key] = seen.get(key, 0) + 1

    consumer = PushConsumer(group)
    consumer.set_namesrv_addr(ns)
    consumer.set_thread_count(2)
    consumer.subscribe(topic, on_message)
    consumer.start()
    # no wait for the first rebalance: the broker answers a new group's offset query on a young queue
    # with 0 (RocketMQ's rule), so messages sent before the consumer has its queues are not skipped

    producer = Producer(group + "_P")
    producer.set_namesrv_addr(ns)
    producer.start()
    sent = 0
    for i in range(count):
        m = Message(topic)
        m.set_keys(f"k{i}")
        m.set_tags("TagA")
        m.set_body(f"msg-{i}")
        r = producer.send_sync(m)
        if r.status != SendStatus.OK:
            print(json.dumps({"error": f"send {i} status {r.status}"}), flush=True)
            return 1
        sent += 1
    producer.shutdown()

    deadline = time.time() + 60
    while time.time() < deadline:
        with lock:
            if len(seen) >= count:
                break
        time.sleep(0.2)
    time.sleep(2.0)  # late duplicates
    consumer.shutdown()
    with lock:
        missing = [f"msg-{i}" for i in range(count) if f"msg-{i}" not in seen]
        dups = sum(v - 1 for v in seen.values() if v > 1)
    print(json.dumps({"sent": sent, "received": len(seen), "duplicates": dups, "missing": missing[:10]}),
          flush=True)
    return 0 if not missing and dups == 0 else 2


if __name__ == "__main__":
    raise SystemExit(main())
