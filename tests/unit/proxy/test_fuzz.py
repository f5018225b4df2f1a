"""Bad input never crashes the proxy (Local mode): every MessagingService RPC gets seeded random
requests, raw garbage and damaged receipt handles over a real gRPC channel, against a real broker in the
same process (see tests/proxy_fuzz.py); the Cluster-mode run is tests/e2e/test_proxy_fuzz_cluster.py.
Any error the proxy logs fails the test too, and afterwards it must still route a normal request."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import grpc
import pytest

from backends.broker.controller import BrokerController
from backends.local import LocalBackend
from backends.model import SubscriptionGroupConfig, TopicConfig
from protos.apache.rocketmq.v2 import definition_pb2 as pb
from protos.apache.rocketmq.v2 import service_pb2 as spb
from proxy.config import ProxyConfig
from proxy.server import ProxyServer
from tests import proxy_fuzz as fz

pytestmark = pytest.mark.timeout(300)


@pytest.fixture
async def channel(broker: BrokerController) -> AsyncIterator[grpc.aio.Channel]:
    tcm = broker.topic_config_manager
    tcm.update_topic_config(TopicConfig("TopicF", 4, 4))
    tcm.update_topic_config(TopicConfig("TopicFifo", 2, 2, attributes={"message.type": "FIFO"}))
    broker.subscription_group_manager.update_subscription_group_config(
        SubscriptionGroupConfig("GroupF", attributes={"consumeFromWhere": "EARLIEST"}))
    server = ProxyServer(ProxyConfig(grpc_server_port=0, grpc_bind_address="127.0.0.1"), LocalBackend(broker),
                         manage_backend=False)
    await server.start()
    ch = grpc.aio.insecure_channel(f"127.0.0.1:{server.port}", options=[("grpc.max_receive_message_length", 64 << 20)])
    try:
        yield ch
    finally:
        await ch.close()
        await server.shutdown(0)


async def _check(channel: grpc.aio.Channel, caplog: pytest.LogCaptureFixture, problems: list[str]) -> None:
    problems = problems + fz.logged_errors(caplog.records)
    assert not problems, "\n".join(sorted(set(problems))[:30])
    await fz.still_serving(channel, 4)


async def test_random_requests_to_every_rpc_get_a_status(channel: grpc.aio.Channel,
                                                          caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR)
    await _check(channel, caplog, await fz.random_requests(channel))


async def test_undecodable_requests_are_internal_errors_not_crashes(channel: grpc.aio.Channel,
                                                                     caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    await _check(channel, caplog, await fz.undecodable_requests(channel))
    assert "undecodable request" in caplog.text  # one warning line per call instead


async def test_mutated_receipt_handles_get_a_status(channel: grpc.aio.Channel,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR)
    handles = await fz.receipt_handles(channel, ["broker-a"])
    assert handles, "nothing received to take receipt handles from"
    await _check(channel, caplog, await fz.mutated_handles(channel, handles))


async def test_large_body_is_refused_with_its_code(channel: grpc.aio.Channel) -> None:
    req = spb.SendMessageRequest()
    m = req.messages.add(body=b"x" * (4 * 1024 * 1024 + 1))
    m.topic.name = "TopicF"
    m.system_properties.message_id = "BIG"
    m.system_properties.message_type = pb.MessageType.NORMAL
    r = await fz.unary(channel, "SendMessage")(req.SerializeToString(), metadata=(("x-mq-client-id", "c"),),
                                               timeout=fz.DEADLINE_S)
    assert r.status.code == pb.Code.MESSAGE_BODY_TOO_LARGE
    await fz.still_serving(channel, 4)


async def test_unknown_broker_name_is_a_bad_request(channel: grpc.aio.Channel) -> None:
    """RocketMQ's proxy answers a queue on a broker it cannot find with INVALID_BROKER_NAME -> BAD_REQUEST."""
    req = spb.GetOffsetRequest()
    req.group.name = "GroupF"
    req.message_queue.topic.name = "TopicF"
    req.message_queue.broker.name = "broker-x"
    r = await fz.unary(channel, "GetOffset")(req.SerializeToString(), metadata=(("x-mq-client-id", "c"),),
                                             timeout=fz.DEADLINE_S)
    assert r.status.code == pb.Code.BAD_REQUEST and "cannot find broker broker-x" in r.status.message
