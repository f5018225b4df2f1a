from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from backends.model import Message, MessageExt
from backends.store.record import (
    BLANK_MAGIC_CODE,
    MESSAGE_MAGIC_CODE,
    BlankRecord,
    RecordError,
    blank_record,
    body_crc,
    check_record,
    decode_message_batch,
    decode_record,
    decode_records,
    encode_message_batch,
    encode_record,
    java_string_hash,
    stored_record_ok,
    tags_code,
)


def _msg(**kw: object) -> Message:
    base = dict(topic="TopicA", body=b"hello world", properties={"TAGS": "TagA", "KEYS": "k1 k2"},
                flag=3, queue_id=2, sys_flag=0, born_timestamp=1_700_000_000_123,
                born_host=("192.168.1.2", 51000), reconsume_times=1, prepared_transaction_offset=7)
    base.update(kw)
    return Message(**base)  # type: ignore[arg-type]


def test_layout_matches_rocketmq_v1() -> None:
    m = _msg()
    rec = encode_record(m, queue_offset=5, physical_offset=4096, store_timestamp=1_700_000_000_999,
                        store_host=("10.0.0.1", 10911))
    props = b"TAGS\x01TagA\x02KEYS\x01k1 k2\x02"
    assert len(rec) == 4 + 4 + 4 + 4 + 4 + 8 + 8 + 4 + 8 + 8 + 8 + 8 + 4 + 8 + 4 + 11 + 1 + 6 + 2 + len(props)
    total, magic, crc, qid, flag, qoff, phy, sysflag, born = struct.unpack_from(">iiiiiqqiq", rec)
    assert (total, magic, qid, flag, qoff, phy, sysflag, born) == (
        len(rec), MESSAGE_MAGIC_CODE, 2, 3, 5, 4096, 0, 1_700_000_000_123)
    assert magic & 0xFFFFFFFF == 0xDAA320A7
    assert crc == body_crc(b"hello world") and crc >= 0  # UtilAll.crc32 masks to 31 bits
    assert rec[48:52] == bytes([192, 168, 1, 2]) and struct.unpack_from(">i", rec, 52)[0] == 51000
    assert struct.unpack_from(">q", rec, 56)[0] == 1_700_000_000_999
    assert rec[64:68] == bytes([10, 0, 0, 1]) and struct.unpack_from(">i", rec, 68)[0] == 10911
    assert rec.endswith(b"\x06TopicA" + struct.pack(">h", len(props)) + props)


def test_round_trip_and_ipv6() -> None:
    m = _msg(born_host=("::1", 1234))
    rec = encode_record(m, 9, 77, 1234, ("fe80::1", 10911))
    d = decode_record(rec)
    assert isinstance(d, MessageExt)
    assert (d.topic, d.body, d.properties, d.queue_offset, d.commitlog_offset, d.store_size) == (
        "TopicA", b"hello world", {"TAGS": "TagA", "KEYS": "k1 k2"}, 9, 77, len(rec))
    assert d.born_host == ("::1", 1234) and d.store_host == ("fe80::1", 10911)
    assert d.sys_flag & 0x10 and d.sys_flag & 0x20
    assert check_record(rec).topic == "TopicA"


@settings(max_examples=150, deadline=None)
@given(
    topic=st.text(st.characters(min_codepoint=33, max_codepoint=0x2FFF, blacklist_categories=("Cs",)),
                  min_size=1, max_size=60),
    body=st.binary(max_size=2000),
    props=st.dictionaries(
        st.text(st.characters(min_codepoint=48, max_codepoint=0x7A), min_size=1, max_size=10),
        st.text(st.characters(min_codepoint=32, max_codepoint=0xFFFF, blacklist_categories=("Cs",),
                              blacklist_characters="\x01\x02"), max_size=30), max_size=5),
    qoff=st.integers(0, 2**62), phy=st.integers(0, 2**62), flag=st.integers(-(2**31), 2**31 - 1),
    ts=st.integers(0, 2**50),
)
def test_round_trip_property(topic: str, body: bytes, props: dict[str, str], qoff: int, phy: int, flag: int,
                             ts: int) -> None:
    m = _msg(topic=topic, body=body, properties=props, flag=flag)
    rec = encode_record(m, qoff, phy, ts, ("127.0.0.1", 10911))
    d = decode_record(rec)
    assert (d.topic, d.body, d.properties, d.flag, d.queue_offset, d.commitlog_offset, d.store_timestamp) == (
        topic, body, props, flag, qoff, phy, ts)
    assert stored_record_ok(rec, phy)
    # the client batch codec round-trips the same message
    (b,) = decode_message_batch(encode_message_batch([m]), topic)
    assert (b.body, b.properties, b.flag) == (body, props, flag)


