"""Issue 5, FIFO and topic type checks, with the official Python SDK in Local and Cluster mode.

FIFO topic (message.type=FIFO) + orderly group (updateSubGroup -o true): the messages of one message
group arrive in send order, the next is not delivered while the previous is in flight, and one that is
not acked comes back (delivery_attempt 2) before its successors. Type checks: 40006 for a bad message
group, 40014 for a message whose type does not match the topic, MIXED accepts every type.
"""

from __future__ import annotations

import time

import pytest

from protos.apache.rocketmq.v2 import definition_pb2 as pb
from tests.e2e.test_types_support import (
    MODES,
    SdkDriver,
    Stubs,
    TypesStack,
    check_fifo_order,
    needs_sdk,
    types_stack,
)
from tests.harness import poll_until

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300), needs_sdk]

EARLIEST = ("--attributes", "+consumeFromWhere=EARLIEST")


@pytest.fixture(scope="module", params=MODES)
def st(request, tmp_path_factory):
    # invisible times down to 1 s so that the redelivery below takes seconds, not the proxy's 10 s minimum
    with types_stack(request.param, tmp_path_factory.mktemp(f"fifo-{request.param}"),
                     proxy={"minInvisibleTimeMillsForRecv": 1000}) as s:
        yield s


@pytest.fixture(scope="module")
def drv(st: TypesStack) -> SdkDriver:
    d = st.driver()
    st.create_topic("TypesFifo", "FIFO")
    st.create_topic("TypesNormal", "NORMAL")
    st.create_topic("TypesMixed", "MIXED")
    d.ok("producer", name="p", topics=["TypesFifo", "TypesNormal", "TypesMixed"], checker={})
    return d


def test_fifo_order_hold_and_redelivery(st: TypesStack, drv: SdkDriver) -> None:
    st.create_group("GFifo", "-o", "true", *EARLIEST)
    sent: dict[str, list[str]] = {"ga": [], "gb": []}
    for i in range(5):
        for g in ("ga", "gb"):
            body = f"{g}-{i}"
            drv.ok("send", producer="p", topic="TypesFifo", body=body, group=g)
            sent[g].append(body)
    drv.ok("simple", name="c", group="GFifo", subs={"TypesFifo": ["*", "TAG"]})

    deliveries: list[list[dict]] = []
    first = drv.receive_until("c", 1, timeout=30, ack=False, invisible_s=2, max_num=1)
    assert len(first) == 1, st.logs()
    held = first[0]
    assert held["body"] in ("ga-0", "gb-0") and held["attempt"] == 1
    deliveries.append(first)
    # while `held` is in flight (not acked, 2 s invisible) its successor is not delivered
    r = drv.ok("receive", consumer="c", max=1, invisible_s=30)
    for m in r["messages"]:
        m["acked"] = True
        drv.ok("ack", consumer="c", id=m["id"])
    deliveries.append(r["messages"])

    redelivered: list[dict] = []
    done: set[str] = {m["body"] for m in r["messages"]}
    total = sum(len(v) for v in sent.values())

    def step() -> bool:
        got = drv.ok("receive", consumer="c", max=4, invisible_s=30)["messages"]
        for m in got:
            if m["body"] == held["body"]:
                redelivered.append(m)
            m["acked"] = True
            drv.ok("ack", consumer="c", id=m["id"])
            done.add(m["body"])
        deliveries.append(got)
        return len(done) >= total

    poll_until(step, timeout=90, interval=0.0, what="every FIFO message acked")
    check_fifo_order(deliveries, sent)
    assert redelivered and redelivered[0]["attempt"] == 2, redelivered
    # per message group, the acked sequence is the send sequence
    for g, seq in sent.items():
        acked_order = [m["body"] for b in deliveries for m in b if m.get("acked") and m["group"] == g]
        dedup = list(dict.fromkeys(acked_order))
        assert dedup == seq, (g, acked_order)
    drv.ok("close", name="c")


def test_fifo_push_consumer_failure_keeps_order(st: TypesStack, drv: SdkDriver) -> None:
    st.create_group("GFifoPush", "-o", "true", *EARLIEST)
    sent = {g: [f"{g}-{i}" for i in range(4)] for g in ("pa", "pb", "pc")}
    for i in range(4):
        for g in sent:
            drv.ok("send", producer="p", topic="TypesFifo", body=sent[g][i], group=g)
    drv.ok("push", name="push", group="GFifoPush", subs={"TypesFifo": ["*", "TAG"]}, fail={"pb-1": 1})

    def seen() -> list[dict]:
        return [m for m in drv.ok("seen", name="push")["seen"] if m["body"][:2] in sent]

    poll_until(lambda: {m["body"] for m in seen()} >= {b for v in sent.values() for b in v}
               and sum(1 for m in seen() if m["body"] == "pb-1") >= 2, timeout=60, what="push FIFO")
    s = seen()
    drv.ok("close", name="push")
    for g, seq in sent.items():
        order = [m["body"] for m in s if m["group"] == g]
        expect = seq if g != "pb" else ["pb-0", "pb-1", "pb-1", "pb-2", "pb-3"]
        assert order == expect, (g, order)
    # the Python SDK retries a failed FIFO message locally (same delivery_attempt) before moving on
    assert [m["attempt"] for m in s if m["body"] == "pb-1"][0] == 1


