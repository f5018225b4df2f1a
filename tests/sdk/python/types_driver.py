"""An interactive driver around the official Python SDK, for the message-type end-to-end tests.

usage: types_driver.py ENDPOINT

Reads one JSON command per line on stdin, answers one line "@@ <json>" on stdout per command, so a
test can interleave SDK calls with server restarts. Clients are kept by name. Every SDK exception is
answered as {"error": str, "code": int|None}, never raised.

Commands (field "op"):
  producer   name, topics, [checker]   checker: {"<message body>": "COMMIT"|"ROLLBACK"|"UNKNOWN"}
  send       producer, topic, body, [tag, keys, props, group, delivery_ms, tx ("commit"|"rollback"|"none")]
             (the SDK carries delivery timestamps in whole seconds: delivery_ms is rounded down)
  send_many  producer, topic, bodies, delivery_ms   (delayed messages, one SDK send each)
  recall     producer, topic, handle
  answers    producer, answers         change the checker's answers
  checked    producer                  -> bodies the TransactionChecker was asked about
  simple     name, group, subs {topic: [expression, "TAG"|"SQL92"]}, [await_s]
  receive    consumer, [max, invisible_s]    -> messages (msg_dict + "recv_ms")
  ack        consumer, id
  invisible  consumer, id, seconds
  push       name, group, subs, [fail, slow]   fail: {"<body>": times the listener answers FAILURE},
             slow: {"<body>": seconds the listener takes}
  seen       name                        -> messages the push listener saw (with "recv_ms")
  close      name
"""

from __future__ import annotations

import json
import sys
import threading
import time
import traceback

from common import err_code, msg_dict
from rocketmq import (
    ClientConfiguration,
    ConsumeResult,
    Credentials,
    FilterExpression,
    Message,
    MessageListener,
    Producer,
    PushConsumer,
    SimpleConsumer,
    TransactionChecker,
    TransactionResolution,
)
from rocketmq.grpc_protocol import FilterType

clients: dict = {}
received: dict = {}  # (consumer, message id) -> the last Message received
extras: dict = {}  # name -> checker / listener


def now_ms() -> int:
    return int(time.time() * 1000)


class Checker(TransactionChecker):
    def __init__(self, answers: dict) -> None:
        self.answers = answers
        self.lock = threading.Lock()
        self.checked: list = []

    def check(self, message) -> TransactionResolution:
        body = message.body.decode(errors="replace")
        with self.lock:
            self.checked.append(body)
        with self.lock:
            answer = self.answers.get(body, "COMMIT")
        if answer == "UNKNOWN":  # this SDK has no UNKNOWN: UNSPECIFIED leaves the message unresolved
            return TransactionResolution.TRANSACTION_RESOLUTION_UNSPECIFIED
        return getattr(TransactionResolution, answer)


class Listener(MessageListener):
    def __init__(self, fail: dict, slow: dict) -> None:
        self.fail = dict(fail)
        self.slow = dict(slow)
        self.lock = threading.Lock()
        self.seen: list = []

    def consume(self, message) -> ConsumeResult:
        d = msg_dict(message)
        d["recv_ms"] = now_ms()
        if d["body"] in self.slow:
            # Deliberate, not synchronisation: simulates a listener that takes this long to process the
            # message (the behaviour under test, e.g. the SDK renewing the invisible time meanwhile).
            time.sleep(self.slow[d["body"]])
            d["done_ms"] = now_ms()
        with self.lock:
            self.seen.append(d)
            left = self.fail.get(d["body"], 0)
            if left > 0:
                self.fail[d["body"]] = left - 1
                return ConsumeResult.FAILURE
        return ConsumeResult.SUCCESS


def subs_of(spec: dict) -> dict:
    out = {}
    for topic, (expr, kind) in spec.items():
        out[topic] = FilterExpression(expr, FilterType.SQL if kind == "SQL92" else FilterType.TAG)
    return out


