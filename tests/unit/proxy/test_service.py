"""The servicer through a real grpc.aio server with a fake Backend."""

from __future__ import annotations

import asyncio
import time

import grpc
import pytest

from backends.api import BackendError, SendStatus
from backends.model import MessageExt, SubscriptionGroupConfig
from backends.remoting.codes import ResponseCode
from backends.remoting.version import version_desc
from protos.apache.rocketmq.v2 import definition_pb2 as pb
from protos.apache.rocketmq.v2 import service_pb2 as spb
from tests.unit.proxy.conftest import MD

C = pb.Code


def msg(topic="T", body=b"hello", mid="01AA", **sp) -> pb.Message:
    m = pb.Message(body=body)
    m.topic.name = topic
    m.system_properties.message_id = mid
    m.system_properties.message_type = pb.MessageType.NORMAL
    for k, v in sp.items():
        if k == "keys":
            m.system_properties.keys.extend(v)
        else:
            setattr(m.system_properties, k, v)
    return m


async def send(env, *msgs, md=MD):
    return await env.stub.SendMessage(spb.SendMessageRequest(messages=list(msgs)), metadata=md)


async def test_query_route(env):
    env.backend.add_topic("F", "FIFO")
    req = spb.QueryRouteRequest()
    req.topic.name = "F"
    req.endpoints.scheme = pb.AddressScheme.IPv4
    req.endpoints.addresses.add(host="10.1.2.3", port=8081)
    r = await env.stub.QueryRoute(req, metadata=MD)
    assert r.status.code == C.OK
    assert len(r.message_queues) == 8
    q = r.message_queues[0]
    assert q.broker.id == 0 and q.permission == pb.Permission.READ_WRITE
    assert list(q.accept_message_types) == [pb.MessageType.FIFO]
    assert q.broker.endpoints.addresses[0].host == "10.1.2.3"
    assert {m.broker.name for m in r.message_queues} == {"broker-a", "broker-b"}
    env.backend.add_topic("M", "MIXED")
    req.topic.name = "M"
    r = await env.stub.QueryRoute(req, metadata=MD)
    assert len(r.message_queues[0].accept_message_types) == 4
    req.topic.name = "Nope"
    r = await env.stub.QueryRoute(req, metadata=MD)
    assert r.status.code == C.TOPIC_NOT_FOUND
    req.topic.name = "bad topic"
    assert (await env.stub.QueryRoute(req, metadata=MD)).status.code == C.ILLEGAL_TOPIC


async def test_advertised_address_wins(env):
    env.server.config.grpc_advertised_address = "proxy.example.com:18081"
    req = spb.QueryRouteRequest()
    req.topic.name = "T"
    req.endpoints.addresses.add(host="127.0.0.1", port=8081)
    r = await env.stub.QueryRoute(req, metadata=MD)
    a = r.message_queues[0].broker.endpoints
    assert (a.addresses[0].host, a.addresses[0].port, a.scheme) == ("proxy.example.com", 18081,
                                                                      pb.AddressScheme.DOMAIN_NAME)


async def test_client_id_required(env):
    req = spb.QueryRouteRequest()
    req.topic.name = "T"
    r = await env.stub.QueryRoute(req)
    assert r.status.code == C.CLIENT_ID_REQUIRED
    r = await send(env, msg(), md=())
    assert r.status.code == C.CLIENT_ID_REQUIRED


async def test_send_ok_and_properties(env):
    r = await send(env, msg(tag="TagA", keys=["k1", "k2"]))
    assert r.status.code == C.OK, r
    assert r.entries[0].message_id == "01AA" and r.entries[0].status.code == C.OK
    broker, stored = env.backend.stored[0]
    assert stored.properties["TAGS"] == "TagA" and stored.properties["KEYS"] == "k1 k2"
    assert stored.properties["UNIQ_KEY"] == "01AA"
    assert stored.born_host[0] == "127.0.0.1"


async def test_send_batch_single_queue_and_round_robin(env):
    r = await send(env, *(msg(mid=f"id{i}") for i in range(5)))
    assert r.status.code == C.OK and len(r.entries) == 5
    assert len(env.backend.sent_batches) == 1 and env.backend.sent_batches[0][2] == 5
    for i in range(8):
        await send(env, msg(mid=f"x{i}"))
    slots = {(b, q) for b, q, _ in env.backend.sent_batches[1:]}
    assert len(slots) == 8  # round robin over 2 brokers x 4 queues


