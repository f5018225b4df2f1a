"""The one request-header reader: RocketMQ's "the custom field <x> is null" and clear one-line errors."""

from __future__ import annotations

import pytest

from backends.remoting.codes import ResponseCode
from backends.remoting.command import RemotingCommand
from backends.remoting.header import Header, RemotingCommandException


def _h(**fields: object) -> Header:
    return Header(RemotingCommand.request(10, fields))  # type: ignore[arg-type]


def _error(fn: object, *args: object) -> str:
    with pytest.raises(RemotingCommandException) as e:
        fn(*args)  # type: ignore[operator]
    assert e.value.code == ResponseCode.SYSTEM_ERROR
    return str(e.value)


def test_strings_and_aliases() -> None:
    h = _h(b="T", topic="ignored", empty="")
    assert h.s("b", None, "topic") == "T"
    assert h.s("topic") == "ignored"
    assert h.s("x", None, "y", "b") == "T"
    assert h.s("empty") == ""  # an empty string is a value
    assert h.s("missing", "dflt") == "dflt"
    assert h.opt("missing", "other") is None
    assert _error(h.s, "missing") == "the custom field <missing> is null"
    assert Header(RemotingCommand(code=10, ext_fields=None)).opt("x") is None  # type: ignore[arg-type]


def test_ints() -> None:
    h = _h(a="12", n="-7", bad="abc", empty="", big="9" * 20, long=str(2**63 - 1), num=5)
    assert h.i("a") == 12 and h.i("n") == -7 and h.i("long") == 2**63 - 1
    assert h.i("num") == 5  # a non-string value from an in-process caller
    assert h.i("missing", 3) == 3 and h.i("empty", 4) == 4
    assert h.i("x", None, "a") == 12
    assert _error(h.i, "missing") == "the custom field <missing> is null"
    assert _error(h.i, "bad") == "the custom field <bad> is not a number: 'abc'"
    assert _error(h.i, "bad", 0) == "the custom field <bad> is not a number: 'abc'"
    assert _error(h.i, "empty") == "the custom field <empty> is not a number: ''"
    assert _error(h.i, "big") == f"the custom field <big> is out of range: '{'9' * 20}'"


def test_long_garbage_is_cut_to_one_short_line() -> None:
    msg = _error(_h(q="x\n" * 100).i, "q")
    assert "\n" not in msg and len(msg) < 120


def test_bools() -> None:
    h = _h(t="true", T="TRUE", one="1", f="false", zero="0", empty="", bad="yes")
    assert h.b("t") and h.b("T") and h.b("one")
    assert not h.b("f", True) and not h.b("zero", True)
    assert h.b("empty", True) and h.b("missing", True) and not h.b("missing")
    assert _error(h.b, "bad") == "the custom field <bad> is not a boolean: 'yes'"


def test_exception_answers_with_its_code() -> None:
    req = RemotingCommand.request(10, {})
    resp = RemotingCommandException("the custom field <topic> is null").response(req)
    assert resp.code == ResponseCode.SYSTEM_ERROR and resp.remark == "the custom field <topic> is null"
    assert resp.opaque == req.opaque
    assert RemotingCommandException("x", ResponseCode.INVALID_PARAMETER).response(req).code == (
        ResponseCode.INVALID_PARAMETER)


async def test_server_answers_a_header_error_with_its_remark() -> None:
    from backends.remoting.client import RemotingClient
    from backends.remoting.server import Connection, RemotingServer

    async def needs_n(req: RemotingCommand, conn: Connection) -> RemotingCommand:
        return req.response(ext_fields={"n": str(Header(req).i("n"))})

    srv = RemotingServer("127.0.0.1", 0)
    srv.register_processor(1000, needs_n)
    await srv.start()
    c = RemotingClient()
    try:
        addr = f"127.0.0.1:{srv.port}"
        ok = await c.invoke(addr, RemotingCommand.request(1000, {"n": "5"}), 5)
        assert ok.code == ResponseCode.SUCCESS and ok.ext_fields["n"] == "5"
        for fields, remark in (({}, "the custom field <n> is null"),
                               ({"n": "x"}, "the custom field <n> is not a number: 'x'")):
            r = await c.invoke(addr, RemotingCommand.request(1000, fields), 5)
            assert (r.code, r.remark) == (ResponseCode.SYSTEM_ERROR, remark)
    finally:
        await c.close()
        await srv.shutdown()
