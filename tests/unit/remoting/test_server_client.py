from __future__ import annotations

import asyncio
import struct

import pytest

from backends.remoting.client import RemotingClient, RemotingError
from backends.remoting.codec import FrameDecoder, encode
from backends.remoting.codes import RequestCode, ResponseCode
from backends.remoting.command import SERIALIZE_ROCKETMQ, RemotingCommand
from backends.remoting.server import Connection, RemotingServer


async def echo(req: RemotingCommand, conn: Connection) -> RemotingCommand:
    return req.response(ext_fields={"echo": req.ext_fields.get("v", "")}, body=req.body)


async def slow(req: RemotingCommand, conn: Connection) -> RemotingCommand:
    await asyncio.sleep(float(req.ext_fields.get("delay", "0.2")))
    return req.response(ext_fields={"v": req.ext_fields.get("v", "")})


async def boom(req: RemotingCommand, conn: Connection) -> RemotingCommand:
    raise ValueError("broken processor")


@pytest.fixture
async def srv():
    s = RemotingServer("127.0.0.1", 0)
    s.register_processor(1000, echo)
    s.register_processor(1001, slow)
    s.register_processor(1002, boom)
    await s.start()
    yield s
    await s.shutdown()


async def test_invoke_and_unknown_code(srv: RemotingServer) -> None:
    c = RemotingClient()
    addr = f"127.0.0.1:{srv.port}"
    r = await c.invoke(addr, RemotingCommand.request(1000, {"v": "x"}, b"hi"), 3)
    assert r.code == 0 and r.ext_fields == {"echo": "x"} and r.body == b"hi" and r.is_response
    r = await c.invoke(addr, RemotingCommand.request(4242), 3)
    assert r.code == ResponseCode.REQUEST_CODE_NOT_SUPPORTED
    assert r.remark == "request type 4242 not supported"
    r = await c.invoke(addr, RemotingCommand.request(1002), 3)
    assert r.code == ResponseCode.SYSTEM_ERROR and "broken processor" in (r.remark or "")
    # binary serialization is answered in kind
    req = RemotingCommand.request(1000, {"v": "b"})
    req.serialize_type = SERIALIZE_ROCKETMQ
    r = await c.invoke(addr, req, 3)
    assert r.serialize_type == SERIALIZE_ROCKETMQ and r.ext_fields == {"echo": "b"}
    await c.close()


async def test_concurrent_out_of_order(srv: RemotingServer) -> None:
    c = RemotingClient()
    addr = f"127.0.0.1:{srv.port}"
    reqs = [
        c.invoke(addr, RemotingCommand.request(1001, {"v": str(i), "delay": str(0.2 - i * 0.01)}), 3)
        for i in range(20)
    ]
    res = await asyncio.gather(*reqs)
    assert [r.ext_fields["v"] for r in res] == [str(i) for i in range(20)]
    await c.close()


async def test_timeout_and_reconnect(srv: RemotingServer) -> None:
    c = RemotingClient()
    addr = f"127.0.0.1:{srv.port}"
    with pytest.raises(RemotingError):
        await c.invoke(addr, RemotingCommand.request(1001, {"delay": "1"}), 0.1)
    conn = await c.connection(addr)
    conn.close()
    await conn.wait_closed()
    r = await c.invoke(addr, RemotingCommand.request(1000, {"v": "again"}), 3)
    assert r.ext_fields["echo"] == "again"
    await c.close()


async def test_connect_failure() -> None:
    c = RemotingClient(connect_timeout=1)
    srv = RemotingServer("127.0.0.1", 0)
    await srv.start()
    port = srv.port
    await srv.shutdown()
    with pytest.raises(RemotingError):
        await c.invoke(f"127.0.0.1:{port}", RemotingCommand.request(1), 1)
    with pytest.raises(RemotingError):
        await c.invoke("nonsense", RemotingCommand.request(1), 1)
    await c.close()


