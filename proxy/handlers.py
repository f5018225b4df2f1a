"""The MessagingService method handlers, built from the service descriptor as the generated
``add_MessagingServiceServicer_to_server`` builds them, with one difference: request bytes that are no
protobuf message of the method's type are answered INTERNAL "invalid protobuf byte sequence" (as
grpc-java, and so RocketMQ's own proxy, answers them) with one warning line, instead of grpc.aio's
UNKNOWN status and an ERROR traceback in the log for every such call.

Around each call, before the servicer: a namespaced call's Resources are rewritten to stored names
(:mod:`proxy.namespace`) and the ACL checks it (:mod:`proxy.acl`, ``enableACL``); after: the answer gets
the client's short names back and, with metrics on, the call's latency is recorded.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any, NamedTuple

import grpc
from google.protobuf.message import DecodeError

from protos.apache.rocketmq.v2 import definition_pb2 as pb
from protos.apache.rocketmq.v2 import service_pb2 as spb
from proxy.acl import AclError, PlainAccessValidator, resources_of
from proxy.namespace import namespace_of, unwrap_response, wrap_request

if TYPE_CHECKING:
    from backends.metrics import LatencyHistogram

log = logging.getLogger("proxy")

SERVICE = spb.DESCRIPTOR.services_by_name["MessagingService"]
_CODE_NAMES = {v.number: v.name for v in pb.Code.DESCRIPTOR.values}


class Acl(NamedTuple):
    """The ACL's check and where a call comes from (the client's address, see ProxyServer)."""

    validator: PlainAccessValidator
    peer_of: Callable[[Any], tuple[str, int]]


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


def _admit(name: str, request: Any, context: Any, acl: Acl | None) -> tuple[str, AclError | None]:
    """Before a call is served: its Resources rewritten to stored names when it names a namespace, then
    the ACL's check. Returns (the call's namespace or "", the ACL's refusal or None)."""
    md = context.invocation_metadata() or ()
    ns = namespace_of(md)
    if ns:
        ns = wrap_request(request, ns)
    if acl is None:
        return ns, None
    try:
        host, port = acl.peer_of(context)
        acl.validator.validate(host, dict(md), resources_of(name, request))
    except AclError as e:
        log.warning("%s from %s:%d refused: %s", name, host, port, e.message)
        return ns, e
    return ns, None


def _outgoing(response: Any, ns: str) -> Any:
    """An answer with short names for the client's namespace (a copy: the service may share answers)."""
    if not ns:
        return response
    out = type(response)()
    out.CopyFrom(response)
    unwrap_response(out, ns)
    return out


def _unary(name: str, impl: Any, latency: LatencyHistogram | None, acl: Acl | None,
           response_type: Any) -> Any:
    async def handle(request: Any, context: Any) -> Any:
        if type(request) is Undecodable:
            await _refuse(name, request, context)
        ns, denied = _admit(name, request, context, acl)
        if denied is not None:
            return response_type(status=denied.status())
        return _outgoing(await impl(request, context), ns)

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


def _server_stream(name: str, impl: Any, latency: LatencyHistogram | None, acl: Acl | None,
                   response_type: Any) -> Any:
    async def handle(request: Any, context: Any) -> AsyncIterator[Any]:
        if type(request) is Undecodable:
            await _refuse(name, request, context)
        t0 = time.perf_counter()
        code = "CANCELLED"
        ns, denied = _admit(name, request, context, acl)
        responses = impl(request, context) if denied is None else _one(
            response_type(status=denied.status()))
        try:
            async for response in responses:
                if code == "CANCELLED":  # the first answer carries the call's status
                    code = _code_name(response)
                yield _outgoing(response, ns)
        finally:
            if latency is not None:
                latency.record("grpc", name, code, (time.perf_counter() - t0) * 1000)

    return handle


async def _one(response: Any) -> AsyncIterator[Any]:
    yield response


def _bidi_stream(name: str, impl: Any, acl: Acl | None) -> Any:
    async def handle(requests: AsyncIterator[Any], context: Any) -> AsyncIterator[Any]:
        call_ns = namespace_of(context.invocation_metadata())

        async def checked() -> AsyncIterator[Any]:
            nonlocal call_ns
            first = True
            async for request in requests:
                if type(request) is Undecodable:
                    await _refuse(name, request, context)
                if first:  # the call's credentials: checked once, on its first message
                    first = False
                    call_ns, denied = _admit(name, request, context, acl)
                    if denied is not None:
                        status = (grpc.StatusCode.UNAUTHENTICATED if denied.code == pb.Code.UNAUTHORIZED
                                  else grpc.StatusCode.PERMISSION_DENIED)
                        await context.abort(status, denied.message)
                elif call_ns:
                    wrap_request(request, call_ns)
                yield request

        async for response in impl(checked(), context):
            yield _outgoing(response, call_ns)

    return handle


def method_handlers(servicer: Any, latency: LatencyHistogram | None = None,
                    acl: Acl | None = None) -> dict[str, grpc.RpcMethodHandler]:
    """One handler per MessagingService method, calling the servicer's method of the same name;
    with ``latency``, unary and server-streaming calls are recorded in it (rocketmq_rpc_latency); with
    ``acl``, each call is checked first (a refused call gets UNAUTHORIZED / FORBIDDEN in its status)."""
    out: dict[str, grpc.RpcMethodHandler] = {}
    for m in SERVICE.methods:
        impl = getattr(servicer, m.name)
        deserialize = _deserializer(getattr(spb, m.input_type.name).FromString)
        response_type = getattr(spb, m.output_type.name)
        serialize = response_type.SerializeToString
        if m.client_streaming:
            handler = _bidi_stream(m.name, impl, acl)
            out[m.name] = grpc.stream_stream_rpc_method_handler(handler, deserialize, serialize)
        elif m.server_streaming:
            handler = _server_stream(m.name, impl, latency, acl, response_type)
            out[m.name] = grpc.unary_stream_rpc_method_handler(handler, deserialize, serialize)
        else:
            handler = _unary(m.name, impl, latency, acl, response_type)
            out[m.name] = grpc.unary_unary_rpc_method_handler(handler, deserialize, serialize)
    return out


def add_to_server(servicer: Any, server: grpc.aio.Server, latency: LatencyHistogram | None = None,
                  acl: Acl | None = None) -> None:
    handlers = method_handlers(servicer, latency, acl)
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE.full_name, handlers),))
    server.add_registered_method_handlers(SERVICE.full_name, handlers)
