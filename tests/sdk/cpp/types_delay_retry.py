"""4.x C++ client (rocketmq 0.4.4): delay levels and retry to the dead letter queue (issue 5).

    types_delay_retry.py NAMESRV_ADDR DELAY_TOPIC DELAY_GROUP DLQ_TOPIC DLQ_GROUP

Delay: a PushConsumer on DELAY_TOPIC; probes are sent until one arrives (the consumer then has its
queues), then "plain" (no delay), "lvl1" (DELAY level 1) and "lvl2" (level 2) are sent at once and
their send/receive times recorded. Retry: a PushConsumer on DLQ_TOPIC always answers RECONSUME_LATER
for "dead" (each failure is a CONSUMER_SEND_MSG_BACK) and records every reconsume_times it sees.
Prints one JSON line with what happened; the e2e test asserts.
"""

from __future__ import annotations

import json
import sys
import threading
import time

from rocketmq.client import Message, Producer, PushConsumer


class ReconsumeLater(Exception):
    """Raised by a listener: the C++ client answers RECONSUME_LATER (CONSUMER_SEND_MSG_BACK)."""


def now_ms() -> int:
    return int(time.time() * 1000)


def main() -> int:
    ns, delay_topic, delay_group, dlq_topic, dlq_group = sys.argv[1:6]
    lock = threading.Lock()
    got: dict[str, int] = {}
    dead: list[int] = []

    def on_delay(msg):  # type: ignore[no-untyped-def]
        with lock:
            got.setdefault(msg.body.decode(), now_ms())

    def on_dead(msg):  # type: ignore[no-untyped-def]
        body = msg.body.decode()
        with lock:
            if body == "dead":
                dead.append(msg.reconsume_times)
                raise ReconsumeLater(body)
            got.setdefault(body, now_ms())

    consumers = []
    for topic, group, cb in ((delay_topic, delay_group, on_delay), (dlq_topic, dlq_group, on_dead)):
        c = PushConsumer(group)
        c.set_namesrv_addr(ns)
        c.set_thread_count(1)
        c.subscribe(topic, cb)
        c.start()
        consumers.append(c)
    producer = Producer(delay_group + "_P")
    producer.set_namesrv_addr(ns)
    producer.start()

    def send(topic: str, body: str, level: int = 0, deliver_ms: int = 0) -> list[int]:
        """[ms before the send, ms after its answer]: the broker stored the message in between."""
        m = Message(topic)
        m.set_body(body)
        if level:
            m.set_delay_time_level(level)
        if deliver_ms:
            m.set_property("TIMER_DELIVER_MS", str(deliver_ms))  # a 5.x timed message from a 4.x client
        before = now_ms()
        producer.send_sync(m)
        return [before, now_ms()]

    out: dict = {"sent": {}}
    deadline = time.monotonic() + 60
    n = 0
    while time.monotonic() < deadline:  # probes until both consumers have their queues
        send(delay_topic, f"dprobe-{n}")
        send(dlq_topic, f"rprobe-{n}")
        n += 1
        time.sleep(0.5)  # pacing of the probes only
        with lock:
            if any(k.startswith("dprobe") for k in got) and any(k.startswith("rprobe") for k in got):
                break
    out["sent"]["plain"] = send(delay_topic, "plain")
    out["sent"]["lvl1"] = send(delay_topic, "lvl1", 1)
    out["sent"]["lvl2"] = send(delay_topic, "lvl2", 2)
    out["sent"]["dead"] = send(dlq_topic, "dead")
    out["timed_due"] = now_ms() + 1500
    out["sent"]["timed"] = send(delay_topic, "timed", deliver_ms=out["timed_due"])
    day = 24 * 3600 * 1000
    try:  # beyond the broker's timerMaxDelaySec (3 days)
        send(delay_topic, "timed-4d", deliver_ms=now_ms() + 4 * day)
        out["far_error"] = None
    except Exception as e:  # noqa: BLE001
        out["far_error"] = str(e)
    try:  # within it (the proxy's 1 day limit does not apply to remoting clients)
        send(delay_topic, "timed-2d", deliver_ms=now_ms() + 2 * day)
        out["two_days_error"] = None
    except Exception as e:  # noqa: BLE001
        out["two_days_error"] = str(e)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        with lock:
            if {"plain", "lvl1", "lvl2", "timed"} <= set(got) and len(dead) >= 2:
                break
        time.sleep(0.1)
    for c in consumers:
        c.shutdown()
    producer.shutdown()
    with lock:
        out["received"] = {k: v for k, v in got.items() if "probe" not in k}
        out["dead_reconsume_times"] = list(dead)
    print(json.dumps(out), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
