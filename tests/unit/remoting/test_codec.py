from __future__ import annotations

import struct

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from backends.remoting.codec import MAX_FRAME_SIZE, CodecError, FrameDecoder, decode, encode
from backends.remoting.command import SERIALIZE_JSON, SERIALIZE_ROCKETMQ, RemotingCommand

texts = st.text(max_size=40)
commands = st.builds(
    RemotingCommand,
    code=st.integers(-32768, 32767),
    ext_fields=st.dictionaries(st.text(min_size=1, max_size=20), texts, max_size=6),
    body=st.binary(max_size=200),
    opaque=st.integers(-(2**31), 2**31 - 1),
    flag=st.integers(0, 3),
    remark=st.one_of(st.none(), st.text(min_size=1, max_size=40)),
    language=st.sampled_from(["JAVA", "CPP", "PYTHON", "GO", "RUST"]),
    version=st.integers(0, 32767),
    serialize_type=st.sampled_from([SERIALIZE_JSON, SERIALIZE_ROCKETMQ]),
)


@settings(max_examples=200, deadline=None)
@given(commands)
def test_round_trip(cmd: RemotingCommand) -> None:
    frame = encode(cmd)
    (total,) = struct.unpack(">i", frame[:4])
    assert total == len(frame) - 4
    assert frame[4] == cmd.serialize_type
    assert decode(frame[4:]) == cmd


@settings(max_examples=50, deadline=None)
@given(st.lists(commands, min_size=1, max_size=5), st.integers(1, 50))
def test_incremental_decoder_any_split(cmds: list[RemotingCommand], chunk: int) -> None:
    data = b"".join(encode(c) for c in cmds)
    dec = FrameDecoder()
    out: list[RemotingCommand] = []
    for i in range(0, len(data), chunk):
        out.extend(dec.feed(data[i : i + chunk]))
    assert out == cmds
    assert dec.buffered == 0


def test_json_header_shape() -> None:
    cmd = RemotingCommand(code=105, ext_fields={"topic": "T"}, opaque=7, remark=None)
    frame = encode(cmd)
    header_len = struct.unpack(">i", frame[4:8])[0] & 0xFFFFFF
    h = orjson.loads(frame[8 : 8 + header_len])
    assert h["code"] == 105 and h["opaque"] == 7 and h["extFields"] == {"topic": "T"}
    assert h["serializeTypeCurrentRPC"] == "JSON" and h["language"] == "PYTHON"
    assert "remark" not in h


def test_request_numbers_coerced_to_strings() -> None:
    header = orjson.dumps(
        {"code": 310, "flag": 0, "opaque": 1, "extFields": {"e": 3, "k": False, "x": None, "d": 1.5}}
    )
    frame = struct.pack(">i", len(header)) + header + b"body"
    cmd = decode(frame)
    assert cmd.ext_fields == {"e": "3", "k": "false", "d": "1.5"}
    assert cmd.body == b"body"


def test_non_string_ext_values_encoded_as_strings() -> None:
    cmd = RemotingCommand(code=0, ext_fields={"queueId": 3, "ok": True})  # type: ignore[dict-item]
    back = decode(encode(cmd)[4:])
    assert back.ext_fields == {"queueId": "3", "ok": "true"}
    cmd.serialize_type = SERIALIZE_ROCKETMQ
    assert decode(encode(cmd)[4:]).ext_fields == {"queueId": "3", "ok": "true"}


def test_binary_language_ordinals() -> None:
    frame = encode(RemotingCommand(code=1, language="PYTHON", serialize_type=SERIALIZE_ROCKETMQ))
    assert frame[8 + 2] == 3  # LanguageCode.PYTHON


@pytest.mark.parametrize(
    "frame",
    [
        b"",
        b"\x00\x00",
        struct.pack(">i", 100) + b"{}",  # header length beyond the frame
        struct.pack(">i", 5) + b"notjs",
        struct.pack(">i", 2) + b"[]",
        struct.pack(">i", 2) + b"{}",  # no code
        struct.pack(">i", 9) + b'{"code":"x"}'[:9],
        struct.pack(">i", (7 << 24) | 2) + b"{}",  # unknown serialize type
        struct.pack(">i", (1 << 24) | 3) + b"abc",  # truncated binary header
        struct.pack(">i", (1 << 24) | 21) + struct.pack(">hbhiii", 1, 0, 0, 0, 0, 99) + b"\0\0\0\0",
    ],
)
def test_bad_frames(frame: bytes) -> None:
    with pytest.raises(CodecError):
        decode(frame)


def test_bad_binary_ext_fields() -> None:
    fixed = struct.pack(">hbhii", 1, 0, 0, 1, 0) + struct.pack(">i", 0)
    ext = struct.pack(">H", 50) + b"k"  # key length beyond the header
    header = fixed + struct.pack(">i", len(ext)) + ext
    with pytest.raises(CodecError):
        decode(struct.pack(">i", (1 << 24) | len(header)) + header)


def test_huge_length_prefix_refused_without_buffering() -> None:
    dec = FrameDecoder()
    with pytest.raises(CodecError):
        dec.feed(struct.pack(">i", 2**31 - 1) + b"x" * 10)
    dec = FrameDecoder()
    with pytest.raises(CodecError):
        dec.feed(struct.pack(">i", MAX_FRAME_SIZE + 1))
    dec = FrameDecoder()
    with pytest.raises(CodecError):
        dec.feed(struct.pack(">i", -5))


def test_truncated_frame_waits() -> None:
    frame = encode(RemotingCommand(code=105, ext_fields={"topic": "T"}))
    dec = FrameDecoder()
    assert dec.feed(frame[:-3]) == []
    assert dec.feed(frame[-3:])[0].ext_fields == {"topic": "T"}


def test_oversized_encode_refused() -> None:
    with pytest.raises(CodecError):
        encode(RemotingCommand(code=1, body=b"x" * MAX_FRAME_SIZE))


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_garbage_never_crashes(data: bytes) -> None:
    dec = FrameDecoder()
    try:
        dec.feed(data)
    except CodecError:
        pass
    assert dec.buffered <= len(data)


def test_unencodable_commands_raise_codec_error() -> None:
    with pytest.raises(CodecError):
        encode(RemotingCommand(code=1, remark="\ud800"))
    with pytest.raises(CodecError):
        encode(RemotingCommand(code=70000, serialize_type=SERIALIZE_ROCKETMQ))
    with pytest.raises(CodecError):
        encode(RemotingCommand(code=1, ext_fields={"k": "\udfff"}, serialize_type=SERIALIZE_ROCKETMQ))