def test_message_group_too_long_or_with_control_chars(drv: SdkDriver) -> None:
    ok = drv.call("send", producer="p", topic="TypesFifo", body="g63", group="g" * 63)
    assert "error" not in ok, ok
    r = drv.call("send", producer="p", topic="TypesFifo", body="g64", group="g" * 64)
    assert r.get("code") == 40006, r
    r = drv.call("send", producer="p", topic="TypesFifo", body="gctl", group="a\x01b")
    assert r.get("code") == 40006, r


def test_type_mismatch_and_mixed(st: TypesStack, drv: SdkDriver) -> None:
    # the SDK already refuses from the route's accept_message_types (the proxy reports them) ...
    r = drv.call("send", producer="p", topic="TypesFifo", body="normal-to-fifo")
    assert "not match" in r.get("error", ""), r
    # ... so the proxy's own check is driven with our stubs: 40014 for every mismatch
    MT = pb.MessageType
    due = int(time.time() * 1000) + 3_000
    stubs = Stubs(st.endpoint)
    try:
        for topic, mtype, extra in (
            ("TypesFifo", MT.NORMAL, {}),
            ("TypesNormal", MT.FIFO, {"message_group": "g"}),
            ("TypesNormal", MT.DELAY, {"delivery_ms": due}),
            ("TypesNormal", MT.TRANSACTION, {}),
            ("TypesFifo", MT.DELAY, {"delivery_ms": due}),
        ):
            res = stubs.send(topic, "mismatch", mtype, **extra)
            code = res.entries[0].status.code if res.entries else res.status.code
            assert code == pb.Code.MESSAGE_PROPERTY_CONFLICT_WITH_TYPE, (topic, MT.Name(mtype), res)
        for mtype, extra in ((MT.NORMAL, {}), (MT.FIFO, {"message_group": "g"}), (MT.DELAY, {"delivery_ms": due})):
            res = stubs.send("TypesMixed", "mixed", mtype, **extra)
            assert res.status.code == pb.Code.OK, (MT.Name(mtype), res)
    finally:
        stubs.close()
    # and the SDK sends every type to a MIXED topic
    for kw in ({}, {"group": "g"}, {"delivery_ms": due}, {"tx": "commit"}):
        r = drv.call("send", producer="p", topic="TypesMixed", body=f"mixed-{sorted(kw)}", **kw)
        assert "error" not in r, (kw, r)


def test_fifo_message_past_max_attempts_goes_to_dlq_and_unblocks_its_group(st: TypesStack, drv: SdkDriver) -> None:
    st.create_group("GFifoDlq", "-o", "true", "-r", "1", *EARLIEST)  # two deliveries
    drv.ok("send", producer="p", topic="TypesFifo", body="fd-0", group="fd")
    drv.ok("send", producer="p", topic="TypesFifo", body="fd-1", group="fd")
    drv.ok("simple", name="cfd", group="GFifoDlq", subs={"TypesFifo": ["*", "TAG"]})
    seen: list[tuple[str, int]] = []

    def step() -> bool:
        for m in drv.ok("receive", consumer="cfd", max=1, invisible_s=1)["messages"]:
            if not m["body"].startswith("fd-"):
                drv.ok("ack", consumer="cfd", id=m["id"])  # other tests' messages on this topic
                continue
            seen.append((m["body"], m["attempt"]))
            if m["body"] == "fd-1":
                drv.ok("ack", consumer="cfd", id=m["id"])
                return True
        return False

    poll_until(step, timeout=60, interval=0.0, what="fd-1 after fd-0 gave up")
    drv.ok("close", name="cfd")
    assert seen == [("fd-0", 1), ("fd-0", 2), ("fd-1", 1)], seen
    drv.ok("simple", name="cfdd", group="GFifoDlqReader", subs={"%DLQ%GFifoDlq": ["*", "TAG"]})
    dead = drv.receive_until("cfdd", 1, timeout=30, tolerate="route")
    drv.ok("close", name="cfdd")
    assert [m["body"] for m in dead] == ["fd-0"]
