"""Pure codec of the remoting frame (no I/O).

Frame: int32 totalLen (excluding itself) | int32 (serializeType<<24 | headerLen) | header | body.

Two header serializations exist (RocketMQ's SerializeType): JSON (0) and the compact binary
ROCKETMQ (1). A response is written in the serialization of the request it answers, which
:meth:`RemotingCommand.response` carries over in ``serialize_type``.
"""

from __future__ import annotations

import struct
from typing import Any

import orjson

from backends.remoting.command import SERIALIZE_JSON, SERIALIZE_ROCKETMQ, RemotingCommand

MAX_FRAME_SIZE = 16 * 1024 * 1024

# RocketMQ's LanguageCode ordinals (the binary header carries the ordinal, JSON the name).
LANGUAGES: tuple[str, ...] = (
    "JAVA", "CPP", "DOTNET", "PYTHON", "DELPHI", "ERLANG", "RUBY", "OTHER", "HTTP", "GO", "PHP",
    "OMS", "RUST", "NODE_JS",
)
_LANGUAGE_ORDINAL = {name: i for i, name in enumerate(LANGUAGES)}
_OTHER = _LANGUAGE_ORDINAL["OTHER"]

_INT = struct.Struct(">i")
_TWO_INTS = struct.Struct(">ii")
_BIN_FIXED = struct.Struct(">hbhii")  # code, language, version, opaque, flag
_U16 = struct.Struct(">H")


class CodecError(Exception):
    """A malformed frame: the connection that sent it is closed."""


# --- encode -------------------------------------------------------------------------------------


def _json_header(cmd: RemotingCommand) -> bytes:
    header: dict[str, Any] = {
        "code": cmd.code,
        "language": cmd.language,
        "version": cmd.version,
        "opaque": cmd.opaque,
        "flag": cmd.flag,
    }
    if cmd.remark is not None:
        header["remark"] = cmd.remark
    header["extFields"] = cmd.ext_fields
    header["serializeTypeCurrentRPC"] = "JSON"
    try:
        return orjson.dumps(header)
    except TypeError:
        # A non-string value slipped into ext_fields: every value goes on the wire as a string.
        header["extFields"] = {str(k): _str(v) for k, v in cmd.ext_fields.items()}
        return orjson.dumps(header)


