"""Issue 5, consumption: retry and DLQ, TAG and SQL92 filters, PushConsumer, per-group start position
(official Python SDK), and PullMessage/GetOffset/UpdateOffset/QueryOffset (our stubs: the Python SDK
5.1.2 has no pull consumer), in Local and Cluster mode."""

from __future__ import annotations

import time

import pytest

from protos.apache.rocketmq.v2 import definition_pb2 as pb
from protos.apache.rocketmq.v2 import service_pb2 as spb
from tests.e2e.test_types_support import MODES, SdkDriver, Stubs, TypesStack, needs_sdk, types_stack
from tests.harness import mqadmin, poll_until

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300), needs_sdk]

EARLIEST = ("--attributes", "+consumeFromWhere=EARLIEST")


@pytest.fixture(scope="module", params=MODES)
def st(request, tmp_path_factory):
    with types_stack(request.param, tmp_path_factory.mktemp(f"consume-{request.param}"),
                     broker={"enablePropertyFilter": "true"},
                     # auto renew (PushConsumer): a 3 s invisible time renewed by 3 s slices 1.5 s ahead
                     proxy={"minInvisibleTimeMillsForRecv": 1000, "defaultInvisibleTimeMills": 3000,
                            "renewSliceTimeMillis": 3000, "renewAheadTimeMillis": 1500}) as s:
        yield s


@pytest.fixture(scope="module")
def drv(st: TypesStack) -> SdkDriver:
    d = st.driver()
    for t in ("TypesRetry", "TypesPushDlq", "TypesPush", "TypesPull", "TypesSlow"):
        st.create_topic(t)
    # one broker, so that one empty receive proves nothing else matches (a receive polls one broker)
    st.create_topic("TypesFilter", broker="broker-a")
    d.ok("producer", name="p", topics=["TypesRetry", "TypesFilter"])
    return d


def _bodies(msgs: list[dict]) -> list[str]:
    return sorted(m["body"] for m in msgs)


def test_redelivery_then_dead_letter_queue(st: TypesStack, drv: SdkDriver) -> None:
    st.create_group("GRetry", "-r", "1", *EARLIEST)  # retryMaxTimes 1: two deliveries, then %DLQ%GRetry
    sent = drv.ok("send", producer="p", topic="TypesRetry", body="retry-me", tag="T")
    drv.ok("simple", name="cr", group="GRetry", subs={"TypesRetry": ["*", "TAG"]})
    first = drv.receive_until("cr", 1, timeout=30, ack=False, invisible_s=1)
    assert [(m["id"], m["attempt"]) for m in first] == [(sent["id"], 1)], st.logs()
    again = drv.receive_until("cr", 1, timeout=30, ack=False, invisible_s=1)
    assert [(m["id"], m["attempt"]) for m in again] == [(sent["id"], 2)]
    assert again[0]["recv_ms"] - first[0]["recv_ms"] >= 900  # not before its invisible time ran out
    drv.ok("close", name="cr")

    dlq = "%DLQ%GRetry"
    drv.ok("simple", name="cd", group="GDlqReader", subs={dlq: ["*", "TAG"]})
    got = drv.receive_until("cd", 1, timeout=60, tolerate="route")
    assert [m["body"] for m in got] == ["retry-me"] and got[0]["id"] == sent["id"], got
    drv.ok("close", name="cd")


