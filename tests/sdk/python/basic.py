"""Producer + SimpleConsumer scenario against a proxy.

usage: basic.py ENDPOINT TOPIC GROUP
Sends 3 TagA messages (keys, properties) and 2 TagB; a SimpleConsumer filtering TagA receives them,
acks two, extends the third to 1 s with change_invisible_duration and gets it again (attempt 2).
Also sends to a system topic (expects code 40002).
"""

from __future__ import annotations

import sys
import threading
import time

from common import emit, err_code, msg_dict
from rocketmq import ClientConfiguration, Credentials, FilterExpression, Message, Producer, SimpleConsumer


def main() -> None:
    out: dict = {"sent": [], "received": [], "errors": []}
    try:
        run(out)
    except Exception as e:  # noqa: BLE001  (reported, not raised: the test shows it)
        import traceback

        out["errors"].append(f"fatal: {type(e).__name__}: {e}\n{traceback.format_exc()}")
    emit(out)


def run(out: dict) -> None:
    endpoint, topic, group = sys.argv[1:4]
    cfg = ClientConfiguration(endpoint, Credentials(), request_timeout=5)
    consumer = SimpleConsumer(cfg, group, {topic: FilterExpression("TagA")}, await_duration=5)
    consumer.startup()
    got: list = []
    stop = time.monotonic() + 40
    first_pop = threading.Event()

    def receive_loop() -> None:
        # (a new group starts at the end of each queue on its first pop unless its consumeFromWhere
        # attribute says EARLIEST, as the e2e tests set it)
        polls = 0
        while time.monotonic() < stop and len(got) < 3:
            try:
                # 60 s: longer than this script's slowest phase on a loaded machine, so nothing
                # expires and comes back as a second copy before the acks below
                msgs = consumer.receive(16, 60)
            except Exception as e:  # noqa: BLE001
                out["errors"].append(f"receive: {e}")
                msgs = []
            polls += 1
            if polls >= 1:
                first_pop.set()
            got.extend(msgs or [])

    t = threading.Thread(target=receive_loop, daemon=True)
    t.start()
    first_pop.wait(2)
    producer = Producer(cfg, (topic,))
    producer.startup()
    for i in range(3):
        m = Message()
        m.topic = topic
        m.body = f"body-A{i}".encode()
        m.tag = "TagA"
        m.keys = f"key-{i}"
        m.add_property("color", "red")
        m.add_property("idx", str(i))
        out["sent"].append(producer.send(m).message_id)
    for i in range(2):
        m = Message()
        m.topic = topic
        m.body = f"body-B{i}".encode()
        m.tag = "TagB"
        producer.send(m)
    # system topic: the SDK accepts the name, the proxy refuses it with ILLEGAL_TOPIC
    try:
        m = Message()
        m.topic = "TBW102"
        m.body = b"x"
        producer.send(m)
        out["bad_topic_code"] = None
    except Exception as e:  # noqa: BLE001
        out["bad_topic_code"] = err_code(e)
        out["bad_topic_error"] = str(e)
    # a reserved property key: refused by the proxy with ILLEGAL_MESSAGE_PROPERTY_KEY (40007)
    try:
        m = Message()
        m.topic = topic
        m.body = b"x"
        m.add_property("UNIQ_KEY", "mine")
        producer.send(m)
        out["bad_prop_code"] = None
    except Exception as e:  # noqa: BLE001
        out["bad_prop_code"] = err_code(e)
    t.join(45)
    out["received"] = [msg_dict(m) for m in got]
    if len(got) >= 3:
        consumer.ack(got[0])
        consumer.ack(got[1])
        consumer.change_invisible_duration(got[2], 1)
        again: list = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not again:
            again = consumer.receive(16, 15) or []
        out["redelivered"] = [msg_dict(m) for m in again]
        for m in again:
            consumer.ack(m)
    # invisible duration below 10 s: ILLEGAL_INVISIBLE_TIME (40011)
    try:
        consumer.receive(1, 5)
        out["bad_invisible_code"] = None
    except Exception as e:  # noqa: BLE001
        out["bad_invisible_code"] = err_code(e)
    # nothing left: an empty receive
    try:
        rest = consumer.receive(16, 15) or []
        out["after_ack"] = len(rest)
    except Exception as e:  # noqa: BLE001
        out["after_ack_error"] = str(e)
    producer.shutdown()
    consumer.shutdown()


if __name__ == "__main__":
    main()