def _str(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


def _rocketmq_header(cmd: RemotingCommand) -> bytes:
    parts = [
        _BIN_FIXED.pack(
            cmd.code,
            _LANGUAGE_ORDINAL.get(cmd.language, _OTHER),
            cmd.version,
            cmd.opaque,
            cmd.flag,
        )
    ]
    if cmd.remark:
        remark = cmd.remark.encode()
        parts.append(_INT.pack(len(remark)))
        parts.append(remark)
    else:
        parts.append(_INT.pack(0))
    if cmd.ext_fields:
        ext: list[bytes] = []
        for k, v in cmd.ext_fields.items():
            if v is None:
                continue
            kb = str(k).encode()
            vb = _str(v).encode()
            ext.append(_U16.pack(len(kb)))
            ext.append(kb)
            ext.append(_INT.pack(len(vb)))
            ext.append(vb)
        blob = b"".join(ext)
        parts.append(_INT.pack(len(blob)))
        parts.append(blob)
    else:
        parts.append(_INT.pack(0))
    return b"".join(parts)


def encode(cmd: RemotingCommand) -> bytes:
    """The whole frame, length prefix included, in ``cmd.serialize_type``."""
    try:
        if cmd.serialize_type == SERIALIZE_ROCKETMQ:
            header = _rocketmq_header(cmd)
        else:
            header = _json_header(cmd)
    except (TypeError, ValueError, struct.error) as e:  # unencodable text, out-of-range numbers
        raise CodecError(f"cannot encode command {cmd.code}: {e}") from None
    body = cmd.body or b""
    total = 4 + len(header) + len(body)
    if total > MAX_FRAME_SIZE:
        raise CodecError(f"frame of {total} bytes exceeds {MAX_FRAME_SIZE}")
    return b"".join(
        (_TWO_INTS.pack(total, (cmd.serialize_type << 24) | len(header)), header, body)
    )


# --- decode -------------------------------------------------------------------------------------


def _int(v: Any, name: str) -> int:
    if isinstance(v, bool):
        raise CodecError(f"header field {name} is not an integer")
    if isinstance(v, int):
        return v
    if isinstance(v, str):
        try:
            return int(v)
        except ValueError:
            pass
    raise CodecError(f"header field {name} is not an integer: {v!r}")


def _decode_json_header(raw: bytes | memoryview) -> RemotingCommand:
    try:
        h = orjson.loads(raw)
    except orjson.JSONDecodeError as e:
        raise CodecError(f"header is not JSON: {e}") from None
    if type(h) is not dict:
        raise CodecError("header is not a JSON object")
    code = h.get("code")
    if type(code) is not int:
        if code is None:
            raise CodecError("header has no code")
        code = _int(code, "code")
    ext = h.get("extFields")
    ext_fields: dict[str, str]
    if ext is None:
        ext_fields = {}
    elif type(ext) is dict:
        ext_fields = ext
        for v in ext.values():
            if type(v) is not str:  # numbers, booleans or nulls from a lenient client: normalise
                ext_fields = {}
                for k, v2 in ext.items():
                    if v2 is None:
                        continue
                    ext_fields[k] = v2 if isinstance(v2, str) else (
                        orjson.dumps(v2).decode() if isinstance(v2, dict | list) else _str(v2)
                    )
                break
    else:
        raise CodecError("extFields is not an object")
    remark = h.get("remark")
    language = h.get("language", "JAVA")
    if type(language) is not str:
        if isinstance(language, int) and not isinstance(language, bool):
            language = LANGUAGES[language] if 0 <= language < len(LANGUAGES) else "OTHER"
        else:
            language = str(language)
    opaque = h.get("opaque", 0)
    flag = h.get("flag", 0)
    version = h.get("version", 0)
    return RemotingCommand(
        code=code,
        ext_fields=ext_fields,
        opaque=opaque if type(opaque) is int else _int(opaque, "opaque"),
        flag=flag if type(flag) is int else _int(flag, "flag"),
        remark=remark if remark is None or type(remark) is str else str(remark),
        language=language,
        version=version if type(version) is int else _int(version, "version"),
        serialize_type=SERIALIZE_JSON,
    )


def _decode_rocketmq_header(raw: bytes | memoryview) -> RemotingCommand:
    n = len(raw)
    if n < _BIN_FIXED.size + 8:
        raise CodecError("binary header truncated")
    code, lang, version, opaque, flag = _BIN_FIXED.unpack_from(raw, 0)
    pos = _BIN_FIXED.size
    (rlen,) = _INT.unpack_from(raw, pos)
    pos += 4
    if rlen < 0 or pos + rlen + 4 > n:
        raise CodecError("binary header: bad remark length")
    try:
        remark = bytes(raw[pos : pos + rlen]).decode() if rlen else None
        pos += rlen
        (elen,) = _INT.unpack_from(raw, pos)
        pos += 4
        if elen < 0 or pos + elen != n:
            raise CodecError("binary header: bad extFields length")
        ext: dict[str, str] = {}
        while pos < n:
            if pos + 2 > n:
                raise CodecError("binary header: truncated extFields key")
            (klen,) = _U16.unpack_from(raw, pos)
            pos += 2
            if pos + klen + 4 > n:
                raise CodecError("binary header: truncated extFields key")
            k = bytes(raw[pos : pos + klen]).decode()
            pos += klen
            (vlen,) = _INT.unpack_from(raw, pos)
            pos += 4
            if vlen < 0 or pos + vlen > n:
                raise CodecError("binary header: truncated extFields value")
            ext[k] = bytes(raw[pos : pos + vlen]).decode()
            pos += vlen
    except UnicodeDecodeError as e:
        raise CodecError(f"binary header: invalid UTF-8: {e}") from None
    language = LANGUAGES[lang] if 0 <= lang < len(LANGUAGES) else "OTHER"
    return RemotingCommand(
        code=code,
        ext_fields=ext,
        opaque=opaque,
        flag=flag,
        remark=remark,
        language=language,
        version=version,
        serialize_type=SERIALIZE_ROCKETMQ,
    )


def decode(frame: bytes | bytearray | memoryview) -> RemotingCommand:
    """One frame without its 4-byte length prefix."""
    n = len(frame)
    if n < 4:
        raise CodecError("frame shorter than its header length field")
    if n > MAX_FRAME_SIZE:
        raise CodecError(f"frame of {n} bytes exceeds {MAX_FRAME_SIZE}")
    (mark,) = _INT.unpack_from(frame, 0)
    serialize_type = (mark >> 24) & 0xFF
    header_len = mark & 0xFFFFFF
    if 4 + header_len > n:
        raise CodecError(f"header length {header_len} exceeds frame length {n}")
    view = frame if type(frame) is memoryview else memoryview(frame)
    header = view[4 : 4 + header_len]
    if serialize_type == SERIALIZE_JSON:
        cmd = _decode_json_header(header)
    elif serialize_type == SERIALIZE_ROCKETMQ:
        cmd = _decode_rocketmq_header(header)
    else:
        raise CodecError(f"unknown serialize type {serialize_type}")
    cmd.body = bytes(view[4 + header_len :])
    return cmd


class FrameDecoder:
    """Incremental decoder: ``feed(data)`` returns the complete commands so far.

    Memory is bounded by one frame (``max_frame_size``): a length prefix above it raises
    :class:`CodecError` before anything is buffered for it.
    """

    __slots__ = ("_buf", "_need", "max_frame_size")

    def __init__(self, max_frame_size: int = MAX_FRAME_SIZE) -> None:
        self._buf = bytearray()
        self._need = 0  # bytes the buffered partial frame needs before it can be decoded
        self.max_frame_size = max_frame_size

    @property
    def buffered(self) -> int:
        return len(self._buf)

    def feed(self, data: bytes) -> list[RemotingCommand]:
        buf = self._buf
        if buf:
            buf += data
            if len(buf) < self._need:
                return []  # still incomplete: no copy, no re-parse
            data = bytes(buf)
            buf.clear()
        out: list[RemotingCommand] = []
        view = memoryview(data)
        n = len(data)
        pos = 0
        need = 4
        while n - pos >= 4:
            (length,) = _INT.unpack_from(data, pos)
            if length < 4 or length > self.max_frame_size:
                raise CodecError(f"bad frame length {length}")
            if n - pos - 4 < length:
                need = 4 + length
                break
            start = pos + 4
            out.append(decode(view[start : start + length]))
            pos = start + length
        if pos < n:
            buf += view[pos:]
            self._need = need
        return out