async def test_message_group_consistent_hash(env):
    env.backend.add_topic("F", "FIFO")
    for i in range(3):
        await send(env, msg("F", mid=f"f{i}", message_group="order-1", message_type=pb.MessageType.FIFO))
    assert len({(b, q) for b, q, _ in env.backend.sent_batches}) == 1
    r = await send(env, msg("F", mid="a", message_group="g1", message_type=pb.MessageType.FIFO),
                   msg("F", mid="b", message_group="g2", message_type=pb.MessageType.FIFO))
    assert r.status.code == C.OK and [e.message_id for e in r.entries] == ["a", "b"]


@pytest.mark.parametrize(
    "kwargs,code",
    [
        (dict(topic="bad topic"), C.ILLEGAL_TOPIC),
        (dict(topic="TBW102"), C.ILLEGAL_TOPIC),
        (dict(body=b""), C.MESSAGE_BODY_EMPTY),
        (dict(body=b"x" * (4 * 1024 * 1024 + 1)), C.MESSAGE_BODY_TOO_LARGE),
        (dict(tag="a|b"), C.ILLEGAL_MESSAGE_TAG),
        (dict(tag=" "), C.ILLEGAL_MESSAGE_TAG),
        (dict(tag="", keys=["", "k"], message_group=""), C.OK),  # empty is no value (the Go SDK sends these)
        (dict(keys=[" "]), C.ILLEGAL_MESSAGE_KEY),
        (dict(mid=""), C.ILLEGAL_MESSAGE_ID),
        (dict(message_group="g" * 64, message_type=pb.MessageType.FIFO), C.ILLEGAL_MESSAGE_GROUP),
        (dict(message_group="g", message_type=pb.MessageType.FIFO), C.MESSAGE_PROPERTY_CONFLICT_WITH_TYPE),
        (dict(message_type=pb.MessageType.TRANSACTION), C.MESSAGE_PROPERTY_CONFLICT_WITH_TYPE),
        (dict(topic="Nope"), C.TOPIC_NOT_FOUND),
    ],
)
async def test_send_validation_codes(env, kwargs, code):
    r = await send(env, msg(**kwargs))
    assert r.status.code == code, r.status


async def test_send_property_and_delivery_rules(env):
    m = msg()
    m.user_properties["TAGS"] = "x"
    assert (await send(env, m)).status.code == C.ILLEGAL_MESSAGE_PROPERTY_KEY
    m = msg()
    for i in range(129):
        m.user_properties[f"k{i}"] = "v"
    assert (await send(env, m)).status.code == C.MESSAGE_PROPERTIES_TOO_LARGE
    env.backend.add_topic("D", "DELAY")
    m = msg("D", message_type=pb.MessageType.DELAY)
    m.system_properties.delivery_timestamp.seconds = int(time.time()) + 2 * 86400
    assert (await send(env, m)).status.code == C.ILLEGAL_DELIVERY_TIME
    m.system_properties.delivery_timestamp.seconds = int(time.time()) + 60
    assert (await send(env, m)).status.code == C.OK
    assert (await send(env, msg("T"), msg("D"))).status.code == C.MESSAGE_CORRUPTED
    assert (await send(env)).status.code == C.MESSAGE_CORRUPTED
    env.backend.add_topic("X", "MIXED")
    assert (await send(env, msg("X", message_type=pb.MessageType.FIFO, message_group="g"))).status.code == C.OK


async def test_send_backend_errors(env):
    for rc, code in [(ResponseCode.TOPIC_NOT_EXIST, C.TOPIC_NOT_FOUND), (ResponseCode.NO_PERMISSION, C.FORBIDDEN),
                     (ResponseCode.SYSTEM_BUSY, C.TOO_MANY_REQUESTS), (ResponseCode.MESSAGE_ILLEGAL, C.BAD_REQUEST),
                     (ResponseCode.FLUSH_DISK_TIMEOUT, C.MASTER_PERSISTENCE_TIMEOUT),
                     (ResponseCode.SYSTEM_ERROR, C.INTERNAL_SERVER_ERROR)]:
        env.backend.send_error = BackendError(rc, "boom")
        r = await send(env, msg())
        assert r.status.code == code and r.entries[0].status.code == code
    env.backend.send_error = None
    for st, code in [(SendStatus.FLUSH_DISK_TIMEOUT, C.MASTER_PERSISTENCE_TIMEOUT),
                     (SendStatus.FLUSH_SLAVE_TIMEOUT, C.SLAVE_PERSISTENCE_TIMEOUT),
                     (SendStatus.SLAVE_NOT_AVAILABLE, C.HA_NOT_AVAILABLE)]:
        env.backend.send_status = st
        assert (await send(env, msg())).status.code == code