def test_push_consumer_retry_then_forward_to_dlq(st: TypesStack, drv: SdkDriver) -> None:
    """PushConsumer: a failed message comes back (attempt 2, after the backoff); one that always fails
    is forwarded by the SDK (ForwardMessageToDeadLetterQueue) after the group's max attempts."""
    st.create_group("GPushDlq", "-r", "1", *EARLIEST)
    drv.ok("producer", name="pp", topics=["TypesPushDlq"])
    drv.ok("push", name="push", group="GPushDlq", subs={"TypesPushDlq": ["*", "TAG"]},
           fail={"once": 1, "always": 100})
    ids = {b: drv.ok("send", producer="pp", topic="TypesPushDlq", body=b)["id"] for b in ("ok", "once", "always")}

    def seen() -> list[dict]:
        return drv.ok("seen", name="push")["seen"]

    poll_until(lambda: [m["attempt"] for m in seen() if m["body"] == "once"] == [1, 2]
               and len([m for m in seen() if m["body"] == "always"]) >= 2, timeout=60, what="push retries")
    s = seen()
    assert [m["attempt"] for m in s if m["body"] == "ok"] == [1]
    assert [m["attempt"] for m in s if m["body"] == "always"][:2] == [1, 2]
    drv.ok("simple", name="cd2", group="GPushDlqReader", subs={"%DLQ%GPushDlq": ["*", "TAG"]})
    got = drv.receive_until("cd2", 1, timeout=60, tolerate="route")
    assert [(m["body"], m["id"]) for m in got] == [("always", ids["always"])], got
    drv.ok("close", name="cd2")
    # forwarded, not delivered a third time
    assert len([m for m in seen() if m["body"] == "always"]) == 2
    drv.ok("close", name="push")


def test_tag_filter_and_sql92(st: TypesStack, drv: SdkDriver) -> None:
    st.create_group("GTag", *EARLIEST)
    st.create_group("GSql", *EARLIEST)
    rows = [
        ("a", {"color": "red", "size": "5"}), ("b", {"color": "blue", "size": "1"}),
        ("c", {"color": "red", "size": "10"}), ("a", {"region": "eu", "size": "2"}),
        ("d", {"color": "green", "size": "7", "region": "us"}), (None, {"color": "red", "size": "4"}),
        ("e", {"flag": "true", "size": "1.5"}), ("e", {"flag": "false", "size": "100"}),
    ]
    for i, (tag, props) in enumerate(rows):
        drv.ok("send", producer="p", topic="TypesFilter", body=f"f{i}", tag=tag, props=props)
    drv.ok("simple", name="ct", group="GTag", subs={"TypesFilter": ["a||b", "TAG"]})
    tagged = drv.receive_until("ct", 3, timeout=30)
    sql = ("(color = 'red' AND size BETWEEN 4 AND 9) OR region IN ('eu') "
           "OR (color IS NOT NULL AND NOT (color <> 'green') AND size > 6)")
    drv.ok("simple", name="cs", group="GSql", subs={"TypesFilter": [sql, "SQL92"]})
    selected = drv.receive_until("cs", 4, timeout=30)
    st.create_group("GSql2", *EARLIEST)
    sql2 = "(region IS NULL AND color IS NULL AND size < 2.5 AND TRUE) OR (size > 50 AND NOT FALSE AND flag = 'false')"
    drv.ok("simple", name="cs2", group="GSql2", subs={"TypesFilter": [sql2, "SQL92"]})
    selected2 = drv.receive_until("cs2", 2, timeout=30)
    # nothing else is left for any group
    for c in ("ct", "cs", "cs2"):
        assert drv.ok("receive", consumer=c, max=16, invisible_s=15)["messages"] == [], c
        drv.ok("close", name=c)
    assert _bodies(tagged) == ["f0", "f1", "f3"]
    assert _bodies(selected) == ["f0", "f3", "f4", "f5"]
    assert _bodies(selected2) == ["f6", "f7"]


