"""RemotingCommand: one request or response of the RocketMQ remoting protocol (no I/O here)."""

from __future__ import annotations

from dataclasses import dataclass, field

from backends.remoting.codes import ResponseCode

# LanguageCode.PYTHON in RocketMQ; requests from us carry it.
LANGUAGE_PYTHON = "PYTHON"
# MQVersion of 5.3.x (V5_3_1 ordinal); only informational.
VERSION = 475

FLAG_RESPONSE = 0x1
FLAG_ONEWAY = 0x2

SERIALIZE_JSON = 0
SERIALIZE_ROCKETMQ = 1


@dataclass(slots=True)
class RemotingCommand:
    code: int
    ext_fields: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    opaque: int = 0
    flag: int = 0
    remark: str | None = None
    language: str = LANGUAGE_PYTHON
    version: int = VERSION
    serialize_type: int = SERIALIZE_JSON

    @property
    def is_response(self) -> bool:
        return bool(self.flag & FLAG_RESPONSE)

    @property
    def is_oneway(self) -> bool:
        return bool(self.flag & FLAG_ONEWAY)

    @classmethod
    def request(cls, code: int, ext_fields: dict[str, str] | None = None, body: bytes = b"") -> RemotingCommand:
        return cls(code=code, ext_fields=ext_fields or {}, body=body)

    def response(
        self,
        code: int = ResponseCode.SUCCESS,
        remark: str | None = None,
        ext_fields: dict[str, str] | None = None,
        body: bytes = b"",
    ) -> RemotingCommand:
        """A response to this request: same opaque and serialization, response flag set."""
        return RemotingCommand(
            code=code,
            ext_fields=ext_fields or {},
            body=body,
            opaque=self.opaque,
            flag=FLAG_RESPONSE,
            remark=remark,
            serialize_type=self.serialize_type,
        )