async def test_oversize_request_is_resource_exhausted(env):
    env.server.config.grpc_max_inbound_message_size = 1024  # applies to new servers only
    from proxy.server import ProxyServer

    s2 = ProxyServer(env.server.config.__class__(grpc_server_port=0, grpc_bind_address="127.0.0.1",
                                                  grpc_max_inbound_message_size=1024), env.backend)
    await s2.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{s2.port}") as ch:
            from protos.apache.rocketmq.v2 import service_pb2_grpc

            stub = service_pb2_grpc.MessagingServiceStub(ch)
            with pytest.raises(grpc.aio.AioRpcError) as ei:
                await stub.SendMessage(spb.SendMessageRequest(messages=[msg(body=b"x" * 4096)]), metadata=MD)
            assert ei.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    finally:
        await s2.shutdown(0)


def recv_req(group="G", topic="T", broker="broker-a", invisible=30, tag="*", **kw) -> spb.ReceiveMessageRequest:
    r = spb.ReceiveMessageRequest(batch_size=kw.pop("batch", 16), auto_renew=kw.pop("auto_renew", False))
    r.group.name = group
    r.message_queue.topic.name = topic
    r.message_queue.broker.name = broker
    r.filter_expression.type = pb.FilterType.TAG
    r.filter_expression.expression = tag
    if invisible is not None:
        r.invisible_duration.seconds = invisible
    r.long_polling_timeout.seconds = kw.pop("poll", 5)
    return r


async def receive(env, req, timeout=None):
    return [r async for r in env.stub.ReceiveMessage(req, metadata=MD, timeout=timeout)]


async def stored_on_a(env, n=3, tag="TagA"):
    for i in range(n):
        while True:
            await send(env, msg(mid=f"m{i}-{time.monotonic_ns()}", tag=tag))
            if env.backend.stored[-1][0] == "broker-a":
                break


async def test_receive_ack_change(env):
    await stored_on_a(env, 2)
    rs = await receive(env, recv_req())
    assert rs[0].status.code == C.OK
    msgs = [r.message for r in rs[1:] if r.HasField("message")]
    assert rs[-1].HasField("delivery_timestamp")
    assert len(msgs) == 2
    sp = msgs[0].system_properties
    assert sp.tag == "TagA" and sp.delivery_attempt == 1 and sp.receipt_handle
    assert sp.invisible_duration.seconds == 30 and sp.body_digest.type == pb.DigestType.MD5
    bname, req, timeout = env.backend.last_pop
    assert bname == "broker-a" and req.queue_id == -1 and req.invisible_time_ms == 30000
    assert req.poll_time_ms == 5000 and timeout > 4
    # ack
    ack = spb.AckMessageRequest()
    ack.group.name, ack.topic.name = "G", "T"
    for m in msgs:
        ack.entries.add(message_id=m.system_properties.message_id, receipt_handle=m.system_properties.receipt_handle)
    ack.entries.add(message_id="x", receipt_handle="bad handle")
    r = await env.stub.AckMessage(ack, metadata=MD)
    assert r.status.code == C.MULTIPLE_RESULTS
    assert [e.status.code for e in r.entries] == [C.OK, C.OK, C.INVALID_RECEIPT_HANDLE]
    assert env.backend.acked[0][0] == "broker-a"
    assert env.backend.acked[0][3] == " ".join(msgs[0].system_properties.receipt_handle.split(" ")[:8])
    # change invisible duration
    ch = spb.ChangeInvisibleDurationRequest(receipt_handle=msgs[1].system_properties.receipt_handle,
                                            message_id="m")
    ch.group.name, ch.topic.name = "G", "T"
    ch.invisible_duration.seconds = 1
    r = await env.stub.ChangeInvisibleDuration(ch, metadata=MD)
    assert r.status.code == C.OK and r.receipt_handle and r.receipt_handle != ch.receipt_handle
    assert r.receipt_handle.split(" ")[2] == "1000"
    ch.receipt_handle = "nope"
    assert (await env.stub.ChangeInvisibleDuration(ch, metadata=MD)).status.code == C.INVALID_RECEIPT_HANDLE
    ch.receipt_handle = "0 1000 1000 0 0 broker-a 0 0 5"  # expired long ago
    assert (await env.stub.ChangeInvisibleDuration(ch, metadata=MD)).status.code == C.INVALID_RECEIPT_HANDLE