def test_consumer_connection_lists_grpc_consumers_in_local_mode(st: TypesStack, drv: SdkDriver) -> None:
    """As RocketMQ: a Local-mode proxy registers each gRPC consumer with its broker (mqadmin
    consumerConnection lists it while it heartbeats, not after it ends); a Cluster-mode proxy keeps its
    consumers to itself."""
    st.create_group("GConn", *EARLIEST)
    drv.ok("simple", name="cconn", group="GConn", subs={"TypesFilter": ["a||b", "TAG"]})

    def connections() -> str:
        cp = mqadmin("consumerConnection", "-g", "GConn", "-n", st.namesrv, ok=False, timeout=30)
        return cp.stdout if cp.returncode == 0 else ""

    if st.mode == "local":
        out = poll_until(lambda: "PYTHON" in (o := connections()) and o, timeout=30, interval=0.5,
                         what="the SDK's consumer listed by consumerConnection")
        assert "TypesFilter" in out and "a||b" in out and "ConsumeType: CONSUME_ACTIVELY" in out, out
        assert "V5_1_2" in out, out  # the SDK's x-mq-client-version, named as RocketMQ names versions
        # consumerStatus: the broker asks the proxy serving the consumer
        status = mqadmin("consumerStatus", "-g", "GConn", "-n", st.namesrv, timeout=30).stdout
        assert "#Consumer Subscription#" in status and "TypesFilter" in status, status
        assert "PROP_CONSUME_TYPE" in status and "CONSUME_ACTIVELY" in status, status
        # with -s the client is asked for its threads on its Telemetry stream; the Python SDK does not
        # answer that command, so the proxy's bounded wait ends it
        status = mqadmin("consumerStatus", "-g", "GConn", "-s", "-n", st.namesrv, timeout=30).stdout
        assert "CODE: 207" in status and "Timeout" in status, status  # CONSUME_MSG_TIMEOUT
        drv.ok("close", name="cconn")
        poll_until(lambda: connections() == "", timeout=30, interval=0.5,
                   what="the closed consumer gone from consumerConnection")
    else:
        drv.ok("receive", consumer="cconn", max=1, invisible_s=15)  # it is heartbeating by now
        assert connections() == ""
        drv.ok("close", name="cconn")


def test_bad_filter_expression(drv: SdkDriver) -> None:
    drv.ok("simple", name="cb", group="GBadSql", subs={"TypesFilter": ["color = = 'x' AND", "SQL92"]})
    r = drv.call("receive", consumer="cb", max=1, invisible_s=15)
    assert r.get("code") == 40010, r
    drv.ok("close", name="cb")


def test_push_consumer_receives_everything(drv: SdkDriver) -> None:
    drv.ok("producer", name="pp2", topics=["TypesPush"])
    drv.ok("push", name="push2", group="GPushAll", subs={"TypesPush": ["x||y", "TAG"]})
    # a new group starts at the queue's end: wait until the consumer's first long polls are parked
    # by sending a probe until one arrives
    probe: list[str] = []

    def probed() -> bool:
        probe.append(drv.ok("send", producer="pp2", topic="TypesPush", body=f"probe-{len(probe)}", tag="x")["id"])
        return any(m["body"].startswith("probe") for m in drv.ok("seen", name="push2")["seen"])

    poll_until(probed, timeout=60, interval=1.0, what="push consumer started")
    ids = [drv.ok("send", producer="pp2", topic="TypesPush", body=f"push-{i}", tag="xy"[i % 2])["id"]
           for i in range(20)]
    drv.ok("send", producer="pp2", topic="TypesPush", body="filtered-out", tag="z")
    poll_until(lambda: {m["id"] for m in drv.ok("seen", name="push2")["seen"]} >= set(ids), timeout=60,
               what="20 pushed messages")
    seen = drv.ok("seen", name="push2")["seen"]
    drv.ok("close", name="push2")
    assert not [m for m in seen if m["body"] == "filtered-out"]
    assert len([m for m in seen if m["body"].startswith("push-")]) == 20  # each exactly once


