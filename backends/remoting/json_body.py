"""JSON bodies of remoting commands (RocketMQ's RemotingSerializable).

Java's fastjson writes maps with integer keys unquoted, e.g. ``{"brokerAddrs":{0:"127.0.0.1:10911"}}``,
which strict JSON parsers refuse. :func:`loads` accepts that (bare integer keys outside strings are
quoted before parsing); :func:`dumps` writes standard JSON.
"""

from __future__ import annotations

import re
from typing import Any

import orjson

# A JSON string (skipped as is) or a bare integer object key after '{' or ','.
_BARE_KEY = re.compile(rb'("(?:[^"\\]|\\.)*")|([{,]\s*)(-?\d+)(\s*:)', re.DOTALL)


def _quote(m: re.Match[bytes]) -> bytes:
    if m.group(1) is not None:
        return m.group(1)
    return m.group(2) + b'"' + m.group(3) + b'"' + m.group(4)


def loads(data: bytes | bytearray | memoryview | str) -> Any:
    """Parse a body; raises ValueError (orjson.JSONDecodeError) when it is not (lenient) JSON."""
    if isinstance(data, str):
        data = data.encode()
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        fixed = _BARE_KEY.sub(_quote, bytes(data))
        return orjson.loads(fixed)


def dumps(obj: Any) -> bytes:
    """Standard JSON; dict keys that are not strings (ints) are written as strings."""
    return orjson.dumps(obj, option=orjson.OPT_NON_STR_KEYS)
