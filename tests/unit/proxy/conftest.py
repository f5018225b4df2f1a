from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import grpc
import pytest

from protos.apache.rocketmq.v2 import service_pb2_grpc
from proxy.config import ProxyConfig
from proxy.server import ProxyServer
from tests.unit.proxy.fake_backend import FakeBackend

MD = (("x-mq-client-id", "client-1"), ("authorization", ""))


@dataclass
class Env:
    backend: FakeBackend
    server: ProxyServer
    stub: service_pb2_grpc.MessagingServiceStub
    channel: grpc.aio.Channel


@pytest.fixture
async def env() -> AsyncIterator[Env]:
    backend = FakeBackend(brokers=("broker-a", "broker-b"))
    backend.add_topic("T")
    cfg = ProxyConfig(grpc_server_port=0, grpc_bind_address="127.0.0.1")
    server = ProxyServer(cfg, backend)
    await server.start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{server.port}")
    try:
        yield Env(backend, server, service_pb2_grpc.MessagingServiceStub(channel), channel)
    finally:
        await channel.close()
        await server.shutdown(0)