def test_new_group_start_position(st: TypesStack, drv: SdkDriver) -> None:
    """consumeFromWhere per group (subscription group attribute): LATEST (default), EARLIEST, TIMESTAMP."""
    topic = "TypesStart"
    st.create_topic(topic, broker="broker-a")  # one broker: one receive initialises the group everywhere
    drv.ok("producer", name="ps", topics=[topic])
    for b in ("s0", "s1"):
        drv.ok("send", producer="ps", topic=topic, body=b)
    stamp = int(time.time() * 1000) + 1
    poll_until(lambda: int(time.time() * 1000) > stamp + 2, timeout=1, interval=0.001, what="clock")
    for b in ("s2", "s3"):
        drv.ok("send", producer="ps", topic=topic, body=b)
    st.create_group("GLatest")
    st.create_group("GEarliest", *EARLIEST)
    st.create_group("GStamp", "--attributes", f"+consumeFromWhere=TIMESTAMP,+consumeTimestamp={stamp}")
    st.create_group("GStamp", "-r", "5")  # a later update without attributes keeps them
    for g in ("GLatest", "GEarliest", "GStamp"):
        drv.ok("simple", name=g, group=g, subs={topic: ["*", "TAG"]})
    assert drv.ok("receive", consumer="GLatest", max=16, invisible_s=15)["messages"] == []
    drv.ok("send", producer="ps", topic=topic, body="s4")
    got = {g: _bodies(drv.receive_until(g, n, timeout=30)) for g, n in
           (("GLatest", 1), ("GEarliest", 5), ("GStamp", 3))}
    assert got == {"GLatest": ["s4"], "GEarliest": ["s0", "s1", "s2", "s3", "s4"], "GStamp": ["s2", "s3", "s4"]}
    for g in ("GLatest", "GEarliest", "GStamp"):
        drv.ok("close", name=g)


def test_pull_and_offsets_with_stubs(st: TypesStack, drv: SdkDriver) -> None:
    topic, group = "TypesPull", "GPull"
    drv.ok("producer", name="pl", topics=[topic])
    sent = [drv.ok("send", producer="pl", topic=topic, body=f"pull-{i}")["id"] for i in range(12)]
    s = Stubs(st.endpoint)
    try:
        rq = spb.QueryRouteRequest()
        rq.topic.name = topic
        host, port = st.endpoint.rsplit(":", 1)
        rq.endpoints.addresses.add(host=host, port=int(port))
        route = s.call("QueryRoute", rq)
        assert route.status.code == pb.Code.OK, route.status
        queues = list(route.message_queues)
        assert len(queues) == (4 if st.mode == "local" else 8)
        pulled: list[str] = []
        for mq in queues:
            def q(policy: int, ts_ms: int | None = None, mq: pb.MessageQueue = mq) -> int:
                req = spb.QueryOffsetRequest(message_queue=mq, query_offset_policy=policy)
                if ts_ms is not None:
                    req.timestamp.FromMilliseconds(ts_ms)
                r = s.call("QueryOffset", req)
                assert r.status.code == pb.Code.OK, r.status
                return int(r.offset)

            lo, hi = q(pb.QueryOffsetPolicy.BEGINNING), q(pb.QueryOffsetPolicy.END)
            assert lo == 0
            assert q(pb.QueryOffsetPolicy.TIMESTAMP, 0) == 0
            assert q(pb.QueryOffsetPolicy.TIMESTAMP, int(time.time() * 1000) + 60_000) == hi
            g = spb.GetOffsetRequest(message_queue=mq)
            g.group.name = group
            assert s.call("GetOffset", g).status.code == pb.Code.OFFSET_NOT_FOUND
            pr = spb.PullMessageRequest(message_queue=mq, offset=0, batch_size=32)
            pr.group.name = group
            pr.filter_expression.type = pb.FilterType.TAG
            pr.filter_expression.expression = "*"
            resp = s.call("PullMessage", pr)
            msgs = [x.message for x in resp if x.HasField("message")]
            nexts = [x.next_offset for x in resp if x.WhichOneof("content") == "next_offset"]
            assert len(msgs) == hi - lo and nexts == [hi], (resp, hi)
            offsets = [m.system_properties.queue_offset for m in msgs]
            assert offsets == list(range(lo, hi))
            pulled += [m.system_properties.message_id for m in msgs]
            u = spb.UpdateOffsetRequest(message_queue=mq, offset=hi)
            u.group.name = group
            assert s.call("UpdateOffset", u).status.code == pb.Code.OK
            r = s.call("GetOffset", g)
            assert (r.status.code, r.offset) == (pb.Code.OK, hi)
            # past the end: nothing (no long polling requested)
            pr.offset = hi
            resp = s.call("PullMessage", pr)
            assert resp[0].status.code == pb.Code.MESSAGE_NOT_FOUND, resp
        assert sorted(pulled) == sorted(sent)

        # PullMessage with SQL92 on TypesFilter (filled by test_tag_filter_and_sql92): red ones only
        rq.topic.name = "TypesFilter"
        fq = s.call("QueryRoute", rq).message_queues
        red: list[str] = []
        codes = set()
        for mq in fq:
            pr = spb.PullMessageRequest(message_queue=mq, offset=0, batch_size=32)
            pr.group.name = "GPullSql"
            pr.filter_expression.type = pb.FilterType.SQL
            pr.filter_expression.expression = "color = 'red'"
            resp = s.call("PullMessage", pr)
            codes |= {x.status.code for x in resp if x.HasField("status")}
            red += [x.message.body.decode() for x in resp if x.HasField("message")]
            pr.filter_expression.expression = "color = = 'red' AND"
            bad = s.call("PullMessage", pr)
            assert bad[0].status.code == pb.Code.ILLEGAL_FILTER_EXPRESSION, bad
        assert sorted(red) == ["f0", "f2", "f5"], (red, codes)
    finally:
        s.close()