def test_wrong_magic_crc_and_size_are_detected() -> None:
    rec = bytearray(encode_record(_msg(), 0, 0, 1, ("127.0.0.1", 1)))
    bad = bytearray(rec)
    bad[4:8] = b"\x00\x00\x00\x01"
    with pytest.raises(RecordError, match="magic"):
        decode_record(bytes(bad))
    bad = bytearray(rec)
    bad[-30] ^= 0x01  # inside props? no: flip a body bit below
    body_at = 88
    bad = bytearray(rec)
    bad[body_at + 3] ^= 0x40
    with pytest.raises(RecordError, match="CRC"):
        decode_record(bytes(bad))
    with pytest.raises(RecordError, match="CRC"):
        check_record(bytes(bad))
    assert not stored_record_ok(bytes(bad), 0)
    with pytest.raises(RecordError, match="past the end"):
        decode_record(bytes(rec[:-1]))
    bad = bytearray(rec)
    struct.pack_into(">i", bad, 0, len(rec) + 100)
    with pytest.raises(RecordError):
        decode_record(bytes(bad) + bytes(50))
    with pytest.raises(BlankRecord):
        decode_record(blank_record(64))
    assert struct.unpack_from(">i", blank_record(64), 4)[0] == BLANK_MAGIC_CODE


def test_decode_records_pull_body() -> None:
    recs = [encode_record(_msg(body=bytes([i]) * i), i, 100 * i, 5, ("127.0.0.1", 1)) for i in range(5)]
    out = decode_records(b"".join(recs))
    assert [m.body for m in out] == [bytes([i]) * i for i in range(5)]
    assert [m.queue_offset for m in out] == list(range(5))


def test_batch_format_and_errors() -> None:
    msgs = [_msg(body=b"a"), _msg(body=b"bb", properties={"UNIQ_KEY": "X"}, flag=9)]
    raw = encode_message_batch(msgs)
    # totalSize i32, magic 0, bodyCRC, flag, bodyLen + body, propsLen i16 + props
    total, magic, crc, flag, blen = struct.unpack_from(">iiiii", raw)
    assert magic == 0 and blen == 1 and crc == body_crc(b"a") and flag == 3
    out = decode_message_batch(raw, "T")
    assert [(m.topic, m.body, m.flag) for m in out] == [("T", b"a", 3), ("T", b"bb", 9)]
    with pytest.raises(RecordError):
        decode_message_batch(raw[:-1])
    bad = bytearray(raw)
    bad[20] ^= 1
    with pytest.raises(RecordError, match="CRC"):
        decode_message_batch(bytes(bad))


def test_tags_code_is_java_hash_code() -> None:
    assert tags_code("") == 0 and tags_code(None) == 0
    assert java_string_hash("hello") == 99162322
    assert java_string_hash("TagA") == 2598919
    assert java_string_hash("polygenelubricants") == -2147483648  # known Java value (Integer.MIN_VALUE)
    assert java_string_hash("\U0001F600") == 0xD83D * 31 + 0xDE00  # surrogate pair
    assert tags_code("TagA") == 2598919


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=4096))
def test_body_crc_is_java_crc32(data: bytes) -> None:
    # the store computes CRCs with zlib-ng for speed; they must be the CRC-32 that zlib and Java's
    # java.util.zip.CRC32 compute (RocketMQ's UtilAll.crc32), masked to 31 bits
    import zlib

    from backends.store.record import body_crc

    assert body_crc(data) == zlib.crc32(data) & 0x7FFFFFFF
    assert body_crc(memoryview(data)) == body_crc(data)