async def test_oneway_gets_no_answer(srv: RemotingServer) -> None:
    got: list[RemotingCommand] = []

    async def record(req: RemotingCommand, conn: Connection) -> None:
        got.append(req)
        return None

    srv.register_processor(1003, record)
    reader, writer = await asyncio.open_connection("127.0.0.1", srv.port)
    ow = RemotingCommand.request(1003)
    ow.flag = 2
    ow2 = RemotingCommand.request(4242)
    ow2.flag = 2
    writer.write(encode(ow) + encode(ow2) + encode(RemotingCommand(code=1000, opaque=9)))
    await writer.drain()
    data = await asyncio.wait_for(reader.read(65536), 3)
    cmds = FrameDecoder().feed(data)
    assert len(cmds) == 1 and cmds[0].opaque == 9
    assert len(got) == 1
    writer.close()


async def test_server_invokes_client(srv: RemotingServer) -> None:
    conns: list[Connection] = []

    async def hello(req: RemotingCommand, conn: Connection) -> RemotingCommand:
        conns.append(conn)
        return req.response()

    srv.register_processor(1004, hello)
    c = RemotingClient()

    async def check(req: RemotingCommand, conn: Connection) -> RemotingCommand:
        return req.response(ext_fields={"state": "COMMIT"})

    c.register_processor(RequestCode.CHECK_TRANSACTION_STATE, check)
    await c.invoke(f"127.0.0.1:{srv.port}", RemotingCommand.request(1004), 3)
    r = await conns[0].invoke(RemotingCommand.request(RequestCode.CHECK_TRANSACTION_STATE), 3)
    assert r.ext_fields == {"state": "COMMIT"}
    r = await conns[0].invoke(RemotingCommand.request(777), 3)
    assert r.code == ResponseCode.REQUEST_CODE_NOT_SUPPORTED
    closed: list[Connection] = []
    srv.add_close_listener(closed.append)
    await c.close()
    for _ in range(100):
        if closed:
            break
        await asyncio.sleep(0.01)
    assert closed == [conns[0]]


@pytest.mark.parametrize(
    "garbage",
    [
        b"\x7f\xff\xff\xff" + b"x" * 100,  # 2 GiB length prefix
        b"\xff\xff\xff\xff",
        struct.pack(">ii", 10, 6) + b"notjson",
        b"GET / HTTP/1.1\r\n\r\n",
    ],
)
async def test_malformed_frame_closes_only_that_connection(srv: RemotingServer, garbage: bytes) -> None:
    c = RemotingClient()
    addr = f"127.0.0.1:{srv.port}"
    await c.invoke(addr, RemotingCommand.request(1000), 3)
    reader, writer = await asyncio.open_connection("127.0.0.1", srv.port)
    writer.write(garbage)
    await writer.drain()
    assert await asyncio.wait_for(reader.read(), 3) == b""  # closed by the server
    writer.close()
    r = await c.invoke(addr, RemotingCommand.request(1000, {"v": "still"}), 3)
    assert r.ext_fields["echo"] == "still"
    await c.close()


async def test_pending_calls_fail_when_server_goes_away() -> None:
    s = RemotingServer("127.0.0.1", 0)
    s.register_processor(1001, slow)
    await s.start()
    c = RemotingClient()
    t = asyncio.ensure_future(c.invoke(f"127.0.0.1:{s.port}", RemotingCommand.request(1001, {"delay": "5"}), 10))
    await asyncio.sleep(0.1)
    await s.shutdown()
    with pytest.raises(RemotingError):
        await t
    await c.close()


