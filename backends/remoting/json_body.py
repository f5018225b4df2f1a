"""JSON bodies of remoting commands (RocketMQ's RemotingSerializable).

Java's fastjson writes maps with non-string keys bare: integer keys unquoted
(``{"brokerAddrs":{0:"127.0.0.1:10911"}}``) and object keys as objects
(``{"offsetTable":{{"brokerName":"b","queueId":0,"topic":"T"}:{"maxOffset":3}}}``), which strict JSON
parsers refuse. :func:`loads` accepts both: a bare number key becomes its text (``"0"``), an object or
array key becomes its compact JSON text with sorted keys (see :func:`object_key`). Standard JSON takes
the fast path (orjson). :func:`dumps` writes standard JSON.
"""

from __future__ import annotations

import json
import re
from typing import Any

import orjson

_scanstring = json.decoder.scanstring  # type: ignore[attr-defined]
_NUMBER_OR_LITERAL = re.compile(r"-?(?:\d+)(?:\.\d+)?(?:[eE][-+]?\d+)?|true|false|null")
_WS = re.compile(r"[ \t\n\r]*")


def object_key(obj: Any) -> str:
    """The string a non-string (object/array) map key is turned into by :func:`loads`."""
    return orjson.dumps(obj, option=orjson.OPT_SORT_KEYS).decode()


class _Lenient:
    __slots__ = ("s", "pos")

    def __init__(self, s: str) -> None:
        self.s = s
        self.pos = 0

    def ws(self) -> None:
        m = _WS.match(self.s, self.pos)
        if m:
            self.pos = m.end()

    def fail(self, what: str) -> ValueError:
        return ValueError(f"{what} at position {self.pos}")

    def value(self) -> Any:
        self.ws()
        if self.pos >= len(self.s):
            raise self.fail("unexpected end of JSON")
        c = self.s[self.pos]
        if c == "{":
            return self.obj()
        if c == "[":
            return self.arr()
        if c == '"':
            text, self.pos = _scanstring(self.s, self.pos + 1, True)
            return text
        m = _NUMBER_OR_LITERAL.match(self.s, self.pos)
        if not m:
            raise self.fail("unexpected character")
        self.pos = m.end()
        return orjson.loads(m.group())

    def key(self) -> str:
        self.ws()
        if self.pos >= len(self.s):
            raise self.fail("unexpected end of JSON")
        c = self.s[self.pos]
        if c == '"':
            text, self.pos = _scanstring(self.s, self.pos + 1, True)
            return str(text)
        if c in "{[":
            return object_key(self.value())
        m = _NUMBER_OR_LITERAL.match(self.s, self.pos)
        if not m:
            raise self.fail("bad object key")
        self.pos = m.end()
        return m.group()

    def obj(self) -> dict[str, Any]:
        self.pos += 1
        out: dict[str, Any] = {}
        self.ws()
        if self.s.startswith("}", self.pos):
            self.pos += 1
            return out
        while True:
            k = self.key()
            self.ws()
            if not self.s.startswith(":", self.pos):
                raise self.fail("expected ':'")
            self.pos += 1
            out[k] = self.value()
            self.ws()
            if self.s.startswith(",", self.pos):
                self.pos += 1
            elif self.s.startswith("}", self.pos):
                self.pos += 1
                return out
            else:
                raise self.fail("expected ',' or '}'")

    def arr(self) -> list[Any]:
        self.pos += 1
        out: list[Any] = []
        self.ws()
        if self.s.startswith("]", self.pos):
            self.pos += 1
            return out
        while True:
            out.append(self.value())
            self.ws()
            if self.s.startswith(",", self.pos):
                self.pos += 1
            elif self.s.startswith("]", self.pos):
                self.pos += 1
                return out
            else:
                raise self.fail("expected ',' or ']'")


def loads(data: bytes | bytearray | memoryview | str) -> Any:
    """Parse a body; raises ValueError when it is not (lenient) JSON."""
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        pass
    try:
        text = data if isinstance(data, str) else bytes(data).decode("utf-8")
    except UnicodeDecodeError as e:
        raise ValueError(f"body is not UTF-8: {e}") from None
    p = _Lenient(text)
    try:
        result = p.value()
    except (RecursionError, json.JSONDecodeError) as e:
        raise ValueError(f"body is not JSON: {e}") from None
    p.ws()
    if p.pos != len(text):
        raise p.fail("trailing data")
    return result


def dumps(obj: Any) -> bytes:
    """Standard JSON; dict keys that are not strings (ints) are written as strings."""
    return orjson.dumps(obj, option=orjson.OPT_NON_STR_KEYS)
