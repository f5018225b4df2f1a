"""PushConsumer scenario: usage push.py ENDPOINT TOPIC GROUP COUNT

Starts a PushConsumer (tag *), sends COUNT messages; the listener fails the first delivery of message 0
(the SDK then sets its invisible time to the backoff, 1 s) and succeeds otherwise. Also a FIFO send
to TOPIC_FIFO if given as 5th argument.
"""

from __future__ import annotations

import sys
import threading
import time

from common import emit, msg_dict
from rocketmq import (
    ClientConfiguration,
    ConsumeResult,
    Credentials,
    FilterExpression,
    Message,
    MessageListener,
    Producer,
    PushConsumer,
)


class Listener(MessageListener):
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.seen: list = []
        self.failed_once = False

    def consume(self, message) -> ConsumeResult:
        with self.lock:
            self.seen.append(msg_dict(message))
            if message.body == b"push-0" and not self.failed_once:
                self.failed_once = True
                return ConsumeResult.FAILURE
        return ConsumeResult.SUCCESS


def main() -> None:
    endpoint, topic, group, count = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    cfg = ClientConfiguration(endpoint, Credentials(), request_timeout=5)
    listener = Listener()
    consumer = PushConsumer(cfg, group, listener, {topic: FilterExpression("*")})
    consumer.startup()
    time.sleep(2)  # let the first long polls start (new groups begin at the queue's end)
    producer = Producer(cfg, (topic,))
    producer.startup()
    sent = []
    for i in range(count):
        m = Message()
        m.topic = topic
        m.body = f"push-{i}".encode()
        m.tag = "T"
        sent.append(producer.send(m).message_id)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        with listener.lock:
            ids = {m["id"] for m in listener.seen}
            if ids >= set(sent) and listener.failed_once and \
                    sum(1 for m in listener.seen if m["body"] == "push-0") >= 2:
                break
        time.sleep(0.2)
    time.sleep(1)
    producer.shutdown()
    consumer.shutdown()
    emit({"sent": sent, "seen": listener.seen})


if __name__ == "__main__":
    main()
