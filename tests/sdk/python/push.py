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
        self.cond = threading.Condition()  # notified after every delivery
        self.seen: list = []
        self.failed_once = False

    def consume(self, message) -> ConsumeResult:
        with self.cond:
            self.seen.append(msg_dict(message))
            self.cond.notify_all()
            if message.body == b"push-0" and not self.failed_once:
                self.failed_once = True
                return ConsumeResult.FAILURE
        return ConsumeResult.SUCCESS

    def done(self, sent: list) -> bool:
        """Every sent message seen, and push-0 seen again after its failed first delivery (call with cond)."""
        return {m["id"] for m in self.seen} >= set(sent) and self.failed_once and \
            sum(1 for m in self.seen if m["body"] == "push-0") >= 2


def polling(consumer, topic: str) -> bool:
    """The consumer got its assignment for topic: it made a process queue and issued that queue's first long
    poll (PushConsumer.__process_message_queues in SDK 5.1.2; the SDK exposes no public readiness hook)."""
    queues = getattr(consumer, "_PushConsumer__process_queues", None)
    return queues is not None and any(mq.topic == topic for mq in queues.keys())


def main() -> None:
    endpoint, topic, group, count = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    cfg = ClientConfiguration(endpoint, Credentials(), request_timeout=5)
    listener = Listener()
    consumer = PushConsumer(cfg, group, listener, {topic: FilterExpression("*")})
    consumer.startup()
    # Send only once the consumer polls the topic, so a group that begins at the queue's end still sees
    # every message (the e2e test's group is EARLIEST anyway). Bounded: on timeout send regardless and let
    # the test's assertions report what was missed.
    deadline = time.monotonic() + 30
    while not polling(consumer, topic) and time.monotonic() < deadline:
        time.sleep(0.05)
    producer = Producer(cfg, (topic,))
    producer.startup()
    sent = []
    for i in range(count):
        m = Message()
        m.topic = topic
        m.body = f"push-{i}".encode()
        m.tag = "T"
        sent.append(producer.send(m).message_id)
    with listener.cond:  # woken by each delivery, bounded by 60 s in all
        listener.cond.wait_for(lambda: listener.done(sent), timeout=60)
    producer.shutdown()
    consumer.shutdown()  # waits for running listener calls and their ack / change-invisible to finish
    with listener.cond:
        seen = list(listener.seen)
    emit({"sent": sent, "seen": seen})


if __name__ == "__main__":
    main()
