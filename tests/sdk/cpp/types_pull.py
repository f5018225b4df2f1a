"""4.x C++ client PullConsumer (PULL_MESSAGE over remoting) with a tag expression (issue 5).

    types_pull.py NAMESRV_ADDR TOPIC GROUP COUNT

Sends COUNT messages alternating tags A and B with send_sync, then pulls every queue from offset 0 with
the expression "A". Prints one JSON line {"sent_a": [...], "pulled": [[body, tag, queue_offset], ...]}.
"""

from __future__ import annotations

import json
import sys

from rocketmq.client import Message, Producer, PullConsumer


def main() -> int:
    ns, topic, group, count = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    producer = Producer(group + "_P")
    producer.set_namesrv_addr(ns)
    producer.start()
    sent_a = []
    for i in range(count):
        tag = "AB"[i % 2]
        m = Message(topic)
        m.set_tags(tag)
        m.set_body(f"p-{i}")
        producer.send_sync(m)
        if tag == "A":
            sent_a.append(f"p-{i}")
    producer.shutdown()
    consumer = PullConsumer(group)
    consumer.set_namesrv_addr(ns)
    consumer.start()
    pulled = [[m.body.decode(), m.tags.decode() if isinstance(m.tags, bytes) else m.tags, m.queue_offset]
              for m in consumer.pull(topic, "A")]
    consumer.shutdown()
    print(json.dumps({"sent_a": sent_a, "pulled": pulled}), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
