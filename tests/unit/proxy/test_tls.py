"""TLS on the proxy's gRPC port: tls.server.mode (disabled / permissive / enforcing), the certificate
(self-signed test mode or PEM files), and the permissive mode's relay (proxy.tls_relay)."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import grpc
import pytest

from protos.apache.rocketmq.v2 import definition_pb2 as pb
from protos.apache.rocketmq.v2 import service_pb2 as spb
from protos.apache.rocketmq.v2 import service_pb2_grpc
from proxy.config import ProxyConfig
from proxy.server import ProxyServer
from proxy.tls import TlsMode, load_key_pair, self_signed
from proxy.tls_relay import ProtocolDetector
from tests.harness import apoll_until
from tests.unit.proxy.conftest import MD
from tests.unit.proxy.fake_backend import FakeBackend


def test_modes_parse_and_bad_values_name_the_key():
    assert TlsMode.parse(" Enforcing ") is TlsMode.ENFORCING
    assert ProxyConfig().tls_server_mode == "permissive"  # RocketMQ's default
    assert ProxyConfig.from_dict({"tls.server.mode": "DISABLED"}).tls_server_mode == "disabled"
    with pytest.raises(ValueError, match="tls.server.mode must be disabled, permissive or enforcing, not 'on'"):
        ProxyConfig.from_dict({"tls.server.mode": "on"})


def test_key_pair_files(tmp_path: Path):
    cert, key = self_signed(("rocketmq.example", "10.1.2.3"))
    (tmp_path / "c.pem").write_bytes(cert)
    (tmp_path / "k.pem").write_bytes(key)
    assert load_key_pair(str(tmp_path / "c.pem"), str(tmp_path / "k.pem")) == (cert, key)
    with pytest.raises(ValueError, match=r"tlsKeyPath .*missing.pem: No such file"):
        load_key_pair(str(tmp_path / "c.pem"), str(tmp_path / "missing.pem"))
    (tmp_path / "junk").write_text("hello")
    with pytest.raises(ValueError, match="tlsCertPath .*junk: not a PEM file"):
        load_key_pair(str(tmp_path / "junk"), str(tmp_path / "k.pem"))
    _, other_key = self_signed()
    (tmp_path / "other.pem").write_bytes(other_key)
    with pytest.raises(ValueError, match="KEY_VALUES_MISMATCH"):
        load_key_pair(str(tmp_path / "c.pem"), str(tmp_path / "other.pem"))
    info = ssl._ssl._test_decode_cert(str(tmp_path / "c.pem"))  # type: ignore[attr-defined]
    assert ("DNS", "rocketmq.example") in info["subjectAltName"]
    assert ("IP Address", "10.1.2.3") in info["subjectAltName"]


@asynccontextmanager
async def proxy(**keys: object) -> AsyncIterator[ProxyServer]:
    backend = FakeBackend(brokers=("broker-a",))
    backend.add_topic("T")
    cfg = ProxyConfig(grpc_server_port=0, grpc_bind_address="127.0.0.1")
    cfg.update(keys)
    server = ProxyServer(cfg, backend)
    await server.start()
    try:
        yield server
    finally:
        await server.shutdown(0)


async def query_route(channel: grpc.aio.Channel) -> int:
    stub = service_pb2_grpc.MessagingServiceStub(channel)
    req = spb.QueryRouteRequest(topic=pb.Resource(name="T"))
    resp = await stub.QueryRoute(req, metadata=MD, timeout=5)
    return int(resp.status.code)


async def tls_channel(port: int, root: bytes | None = None) -> grpc.aio.Channel:
    """As the Java and Go SDKs connect by default: TLS, trusting whatever certificate the server shows."""
    if root is None:
        root = (await asyncio.to_thread(ssl.get_server_certificate, ("127.0.0.1", port), timeout=5)).encode()
    return grpc.aio.secure_channel(f"127.0.0.1:{port}", grpc.ssl_channel_credentials(root_certificates=root))


async def fails(channel: grpc.aio.Channel) -> bool:
    try:
        await query_route(channel)
    except grpc.aio.AioRpcError as e:
        return e.code() == grpc.StatusCode.UNAVAILABLE
    finally:
        await channel.close()
    return False


async def works(channel: grpc.aio.Channel) -> bool:
    try:
        return await query_route(channel) == pb.Code.OK
    finally:
        await channel.close()


async def test_permissive_serves_plaintext_and_tls_on_one_port():
    async with proxy() as server:
        assert await works(grpc.aio.insecure_channel(f"127.0.0.1:{server.port}"))
        assert await works(await tls_channel(server.port))


async def test_enforcing_refuses_plaintext():
    async with proxy(**{"tls.server.mode": "enforcing"}) as server:
        assert await works(await tls_channel(server.port))
        assert await fails(grpc.aio.insecure_channel(f"127.0.0.1:{server.port}"))


async def test_disabled_refuses_tls():
    async with proxy(**{"tls.server.mode": "disabled"}) as server:
        assert await works(grpc.aio.insecure_channel(f"127.0.0.1:{server.port}"))
        with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
            await asyncio.to_thread(ssl.get_server_certificate, ("127.0.0.1", server.port), timeout=5)


async def test_certificate_files_verify_by_name(tmp_path: Path):
    cert, key = self_signed(("localhost",))
    (tmp_path / "rocketmq.crt").write_bytes(cert)
    (tmp_path / "rocketmq.key").write_bytes(key)
    keys = {"tlsTestModeEnable": False, "tlsCertPath": str(tmp_path / "rocketmq.crt"),
            "tlsKeyPath": str(tmp_path / "rocketmq.key")}
    async with proxy(**keys) as server:
        assert await works(await tls_channel(server.port, root=cert))  # verified, 127.0.0.1 is in the certificate
        other, _ = self_signed(("localhost",))
        assert await fails(await tls_channel(server.port, root=other))


async def test_missing_certificate_stops_the_start(tmp_path: Path):
    with pytest.raises(ValueError, match="tlsCertPath .*nothere.crt"):
        async with proxy(tlsTestModeEnable=False, tlsCertPath=str(tmp_path / "nothere.crt")):
            pass


async def _upstream(seen: list[tuple[str, int]], echo: bool) -> tuple[asyncio.Server, int]:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen.append(writer.get_extra_info("peername")[:2])
        while data := await reader.read(65536):
            if echo:
                writer.write(data)
                await writer.drain()
        writer.close()

    srv = await asyncio.start_server(handle, "127.0.0.1", 0)
    return srv, srv.sockets[0].getsockname()[1]


async def test_relay_picks_by_first_byte_keeps_the_client_address_and_streams_both_ways():
    plain_seen: list[tuple[str, int]] = []
    tls_seen: list[tuple[str, int]] = []
    plain, plain_port = await _upstream(plain_seen, echo=True)
    tls_up, tls_port = await _upstream(tls_seen, echo=False)
    detector = ProtocolDetector(plain_port, tls_port)
    port = await detector.start("127.0.0.1", 0)
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        blob = bytes(range(256)) * 40_000  # 10 MiB: more than the transports buffer, so flow control works
        writer.write(b"PRI * HTTP/2.0\r\n" + blob)
        echoed = await asyncio.wait_for(reader.readexactly(16 + len(blob)), 30)
        assert echoed[16:] == blob
        assert plain_seen and not tls_seen
        relayed = plain_seen[0]
        assert detector.client_of(*relayed) == writer.get_extra_info("sockname")[:2]
        assert detector.client_of("10.0.0.1", relayed[1]) == ("10.0.0.1", relayed[1])  # not relayed: itself
        _, w2 = await asyncio.open_connection("127.0.0.1", port)
        w2.write(b"\x16\x03\x01\x00\x05hello")
        await apoll_until(lambda: bool(tls_seen))
        writer.close()
        w2.close()
        await apoll_until(lambda: not detector.peers)  # closed connections are forgotten
    finally:
        await detector.close()
        plain.close()
        tls_up.close()


async def test_relay_holds_a_client_while_the_server_does_not_read():
    """Back-pressure: 32 MiB towards a server that reads nothing for a while, then everything; the relay
    stops reading the client meanwhile (and watches neither way) and carries on, in the same process."""
    total = 32 << 20

    async def slow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(1.0)
        got = 0
        while got < total and (data := await reader.read(1 << 20)):
            got += len(data)
        writer.write(str(got).encode())
        await writer.drain()
        writer.close()

    srv = await asyncio.start_server(slow, "127.0.0.1", 0)
    detector = ProtocolDetector(srv.sockets[0].getsockname()[1], 1)
    port = await detector.start("127.0.0.1", 0)
    try:
        relay = detector._proc
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"P" + bytes(total - 1))
        await asyncio.wait_for(writer.drain(), 60)
        assert await asyncio.wait_for(reader.read(), 60) == str(total).encode()
        assert detector._proc is relay and relay is not None and relay.poll() is None
        writer.close()
    finally:
        await detector.close()
        srv.close()


async def test_relay_on_a_dual_stack_port_names_ipv4_clients_as_ipv4():
    seen: list[tuple[str, int]] = []
    up, up_port = await _upstream(seen, echo=True)
    detector = ProtocolDetector(up_port, up_port)
    try:
        port = await detector.start("::", 0)
    except OSError:
        pytest.skip("no IPv6 on this machine")
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"PRI")
        assert await asyncio.wait_for(reader.readexactly(3), 10) == b"PRI"
        assert detector.client_of(*seen[0]) == writer.get_extra_info("sockname")[:2]  # not ::ffff:127.0.0.1
        writer.close()
    finally:
        await detector.close()
        up.close()


async def test_relay_closes_a_silent_connection():
    detector = ProtocolDetector(1, 1, first_byte_timeout=0.2)
    port = await detector.start("127.0.0.1", 0)
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        assert await asyncio.wait_for(reader.read(), 10) == b""  # closed by the relay, nothing relayed
        writer.close()
    finally:
        await detector.close()


async def test_relay_process_is_started_again_when_it_dies():
    async with proxy() as server:
        detector = server._detector
        assert detector is not None and detector._proc is not None
        first = detector._proc
        first.kill()
        await apoll_until(lambda: detector._proc is not first)
        assert await works(grpc.aio.insecure_channel(f"127.0.0.1:{server.port}"))

