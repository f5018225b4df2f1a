from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from backends.remoting import json_body


def test_fastjson_integer_keys() -> None:
    raw = b'{"brokerAddrs":{0:"127.0.0.1:10911", 1 : "127.0.0.1:10921"},"s":"{3:x}, 4:"}'
    assert json_body.loads(raw) == {
        "brokerAddrs": {"0": "127.0.0.1:10911", "1": "127.0.0.1:10921"},
        "s": "{3:x}, 4:",
    }


def test_escaped_quotes_in_strings() -> None:
    raw = b'{"a":"x\\",1:\\"","m":{-1:2}}'
    assert json_body.loads(raw) == {"a": 'x",1:"', "m": {"-1": 2}}


def test_dumps_int_keys() -> None:
    assert json_body.loads(json_body.dumps({"m": {0: "a"}})) == {"m": {"0": "a"}}


def test_not_json() -> None:
    with pytest.raises(ValueError):
        json_body.loads(b"{nope")


@given(st.recursive(
    st.none() | st.booleans() | st.integers(-10**9, 10**9) | st.text(),
    lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(), c, max_size=3),
    max_leaves=10,
))
def test_standard_json_unchanged(obj: object) -> None:
    assert json_body.loads(json_body.dumps(obj)) == obj


def test_fastjson_object_keys() -> None:
    raw = b'{"offsetTable":{{"brokerName":"b","queueId":0,"topic":"T"}:{"maxOffset":3},' \
          b'{"topic":"T","brokerName":"b","queueId":1}:{"maxOffset":4}}}'
    table = json_body.loads(raw)["offsetTable"]
    k0 = json_body.object_key({"topic": "T", "brokerName": "b", "queueId": 0})
    assert table[k0] == {"maxOffset": 3}
    assert len(table) == 2


@pytest.mark.parametrize("bad", [b"{1:}", b"[1,", b'{"a" 1}', b"{} x", b"\xff\xfe", b"{" * 5000])
def test_lenient_errors(bad: bytes) -> None:
    with pytest.raises(ValueError):
        json_body.loads(bad)
