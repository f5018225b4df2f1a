from __future__ import annotations

import struct
import zlib

import pytest

from backends.namesrv.processor import parse_compressed_register_body, parse_register_body


def _i(n: int) -> bytes:
    return struct.pack(">i", n)


def compressed_body() -> bytes:
    dv = b'{"counter":7,"stateVersion":0,"timestamp":1700000000000}'
    topics = [b'TopicA 4 4 6 SINGLE_TAG {"message.type":"FIFO"}', b"TopicB 2 1 4 SINGLE_TAG {}"]
    raw = _i(len(dv)) + dv + _i(len(topics))
    for t in topics:
        raw += _i(len(t)) + t
    raw += _i(2) + b"[]" + _i(0)
    return zlib.compress(raw, 9)


def test_compressed_register_body() -> None:
    configs, dv = parse_compressed_register_body(compressed_body())
    assert dv.counter == 7 and dv.timestamp == 1700000000000
    assert configs["TopicA"].read_queue_nums == 4 and configs["TopicA"].attributes == {"message.type": "FIFO"}
    assert configs["TopicB"].write_queue_nums == 1 and configs["TopicB"].perm == 4


@pytest.mark.parametrize("body", [b"not zlib", zlib.compress(b"\x00\x00\x00\x10{}"), zlib.compress(b"\x00")])
def test_bad_compressed_register_body(body: bytes) -> None:
    with pytest.raises((ValueError, zlib.error)):
        parse_compressed_register_body(body)


def test_fastjson_register_body() -> None:
    body = (b'{"filterServerList":[],"topicConfigSerializeWrapper":{"dataVersion":{"counter":2,"timestamp":5},'
            b'"topicConfigTable":{"T":{"order":false,"perm":6,"readQueueNums":3,"topicFilterType":"SINGLE_TAG",'
            b'"topicName":"T","topicSysFlag":0,"writeQueueNums":3}}}}')
    configs, dv = parse_register_body(body)
    assert configs["T"].read_queue_nums == 3 and dv.counter == 2