def handle(cfg: ClientConfiguration, c: dict) -> dict:
    op = c["op"]
    if op == "producer":
        checker = Checker(c["checker"]) if c.get("checker") is not None else None
        p = Producer(cfg, tuple(c.get("topics") or ()), checker)
        p.startup()
        clients[c["name"]] = p
        extras[c["name"]] = checker
        return {}
    if op == "send":
        p = clients[c["producer"]]
        m = Message()
        m.topic = c["topic"]
        m.body = c["body"].encode()
        if c.get("tag"):
            m.tag = c["tag"]
        for k in c.get("keys") or ():
            m.keys = k
        for k, v in (c.get("props") or {}).items():
            m.add_property(k, v)
        if c.get("group"):
            m.message_group = c["group"]
        if c.get("delivery_ms"):
            m.delivery_timestamp = int(c["delivery_ms"]) // 1000  # the Python SDK sends whole seconds
        tx_mode = c.get("tx")
        if tx_mode:
            tx = p.begin_transaction()
            r = p.send(m, tx)
            if tx_mode == "commit":
                tx.commit()
            elif tx_mode == "rollback":
                tx.rollback()
        else:
            r = p.send(m)
        return {"id": r.message_id, "recall_handle": getattr(r, "recall_handle", None), "sent_ms": now_ms(),
                "queue": getattr(r.message_queue, "id", None) if r.message_queue is not None else None}
    if op == "send_many":  # delayed messages in a burst: one command, one SDK send each
        p = clients[c["producer"]]
        out = []
        for body, due in zip(c["bodies"], c["delivery_ms"], strict=True):
            m = Message()
            m.topic = c["topic"]
            m.body = body.encode()
            m.delivery_timestamp = int(due) // 1000
            out.append(p.send(m).message_id)
        return {"ids": out}
    if op == "recall":
        return {"id": clients[c["producer"]].recall_message(c["topic"], c["handle"])}
    if op == "answers":
        ch = extras[c["producer"]]
        with ch.lock:
            ch.answers.update(c["answers"])
        return {}
    if op == "checked":
        ch = extras[c["producer"]]
        with ch.lock:
            return {"checked": list(ch.checked)}
    if op == "simple":
        sc = SimpleConsumer(cfg, c["group"], subs_of(c["subs"]), await_duration=c.get("await_s", 2))
        sc.startup()
        clients[c["name"]] = sc
        return {}
    if op == "receive":
        sc = clients[c["consumer"]]
        msgs = sc.receive(c.get("max", 16), c.get("invisible_s", 15)) or []
        t = now_ms()
        out = []
        for m in msgs:
            received[(c["consumer"], m.message_id)] = m
            d = msg_dict(m)
            d["recv_ms"] = t
            d["delivery_ms"] = m.delivery_timestamp
            out.append(d)
        return {"messages": out}
    if op == "ack":
        clients[c["consumer"]].ack(received.pop((c["consumer"], c["id"])))
        return {}
    if op == "invisible":
        sc = clients[c["consumer"]]
        m = received[(c["consumer"], c["id"])]
        sc.change_invisible_duration(m, c["seconds"])
        return {}
    if op == "push":
        lst = Listener(c.get("fail") or {}, c.get("slow") or {})
        pc = PushConsumer(cfg, c["group"], lst, subs_of(c["subs"]))
        pc.startup()
        clients[c["name"]] = pc
        extras[c["name"]] = lst
        return {}
    if op == "seen":
        lst = extras[c["name"]]
        with lst.lock:
            return {"seen": list(lst.seen)}
    if op == "close":
        cl = clients.pop(c["name"], None)
        if cl is not None:
            cl.shutdown()
        return {}
    raise ValueError(f"unknown op {op!r}")


def main() -> None:
    cfg = ClientConfiguration(sys.argv[1], Credentials(), request_timeout=5)
    for line in sys.stdin:
        line = line.strip()
        if not line:
            continue
        c = json.loads(line)
        try:
            out = handle(cfg, c)
        except Exception as e:  # noqa: BLE001 - every failure goes back to the test
            out = {"error": f"{type(e).__name__}: {e}", "code": err_code(e),
                   "trace": traceback.format_exc(limit=3)}
        sys.stdout.write("@@ " + json.dumps(out) + "\n")
        sys.stdout.flush()
    for name in list(clients):
        try:
            clients.pop(name).shutdown()
        except Exception:  # noqa: BLE001
            pass


if __name__ == "__main__":
    main()