async def test_receive_empty_and_errors(env):
    rs = await receive(env, recv_req())
    assert len(rs) == 1 and rs[0].status.code == C.MESSAGE_NOT_FOUND
    rs = await receive(env, recv_req(invisible=5))
    assert rs[0].status.code == C.ILLEGAL_INVISIBLE_TIME
    rs = await receive(env, recv_req(invisible=13 * 3600))
    assert rs[0].status.code == C.ILLEGAL_INVISIBLE_TIME
    rs = await receive(env, recv_req(group="bad group"))
    assert rs[0].status.code == C.ILLEGAL_CONSUMER_GROUP
    # long polling clamped to [5s, 20s] and to the deadline
    await receive(env, recv_req(poll=60))
    assert env.backend.last_pop[1].poll_time_ms == 20000
    await receive(env, recv_req(poll=1))
    assert env.backend.last_pop[1].poll_time_ms == 5000
    await receive(env, recv_req(poll=20), timeout=3)
    assert env.backend.last_pop[1].poll_time_ms < 3000
    # auto renew uses the default invisible time
    await receive(env, recv_req(invisible=None, auto_renew=True))
    assert env.backend.last_pop[1].invisible_time_ms == 60000


async def test_receive_tag_filter(env):
    await stored_on_a(env, 1, "TagA")
    await stored_on_a(env, 1, "TagB")
    rs = await receive(env, recv_req(tag="TagB"))
    assert [r.message.system_properties.tag for r in rs[1:-1]] == ["TagB"]
    assert env.backend.last_pop[1].expression_type == "TAG"


async def test_telemetry_settings_refused_end_the_call(env):
    """As RocketMQ's proxy: settings that cannot be applied end the stream with INVALID_ARGUMENT (the Go
    SDK waits for a settings answer forever otherwise), a missing client id too."""
    cons = spb.TelemetryCommand()
    cons.settings.client_type = pb.ClientType.SIMPLE_CONSUMER
    cons.settings.subscription.group.name = "bad group!"
    for md in (MD, ()):
        call = env.stub.Telemetry(iter([cons]), metadata=md, timeout=10)
        with pytest.raises(grpc.aio.AioRpcError) as ei:
            async for _ in call:
                pass
        assert ei.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        want = "ILLEGAL_CONSUMER_GROUP" if md else "CLIENT_ID_REQUIRED"
        assert ei.value.details().startswith(f"process client telemetryCommand failed. {want}: "), ei.value.details()


async def test_telemetry_settings(env):
    env.backend.groups["FG"] = SubscriptionGroupConfig("FG", consume_message_orderly=True, retry_max_times=5)
    q: asyncio.Queue = asyncio.Queue()

    async def gen():
        while True:
            item = await q.get()
            if item is None:
                return
            yield item

    call = env.stub.Telemetry(gen(), metadata=MD)
    prod = spb.TelemetryCommand()
    prod.settings.client_type = pb.ClientType.PRODUCER
    prod.settings.publishing.topics.add(name="T")
    await q.put(prod)
    r = await call.read()
    assert r.status.code == C.OK
    assert r.settings.publishing.max_body_size == 4 * 1024 * 1024
    assert r.settings.publishing.validate_message_type is True
    assert r.settings.backoff_policy.max_attempts == 3
    assert r.settings.metric.on is False
    assert env.backend.producers == [("client-1", "T")]
    cons = spb.TelemetryCommand()
    cons.settings.client_type = pb.ClientType.PUSH_CONSUMER
    cons.settings.subscription.group.name = "FG"
    await q.put(cons)
    r = await call.read()
    s = r.settings.subscription
    assert r.status.code == C.OK and s.fifo and s.receive_batch_size == 32 and s.long_polling_timeout.seconds == 20
    bp = r.settings.backoff_policy
    assert bp.max_attempts == 6 and [d.seconds for d in bp.customized_backoff.next][:4] == [1, 5, 10, 30]
    # heartbeat now known
    hb = await env.stub.Heartbeat(spb.HeartbeatRequest(), metadata=MD)
    assert hb.status.code == C.OK
    # transaction check-back goes to the producer's stream
    ext = MessageExt("T", b"x", {"UNIQ_KEY": "TX1"}, store_host=("127.0.0.1", 10911))
    env.server.service.sessions.update_settings("client-1", prod.settings)
    await env.backend.listener("T", ext, "txid-1")
    r = await call.read()
    assert r.recover_orphaned_transaction_command.transaction_id == "txid-1"
    assert r.recover_orphaned_transaction_command.message.system_properties.message_id == "TX1"
    await q.put(None)
    await call.done_writing() if False else None
    call.cancel()
    # termination drops the session; heartbeat without settings and without a type is refused
    await env.stub.NotifyClientTermination(spb.NotifyClientTerminationRequest(), metadata=MD)
    assert env.server.service.sessions.get("client-1") is None
    hb = await env.stub.Heartbeat(spb.HeartbeatRequest(), metadata=MD)
    assert hb.status.code == C.UNRECOGNIZED_CLIENT_TYPE
    hb = await env.stub.Heartbeat(spb.HeartbeatRequest(client_type=pb.ClientType.PRODUCER), metadata=MD)
    assert hb.status.code == C.OK


