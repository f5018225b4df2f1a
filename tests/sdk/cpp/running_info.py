"""Apache RocketMQ 4.x C++ client (PyPI ``rocketmq`` 0.4.4): a PushConsumer that stays up for admin requests.

    running_info.py NAMESRV_ADDR TOPIC GROUP

Starts a PushConsumer on TOPIC, prints {"started": true} and runs until its standard input closes, so a
test can ask the broker about it (mqadmin consumerStatus: GET_CONSUMER_RUNNING_INFO to the client).
"""

from __future__ import annotations

import json
import sys

from rocketmq.client import PushConsumer


def main() -> int:
    ns, topic, group = sys.argv[1], sys.argv[2], sys.argv[3]
    consumer = PushConsumer(group)
    consumer.set_namesrv_addr(ns)
    consumer.set_thread_count(1)
    consumer.subscribe(topic, lambda msg: None)
    consumer.start()
    print(json.dumps({"started": True}), flush=True)
    sys.stdin.read()  # until the test closes it
    consumer.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
