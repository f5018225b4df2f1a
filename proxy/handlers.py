"""The MessagingService method handlers, built from the service descriptor as the generated
``add_MessagingServiceServicer_to_server`` builds them, with one difference: request bytes that are no
protobuf message of the method's type are answered INTERNAL "invalid protobuf byte sequence" (as
grpc-java, and so RocketMQ's own proxy, answers them) with one warning line, instead of grpc.aio's
UNKNOWN status and an ERROR traceback in the log for every such call.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any

import grpc
from google.protobuf.message import DecodeError

from protos.apache.rocketmq.v2 import definition_pb2 as pb
from protos.apache.rocketmq.v2 import service_pb2 as spb

if TYPE_CHECKING:
    from backends.metrics import LatencyHistogram

log = logging.getLogger("proxy")

SERVICE = spb.DESCRIPTOR.services_by_name["MessagingService"]
_CODE_NAMES = {v.number: v.name for v in pb.Code.DESCRIPTOR.values}


class Undecodable:
    """What the request deserializer returns for bytes it cannot parse."""

    __slots__ = ("error",)

    def __init__(self, error: str) -> None:
        self.error = error


def _deserializer(parse: Callable[[bytes], Any]) -> Callable[[bytes], Any]:
    def deserialize(raw: bytes) -> Any:
        try:
            return parse(raw)
        except DecodeError as e:
            return Undecodable(str(e))

    return deserialize


async def _refuse(method: str, bad: Undecodable, context: Any) -> None:
    """Answer the call INTERNAL and end the handler (context.abort raises the error gRPC expects)."""
    log.warning("%s from %s: undecodable request (%s)", method, context.peer(), bad.error)
    await context.abort(grpc.StatusCode.INTERNAL, f"invalid protobuf byte sequence: {bad.error}")


def _code_name(response: Any) -> str:
    try:
        return _CODE_NAMES.get(response.status.code) or str(response.status.code)
    except AttributeError:
        return "-"


def _unary(name: str, impl: Any, latency: LatencyHistogram | None) -> Any:
    async def handle(request: Any, context: Any) -> Any:
        if type(request) is Undecodable:
            await _refuse(name, request, context)
        return await impl(request, context)

    if latency is None:
        return handle

    async def timed(request: Any, context: Any) -> Any:
        t0 = time.perf_counter()
        code = "CANCELLED"  # unless an answer comes back (the call was cancelled or aborted)
        try:
            response = await handle(request, context)
            code = _code_name(response)
            return response
        finally:
            latency.record("grpc", name, code, (time.perf_counter() - t0) * 1000)

    return timed


def _server_stream(name: str, impl: Any, latency: LatencyHistogram | None) -> Any:
    async def handle(request: Any, context: Any) -> AsyncIterator[Any]:
        if type(request) is Undecodable:
            await _refuse(name, request, context)
        t0 = time.perf_counter()
        code = "CANCELLED"
        try:
            async for response in impl(request, context):
                if code == "CANCELLED":  # the first answer carries the call's status
                    code = _code_name(response)
                yield response
        finally:
            if latency is not None:
                latency.record("grpc", name, code, (time.perf_counter() - t0) * 1000)

    return handle


def _bidi_stream(name: str, impl: Any) -> Any:
    async def handle(requests: AsyncIterator[Any], context: Any) -> AsyncIterator[Any]:
        async def checked() -> AsyncIterator[Any]:
            async for request in requests:
                if type(request) is Undecodable:
                    await _refuse(name, request, context)
                yield request

        async for response in impl(checked(), context):
            yield response

    return handle


def method_handlers(servicer: Any, latency: LatencyHistogram | None = None) -> dict[str, grpc.RpcMethodHandler]:
    """One handler per MessagingService method, calling the servicer's method of the same name;
    with ``latency``, unary and server-streaming calls are recorded in it (rocketmq_rpc_latency)."""
    out: dict[str, grpc.RpcMethodHandler] = {}
    for m in SERVICE.methods:
        impl = getattr(servicer, m.name)
        deserialize = _deserializer(getattr(spb, m.input_type.name).FromString)
        serialize = getattr(spb, m.output_type.name).SerializeToString
        if m.client_streaming:
            out[m.name] = grpc.stream_stream_rpc_method_handler(_bidi_stream(m.name, impl), deserialize, serialize)
        elif m.server_streaming:
            out[m.name] = grpc.unary_stream_rpc_method_handler(_server_stream(m.name, impl, latency), deserialize, serialize)
        else:
            out[m.name] = grpc.unary_unary_rpc_method_handler(_unary(m.name, impl, latency), deserialize, serialize)
    return out


def add_to_server(servicer: Any, server: grpc.aio.Server, latency: LatencyHistogram | None = None) -> None:
    handlers = method_handlers(servicer, latency)
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE.full_name, handlers),))
    server.add_registered_method_handlers(SERVICE.full_name, handlers)