def test_push_consumer_auto_renew_for_long_processing(st: TypesStack, drv: SdkDriver) -> None:
    """The listener takes 7 s, the proxy's invisible time is 3 s: the proxy renews the receipt handle
    (auto_renew) so the message is not redelivered meanwhile, and the final ack succeeds."""
    st.create_group("GSlow", *EARLIEST)
    drv.ok("producer", name="pslow", topics=["TypesSlow"])
    drv.ok("push", name="slow", group="GSlow", subs={"TypesSlow": ["*", "TAG"]}, slow={"slow": 7})
    sent = drv.ok("send", producer="pslow", topic="TypesSlow", body="slow")
    poll_until(lambda: drv.ok("seen", name="slow")["seen"], timeout=30, what="the slow message processed")
    # after processing and its ack: one more message proves the consumer moved on without a redelivery
    after = drv.ok("send", producer="pslow", topic="TypesSlow", body="after")
    poll_until(lambda: any(m["body"] == "after" for m in drv.ok("seen", name="slow")["seen"]), timeout=30,
               what="the next message")
    seen = drv.ok("seen", name="slow")["seen"]
    drv.ok("close", name="slow")
    assert [(m["id"], m["attempt"]) for m in seen] == [(sent["id"], 1), (after["id"], 1)], seen
    assert seen[0]["done_ms"] - seen[0]["recv_ms"] >= 6900


def test_query_assignment_fifo_per_queue(st: TypesStack) -> None:
    """QueryAssignment: an orderly group gets one assignment per readable queue (FIFO push consumers),
    a normal group one per broker (queue id -1)."""
    st.create_group("GAssignFifo", "-o", "true")
    st.create_group("GAssignNormal")
    s = Stubs(st.endpoint)
    try:
        host, port = st.endpoint.rsplit(":", 1)
        out = {}
        for g in ("GAssignFifo", "GAssignNormal"):
            rq = spb.QueryAssignmentRequest()
            rq.topic.name = "TypesPull"
            rq.group.name = g
            rq.endpoints.addresses.add(host=host, port=int(port))
            r = s.call("QueryAssignment", rq)
            assert r.status.code == pb.Code.OK, r.status
            out[g] = sorted((a.message_queue.broker.name, a.message_queue.id) for a in r.assignments)
    finally:
        s.close()
    brokers = ["broker-a"] if st.mode == "local" else ["broker-a", "broker-b"]
    assert out["GAssignFifo"] == [(b, q) for b in brokers for q in range(4)]
    assert out["GAssignNormal"] == [(b, -1) for b in brokers]