async def test_query_assignment(env):
    env.backend.groups["FG"] = SubscriptionGroupConfig("FG", consume_message_orderly=True)
    req = spb.QueryAssignmentRequest()
    req.topic.name, req.group.name = "T", "G"
    r = await env.stub.QueryAssignment(req, metadata=MD)
    assert r.status.code == C.OK
    assert [(a.message_queue.broker.name, a.message_queue.id) for a in r.assignments] == [
        ("broker-a", -1), ("broker-b", -1)]
    req.group.name = "FG"
    r = await env.stub.QueryAssignment(req, metadata=MD)
    assert len(r.assignments) == 8
    env.backend.add_topic("W", perm=2)
    req.topic.name = "W"
    assert (await env.stub.QueryAssignment(req, metadata=MD)).status.code == C.FORBIDDEN


async def test_end_transaction_recall_dlq(env):
    env.backend.add_topic("TX", "TRANSACTION")
    r = await send(env, msg("TX", mid="TX1", message_type=pb.MessageType.TRANSACTION))
    assert r.status.code == C.OK and r.entries[0].transaction_id
    broker = env.backend.stored[-1][0]
    req = spb.EndTransactionRequest(message_id="TX1", transaction_id=r.entries[0].transaction_id,
                                    resolution=pb.TransactionResolution.COMMIT, source=pb.TransactionSource.SOURCE_CLIENT)
    req.topic.name = "TX"
    e = await env.stub.EndTransaction(req, metadata=MD)
    assert e.status.code == C.OK
    assert env.backend.ended[-1][0] == broker and env.backend.ended[-1][5] is True
    req.transaction_id = "RAW 100 3 broker-b"
    assert (await env.stub.EndTransaction(req, metadata=MD)).status.code == C.OK
    assert env.backend.ended[-1][0] == "broker-b"
    # an unspecified resolution (the Go SDK's UNKNOWN) is taken as UNKNOWN: OK, nothing ended
    ended = len(env.backend.ended)
    req.resolution = pb.TransactionResolution.TRANSACTION_RESOLUTION_UNSPECIFIED
    assert (await env.stub.EndTransaction(req, metadata=MD)).status.code == C.OK
    assert len(env.backend.ended) == ended
    req.resolution = pb.TransactionResolution.COMMIT
    req.transaction_id = "garbage"
    assert (await env.stub.EndTransaction(req, metadata=MD)).status.code == C.INVALID_TRANSACTION_ID
    req.transaction_id = ""
    assert (await env.stub.EndTransaction(req, metadata=MD)).status.code == C.INVALID_TRANSACTION_ID
    rc = spb.RecallMessageRequest(recall_handle="v1 abc")
    rc.topic.name = "T"
    assert (await env.stub.RecallMessage(rc, metadata=MD)).status.code in (C.UNSUPPORTED, C.BAD_REQUEST)
    dl = spb.ForwardMessageToDeadLetterQueueRequest(receipt_handle="1 2 3 4 0 broker-b 0 1 9",
                                                    max_delivery_attempts=3)
    dl.group.name, dl.topic.name = "G", "T"
    assert (await env.stub.ForwardMessageToDeadLetterQueue(dl, metadata=MD)).status.code == C.OK
    assert env.backend.acked[-1][0] == "broker-b"


