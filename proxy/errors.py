"""ProxyError (a gRPC Status code + message) and the remoting ResponseCode -> gRPC Code mapping."""

from __future__ import annotations

from backends.remoting.codes import ResponseCode as R
from protos.apache.rocketmq.v2 import definition_pb2 as pb

C = pb.Code


class ProxyError(Exception):
    """An error answered to the client as ``Status{code, message}`` inside a gRPC OK."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


# remoting ResponseCode -> apache.rocketmq.v2.Code (RocketMQ's ResponseCode -> gRPC Code conversion)
_REMOTING_TO_GRPC: dict[int, int] = {
    R.SUCCESS: C.OK,
    R.SYSTEM_ERROR: C.INTERNAL_SERVER_ERROR,
    R.SYSTEM_BUSY: C.TOO_MANY_REQUESTS,
    R.REQUEST_CODE_NOT_SUPPORTED: C.UNSUPPORTED,
    R.TRANSACTION_FAILED: C.INVALID_TRANSACTION_ID,
    R.FLUSH_DISK_TIMEOUT: C.MASTER_PERSISTENCE_TIMEOUT,
    R.SLAVE_NOT_AVAILABLE: C.HA_NOT_AVAILABLE,
    R.FLUSH_SLAVE_TIMEOUT: C.SLAVE_PERSISTENCE_TIMEOUT,
    R.MESSAGE_ILLEGAL: C.BAD_REQUEST,
    R.SERVICE_NOT_AVAILABLE: C.INTERNAL_SERVER_ERROR,
    R.VERSION_NOT_SUPPORTED: C.VERSION_UNSUPPORTED,
    R.NO_PERMISSION: C.FORBIDDEN,
    R.TOPIC_NOT_EXIST: C.TOPIC_NOT_FOUND,
    R.PULL_NOT_FOUND: C.MESSAGE_NOT_FOUND,
    R.PULL_OFFSET_MOVED: C.ILLEGAL_OFFSET,
    R.QUERY_NOT_FOUND: C.NOT_FOUND,
    R.SUBSCRIPTION_PARSE_FAILED: C.ILLEGAL_FILTER_EXPRESSION,
    R.SUBSCRIPTION_NOT_EXIST: C.ILLEGAL_FILTER_EXPRESSION,
    R.SUBSCRIPTION_NOT_LATEST: C.ILLEGAL_FILTER_EXPRESSION,
    R.SUBSCRIPTION_GROUP_NOT_EXIST: C.CONSUMER_GROUP_NOT_FOUND,
    R.INVALID_PARAMETER: C.BAD_REQUEST,
    R.NO_MESSAGE: C.MESSAGE_NOT_FOUND,
    R.POLLING_FULL: C.TOO_MANY_REQUESTS,
    R.POLLING_TIMEOUT: C.MESSAGE_NOT_FOUND,
    R.FLOW_CONTROL: C.TOO_MANY_REQUESTS,
    R.BROKER_NOT_EXIST: C.NOT_FOUND,
    R.ILLEGAL_OPERATION: C.BAD_REQUEST,
    R.RPC_TIME_OUT: C.PROXY_TIMEOUT,
}


def grpc_code(remoting_code: int, message: str = "") -> int:
    if remoting_code == R.MESSAGE_ILLEGAL and ("large" in message.lower() or "exceed" in message.lower()):
        return C.MESSAGE_BODY_TOO_LARGE
    return _REMOTING_TO_GRPC.get(remoting_code, C.INTERNAL_SERVER_ERROR)
