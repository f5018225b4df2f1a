"""Remoting processors for POP (RocketMQ's PopMessageProcessor, AckMessageProcessor,
ChangeInvisibleTimeProcessor and NotificationProcessor): thin translators to PopMessageService.

Codes: POP_MESSAGE 200050, ACK_MESSAGE 200051, BATCH_ACK_MESSAGE 200151, CHANGE_MESSAGE_INVISIBLETIME
200053, NOTIFICATION 200054. A bad or missing header field answers an error response, never raises.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

from backends.api import BackendError, PopRequest, PopStatus
from backends.broker.pop import extra_info as xi
from backends.broker.pop.service import MAX_MSG_NUMS, PopMessageService
from backends.model import MessageConst, MessageExt
from backends.remoting import json_body
from backends.remoting.codes import RequestCode, ResponseCode
from backends.remoting.command import RemotingCommand
from backends.remoting.header import Header, RemotingCommandException
from backends.store.record import encode_record

# ConsumeInitMode of PopMessageRequestHeader
INIT_MODE_MIN = 0
INIT_MODE_MAX = 1
# Longest time a POP_MESSAGE may be held (pollTime is clamped to it).
MAX_POLL_TIME_MS = 60_000


def _header_error(message: str) -> RemotingCommandException:
    """A malformed POP request body/header: INVALID_PARAMETER with a one-line remark."""
    return RemotingCommandException(message, ResponseCode.INVALID_PARAMETER)


def _service(broker: Any) -> PopMessageService:
    svc = getattr(broker, "pop_service", None)
    if svc is None:
        raise BackendError(ResponseCode.SERVICE_NOT_AVAILABLE, "POP service is not available")
    return svc  # type: ignore[no-any-return]


def _header_extra_info(h: Header) -> str:
    """The request's extraInfo with the header's queueId/offset (as RocketMQ acks the header's offset);
    a 7-field extra info (no queue offset) gets the offset appended."""
    extra = h.s("extraInfo")
    queue_id = h.i("queueId")
    offset = h.i("offset")
    parts = extra.split(" ")
    if len(parts) == 7:
        parts.append(str(offset))
    if len(parts) >= 8:
        parts[6] = str(queue_id)
        parts[7] = str(offset)
    return " ".join(parts[:8])


def encode_pop_body(messages: list[MessageExt]) -> bytes:
    """The messages as commitlog records carrying POP_CK and their reconsume times."""
    return b"".join(
        encode_record(m, m.queue_offset, m.commitlog_offset, m.store_timestamp, m.store_host) for m in messages
    )


def pop_response_fields(messages: list[MessageExt], pop_time: int, invisible_time: int, rest_num: int,
                        order: bool) -> dict[str, str]:
    """PopMessageResponseHeader: popTime, invisibleTime, reviveQid, restNum, startOffsetInfo,
    msgOffsetInfo, orderCountInfo (ExtraInfoUtil's formats)."""
    start: dict[tuple[str, int], int] = {}
    offsets: dict[tuple[str, int], list[int]] = {}
    order_counts: list[str] = []
    revive_qid = "0"
    for m in messages:
        parts = m.properties.get(MessageConst.POP_CK, "").split(" ")
        tt = parts[4] if len(parts) >= 8 else xi.topic_type_of(m.topic)
        key = (tt, m.queue_id)
        if key not in start:
            start[key] = int(parts[0]) if len(parts) >= 8 else m.queue_offset
            revive_qid = parts[3] if len(parts) >= 8 else revive_qid
        offsets.setdefault(key, []).append(m.queue_offset)
        if order:
            order_counts.append(f"{tt} qo{m.queue_id}%{m.queue_offset} {m.reconsume_times}")
    fields = {
        "popTime": str(pop_time),
        "invisibleTime": str(invisible_time),
        "reviveQid": revive_qid,
        "restNum": str(rest_num),
    }
    if start:
        fields["startOffsetInfo"] = ";".join(f"{tt} {q} {so}" for (tt, q), so in start.items())
        fields["msgOffsetInfo"] = ";".join(
            f"{tt} {q} {','.join(str(o) for o in offs)}" for (tt, q), offs in offsets.items())
    if order_counts:
        fields["orderCountInfo"] = ";".join(order_counts)
    return fields


def _bitset_offsets(raw: Any, start_offset: int) -> list[int]:
    """Offsets of a BatchAck bit set: fastjson writes java.util.BitSet.toByteArray() as base64."""
    if raw is None:
        return []
    if isinstance(raw, str):
        try:
            data = base64.b64decode(raw, validate=False)
        except (binascii.Error, ValueError):
            raise _header_error("BatchAck bitSet is not base64") from None
    elif isinstance(raw, list):
        try:
            data = bytes(int(x) & 0xFF for x in raw)
        except (TypeError, ValueError):
            raise _header_error("BatchAck bitSet is not a byte array") from None
    else:
        raise _header_error("BatchAck bitSet has an unknown form")
    out = []
    for i, byte in enumerate(data):
        if byte:
            for bit in range(8):
                if byte & (1 << bit):
                    out.append(start_offset + i * 8 + bit)
    return out


def register(server: Any, broker: Any) -> None:
    async def guard(request: RemotingCommand, fn: Any) -> RemotingCommand:
        try:
            result: RemotingCommand = await fn(request)
            return result
        except RemotingCommandException as e:
            return e.response(request)
        except BackendError as e:
            return request.response(e.code, e.message)
        except Exception as e:  # noqa: BLE001 - never crash the connection
            return request.response(ResponseCode.SYSTEM_ERROR, f"{type(e).__name__}: {e}")

    async def _pop(request: RemotingCommand) -> RemotingCommand:
        svc = _service(broker)
        h = Header(request)
        max_nums = h.i("maxMsgNums")
        if max_nums <= 0 or max_nums > MAX_MSG_NUMS:
            raise _header_error(f"the broker only accepts maxMsgNums in [1, {MAX_MSG_NUMS}], got {max_nums}")
        poll = max(0, min(h.i("pollTime", 0), MAX_POLL_TIME_MS))
        order = h.b("order", False)
        init_mode = h.i("initMode", INIT_MODE_MAX)
        req = PopRequest(
            group=h.s("consumerGroup"),
            topic=h.s("topic"),
            queue_id=h.i("queueId", -1),
            max_msg_nums=max_nums,
            invisible_time_ms=h.i("invisibleTime"),
            poll_time_ms=poll,
            expression_type=h.s("expType", "TAG"),
            expression=h.s("exp", "*"),
            order=order,
            attempt_id=h.s("attemptId", ""),
        )
        result = await svc.pop(req, timeout=poll / 1000.0 + 1.0,
                               init_mode="EARLIEST" if init_mode == INIT_MODE_MIN else None)
        fields = pop_response_fields(result.messages, result.pop_time or svc.clock(),
                                     result.invisible_time or req.invisible_time_ms, result.rest_num, order)
        if result.messages:
            return request.response(ResponseCode.SUCCESS, None, fields, encode_pop_body(result.messages))
        if result.status is PopStatus.POLLING_FULL:
            return request.response(ResponseCode.POLLING_FULL, "the consumer's POP polling queue is full", fields)
        if result.status is PopStatus.POLLING_NOT_FOUND:
            return request.response(ResponseCode.POLLING_TIMEOUT, "no new message before the poll time", fields)
        return request.response(ResponseCode.NO_MESSAGE, "no new message", fields)

    async def _ack(request: RemotingCommand) -> RemotingCommand:
        svc = _service(broker)
        h = Header(request)
        await svc.ack(h.s("consumerGroup"), h.s("topic"), _header_extra_info(h))
        return request.response(ResponseCode.SUCCESS)

    async def _batch_ack(request: RemotingCommand) -> RemotingCommand:
        svc = _service(broker)
        if not request.body:
            return request.response(ResponseCode.NO_MESSAGE, "empty batch ack")
        try:
            body = json_body.loads(request.body)
        except ValueError as e:
            raise _header_error(f"BatchAckMessageRequestBody is not JSON: {e}") from None
        if not isinstance(body, dict):
            raise _header_error("BatchAckMessageRequestBody must be an object")
        acks = body.get("acks")
        if not acks:
            return request.response(ResponseCode.NO_MESSAGE, "no ack in the batch")
        broker_name = str(body.get("brokerName") or svc.broker_name)
        failed = 0
        for a in acks:
            if not isinstance(a, dict):
                raise _header_error("a BatchAck must be an object")

            def g(short: str, long: str, a: dict[str, Any] = a) -> Any:
                v = a.get(short)
                return a.get(long) if v is None else v

            try:
                group, topic = str(g("c", "consumerGroup")), str(g("t", "topic"))
                retry = str(g("r", "retry") or "0")
                so, qid = int(g("so", "startOffset")), int(g("q", "queueId"))
                rq = int(g("rq", "reviveQueueId") or 0)
                pt, it = int(g("pt", "popTime")), int(g("it", "invisibleTime"))
            except (TypeError, ValueError):
                raise _header_error("a BatchAck misses c/t/so/q/pt/it") from None
            offsets = _bitset_offsets(g("b", "bitSet"), so)
            extras = [xi.build(so, pt, it, rq, retry, broker_name, qid, off) for off in offsets]
            if extras:
                results = await svc.batch_ack(group, topic, extras)
                failed += sum(1 for r in results if r is not None)
        return request.response(ResponseCode.SUCCESS, f"{failed} acks failed" if failed else None)

    async def _change_invisible(request: RemotingCommand) -> RemotingCommand:
        svc = _service(broker)
        h = Header(request)
        invisible = h.i("invisibleTime")
        new = await svc.change_invisible_time(h.s("consumerGroup"), h.s("topic"),
                                              _header_extra_info(h), invisible)
        info = xi.parse(new)
        return request.response(ResponseCode.SUCCESS, None, {
            "popTime": str(info.pop_time), "invisibleTime": str(info.invisible_time),
            "reviveQid": str(info.revive_qid), "extraInfo": new,
        })

    async def _notification(request: RemotingCommand) -> RemotingCommand:
        svc = _service(broker)
        h = Header(request)
        group, topic = h.s("consumerGroup"), h.s("topic")
        queue_id = h.i("queueId", -1)
        poll = max(0, min(h.i("pollTime", 0), MAX_POLL_TIME_MS))
        if broker.topic_config_manager.select_topic_config(topic) is None:
            raise BackendError(ResponseCode.TOPIC_NOT_EXIST, f"topic[{topic}] not exist, apply first please!")
        has = await svc.wait_for_message(group, topic, queue_id, poll)
        return request.response(ResponseCode.SUCCESS, None, {"hasMsg": "true" if has else "false"})

    def bind(fn: Any) -> Any:
        async def processor(request: RemotingCommand, conn: Any) -> RemotingCommand | None:
            return await guard(request, fn)

        return processor

    server.register_processor(RequestCode.POP_MESSAGE, bind(_pop))
    server.register_processor(RequestCode.ACK_MESSAGE, bind(_ack))
    server.register_processor(RequestCode.BATCH_ACK_MESSAGE, bind(_batch_ack))
    server.register_processor(RequestCode.CHANGE_MESSAGE_INVISIBLETIME, bind(_change_invisible))
    server.register_processor(RequestCode.NOTIFICATION, bind(_notification))