async def test_pull_and_offsets(env):
    await stored_on_a(env, 2)
    q = env.backend.stored[0][1].queue_id
    req = spb.PullMessageRequest(offset=0, batch_size=10)
    req.group.name = "G"
    req.message_queue.topic.name = "T"
    req.message_queue.broker.name = "broker-a"
    req.message_queue.id = q
    rs = [r async for r in env.stub.PullMessage(req, metadata=MD)]
    assert rs[0].status.code == C.OK and rs[-1].HasField("next_offset") and rs[1].HasField("message")
    mq = req.message_queue
    g = spb.GetOffsetRequest(message_queue=mq)
    g.group.name = "G"
    assert (await env.stub.GetOffset(g, metadata=MD)).status.code == C.OFFSET_NOT_FOUND
    u = spb.UpdateOffsetRequest(message_queue=mq, offset=5)
    u.group.name = "G"
    assert (await env.stub.UpdateOffset(u, metadata=MD)).status.code == C.OK
    r = await env.stub.GetOffset(g, metadata=MD)
    assert (r.status.code, r.offset) == (C.OK, 5)
    qo = spb.QueryOffsetRequest(message_queue=mq, query_offset_policy=pb.QueryOffsetPolicy.BEGINNING)
    assert (await env.stub.QueryOffset(qo, metadata=MD)).offset == 3
    qo.query_offset_policy = pb.QueryOffsetPolicy.END
    assert (await env.stub.QueryOffset(qo, metadata=MD)).offset == 100
    qo.query_offset_policy = pb.QueryOffsetPolicy.TIMESTAMP
    qo.timestamp.seconds = 5
    assert (await env.stub.QueryOffset(qo, metadata=MD)).offset == 42


async def test_health(env):
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    stub = health_pb2_grpc.HealthStub(env.channel)
    r = await stub.Check(health_pb2.HealthCheckRequest(service=""))
    assert r.status == health_pb2.HealthCheckResponse.SERVING


async def test_auto_renew_and_ack_with_original_handle(env):
    cfg = env.server.config
    cfg.default_invisible_time_mills = 2000
    cfg.renew_ahead_time_millis = 1500
    cfg.renew_slice_time_millis = 2500
    await stored_on_a(env, 1)
    # a session must exist for renewals to continue
    env.server.service.sessions.touch("client-1")
    rs = await receive(env, recv_req(invisible=None, auto_renew=True))
    m = [r.message for r in rs if r.HasField("message")][0]
    handle = m.system_properties.receipt_handle
    for _ in range(40):
        if env.backend.changed:
            break
        await asyncio.sleep(0.1)
    assert env.backend.changed, "the proxy did not renew the handle"
    ack = spb.AckMessageRequest()
    ack.group.name, ack.topic.name = "G", "T"
    ack.entries.add(message_id=m.system_properties.message_id, receipt_handle=handle)
    r = await env.stub.AckMessage(ack, metadata=MD)
    assert r.status.code == C.OK
    acked_extra = env.backend.acked[-1][3]
    assert acked_extra != " ".join(handle.split(" ")[:8])  # the renewed handle was acked
    assert acked_extra.split(" ")[2] == "2500"  # renewed by renewSliceTimeMillis
    assert not env.server.service._renewals


async def test_batch_ack_backend_hook(env):
    calls = []

    async def ack_messages(broker, group, topic, extras):
        calls.append((broker, len(extras)))
        return [None] * (len(extras) - 1) + [BackendError(ResponseCode.NO_MESSAGE, "gone")]

    env.backend.ack_messages = ack_messages
    ack = spb.AckMessageRequest()
    ack.group.name, ack.topic.name = "G", "T"
    for i in range(3):
        ack.entries.add(message_id=f"m{i}", receipt_handle=f"{i} 1 2 0 0 broker-a 0 {i} 9")
    ack.entries.add(message_id="b", receipt_handle="1 1 2 0 0 broker-b 0 1 9")
    ack.entries.add(message_id="x", receipt_handle="junk")
    r = await env.stub.AckMessage(ack, metadata=MD)
    assert sorted(calls) == [("broker-a", 3), ("broker-b", 1)]
    codes = [e.status.code for e in r.entries]
    assert codes[:2] == [C.OK, C.OK] and codes[4] == C.INVALID_RECEIPT_HANDLE
    assert r.status.code == C.MULTIPLE_RESULTS