def test_under_uvloop() -> None:
    uvloop = pytest.importorskip("uvloop")

    async def main() -> None:
        s = RemotingServer("127.0.0.1", 0)
        s.register_processor(1000, echo)
        await s.start()
        c = RemotingClient()
        addr = f"127.0.0.1:{s.port}"
        res = await asyncio.gather(*(c.invoke(addr, RemotingCommand.request(1000, {"v": str(i)}), 3) for i in range(50)))
        assert [r.ext_fields["echo"] for r in res] == [str(i) for i in range(50)]
        r = await c.invoke(addr, RemotingCommand.request(5), 3)
        assert r.code == ResponseCode.REQUEST_CODE_NOT_SUPPORTED
        await c.close()
        await s.shutdown()

    uvloop.run(main())


async def test_inflight_limit_pauses_reading() -> None:
    gate = asyncio.Event()
    started = 0

    async def blocked(req: RemotingCommand, conn: Connection) -> RemotingCommand:
        nonlocal started
        started += 1
        await gate.wait()
        return req.response()

    s = RemotingServer("127.0.0.1", 0, max_inflight_per_connection=4)
    s.register_processor(1000, blocked)
    await s.start()
    c = RemotingClient()
    addr = f"127.0.0.1:{s.port}"
    calls = [asyncio.ensure_future(c.invoke(addr, RemotingCommand.request(1000), 5)) for _ in range(10)]
    await asyncio.sleep(0.3)
    assert started == 4  # the rest wait (reading paused) until these finish
    gate.set()
    res = await asyncio.gather(*calls)
    assert all(r.code == 0 for r in res) and started == 10
    await c.close()
    await s.shutdown()


async def test_unencodable_response_becomes_system_error(srv: RemotingServer) -> None:
    async def bad(req: RemotingCommand, conn: Connection) -> RemotingCommand:
        return req.response(remark="\ud800")

    srv.register_processor(1005, bad)
    c = RemotingClient()
    r = await c.invoke(f"127.0.0.1:{srv.port}", RemotingCommand.request(1005), 3)
    assert r.code == ResponseCode.SYSTEM_ERROR
    await c.close()


async def test_response_follows_request_serialization(srv: RemotingServer) -> None:
    async def fresh(req: RemotingCommand, conn: Connection) -> RemotingCommand:
        return RemotingCommand(code=0, ext_fields={"n": 1})  # type: ignore[dict-item]

    srv.register_processor(1006, fresh)
    c = RemotingClient()
    req = RemotingCommand.request(1006)
    req.serialize_type = SERIALIZE_ROCKETMQ
    r = await c.invoke(f"127.0.0.1:{srv.port}", req, 3)
    assert r.serialize_type == SERIALIZE_ROCKETMQ and r.ext_fields == {"n": "1"} and r.is_response
    await c.close()


class _StuckTransport(asyncio.Transport):
    """A transport whose peer does not read: writes are accepted, the protocol is told to pause writing."""

    def __init__(self) -> None:
        super().__init__()
        self.written: list[bytes] = []

    def get_extra_info(self, name: str, default: object = None) -> object:
        return ("127.0.0.1", 1) if name in ("peername", "sockname") else default

    def is_closing(self) -> bool:
        return False

    def write(self, data: bytes) -> None:  # type: ignore[override]
        self.written.append(bytes(data))

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


async def test_sends_to_a_peer_that_does_not_read_time_out() -> None:
    from backends.remoting.errors import RemotingTimeoutError

    conn = Connection({})
    conn.connection_made(_StuckTransport())
    conn.pause_writing()
    req = RemotingCommand.request(RequestCode.NOTIFY_CONSUMER_IDS_CHANGED, {"consumerGroup": "g"})
    with pytest.raises(RemotingTimeoutError):
        await asyncio.wait_for(conn.invoke_oneway(req, 0.05), 2.0)
    with pytest.raises(RemotingTimeoutError):
        await asyncio.wait_for(conn.invoke(req, 0.05), 2.0)  # the invoke timeout covers the wait to write
    assert not conn._drain_waiters and not conn._pending
    conn.resume_writing()
    await conn.invoke_oneway(req, 0.05)