async def test_sync_lite_subscription_unsupported(env):
    r = await env.stub.SyncLiteSubscription(spb.SyncLiteSubscriptionRequest(), metadata=MD)
    assert r.status.code == C.UNSUPPORTED


async def test_consumer_heartbeat_registers_it_with_the_backend(env):
    settings = pb.Settings(client_type=pb.ClientType.PUSH_CONSUMER)
    settings.subscription.group.name = "G1"
    for topic, ftype, expr in (("T", pb.FilterType.TAG, "a || b"), ("T2", pb.FilterType.SQL, "x > 1")):
        e = settings.subscription.subscriptions.add()
        e.topic.name, e.expression.type, e.expression.expression = topic, ftype, expr
    await env.server.service.apply_settings("client-1", settings)
    hb = await env.stub.Heartbeat(spb.HeartbeatRequest(client_type=pb.ClientType.PUSH_CONSUMER),
                                  metadata=MD + (("x-mq-language", "JAVA"), ("x-mq-client-version", "5.1.2")))
    assert hb.status.code == C.OK
    c = env.backend.consumers["client-1"]
    assert (c.group, c.language, c.consume_type) == ("G1", "JAVA", "CONSUME_PASSIVELY")
    assert version_desc(c.version) == "V5_1_2"
    assert c.subscriptions == [("T", "TAG", "a || b"), ("T2", "SQL92", "x > 1")]
    assert c.client_addr.rsplit(":", 1)[1].isdigit()
    await env.stub.NotifyClientTermination(spb.NotifyClientTerminationRequest(), metadata=MD)
    assert "client-1" not in env.backend.consumers
    # a producer's heartbeat registers no consumer
    await env.stub.Heartbeat(spb.HeartbeatRequest(client_type=pb.ClientType.PRODUCER), metadata=MD)
    assert env.backend.consumers == {}


async def test_admin_requests_reach_the_consumer_on_its_telemetry_stream(env):
    """Local mode's consumerStatus -s / consume directly: a command with a nonce on the client's stream,
    answered by the client on the same stream."""
    svc = env.server.service
    assert env.backend.commander is svc
    assert await svc.thread_stack_trace("client-1") is None  # no stream: not a client of this proxy
    q: asyncio.Queue = asyncio.Queue()

    async def gen():
        while (item := await q.get()) is not None:
            yield item

    call = env.stub.Telemetry(gen(), metadata=MD)
    cons = spb.TelemetryCommand()
    cons.settings.client_type = pb.ClientType.SIMPLE_CONSUMER
    cons.settings.subscription.group.name = "G"
    await q.put(cons)
    assert (await call.read()).status.code == C.OK
    try:
        asked = asyncio.ensure_future(svc.thread_stack_trace("client-1"))
        cmd = await asyncio.wait_for(call.read(), 5)
        nonce = cmd.print_thread_stack_trace_command.nonce
        assert nonce
        wrong = spb.TelemetryCommand(status=pb.Status(code=C.OK))
        wrong.thread_stack_trace.nonce, wrong.thread_stack_trace.thread_stack_trace = "other", "not this"
        await q.put(wrong)
        answer = spb.TelemetryCommand(status=pb.Status(code=C.OK))
        answer.thread_stack_trace.nonce, answer.thread_stack_trace.thread_stack_trace = nonce, "main: waiting"
        await q.put(answer)
        assert await asyncio.wait_for(asked, 5) == "main: waiting"

        msg = MessageExt("T", b"body", {"UNIQ_KEY": "M1"}, store_host=("127.0.0.1", 10911))
        verified = asyncio.ensure_future(svc.verify_message("client-1", msg))
        cmd = await asyncio.wait_for(call.read(), 5)
        vc = cmd.verify_message_command
        assert vc.message.system_properties.message_id == "M1" and vc.message.body == b"body"
        answer = spb.TelemetryCommand(status=pb.Status(code=C.FAILED_TO_CONSUME_MESSAGE))
        answer.verify_message_result.nonce = vc.nonce
        await q.put(answer)
        assert await asyncio.wait_for(verified, 5) == C.FAILED_TO_CONSUME_MESSAGE
        # a client that does not answer: the wait is bounded
        with pytest.raises(TimeoutError):
            await svc.ask_client("client-1", spb.TelemetryCommand(), "n-1", timeout=0.2)
        assert not svc._client_answers
    finally:
        await q.put(None)
        call.cancel()
