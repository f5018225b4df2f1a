"""PULL_MESSAGE 11 (RocketMQ's PullMessageProcessor), with long polling through the controller."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from backends.broker.processor.common import guarded, remote_host
from backends.broker.pull_filter import build_pull_filter
from backends.remoting.codes import RequestCode, ResponseCode
from backends.remoting.command import RemotingCommand
from backends.remoting.header import Header

if TYPE_CHECKING:
    from backends.broker.controller import BrokerController
    from backends.remoting.server import RemotingServer

FLAG_COMMIT_OFFSET = 0x1
FLAG_SUSPEND = 0x2
FLAG_SUBSCRIPTION = 0x4
FLAG_CLASS_FILTER = 0x8


def register(server: RemotingServer, broker: BrokerController) -> None:
    @guarded
    async def pull(request: RemotingCommand, conn: Any) -> RemotingCommand | None:
        h = Header(request)
        group = h.s("consumerGroup")
        topic = h.s("topic")
        queue_id = h.i("queueId")
        offset = h.i("queueOffset")
        max_nums = h.i("maxMsgNums", 32)
        sys_flag = h.i("sysFlag", 0)
        commit_offset = h.i("commitOffset", -1)
        suspend_ms = h.i("suspendTimeoutMillis", 0)
        if sys_flag & FLAG_SUBSCRIPTION:
            expression = h.s("subscription", "*")
            expression_type = h.s("expressionType", "TAG")
        else:
            expression, expression_type = "*", "TAG"
            g = broker.consumer_manager.get(group)
            sub = g.subscription_table.get(topic) if g else None
            if sub is not None:
                expression, expression_type = sub.sub_string, sub.expression_type
        try:
            message_filter = build_pull_filter(expression_type, expression)
        except ValueError as e:
            return request.response(ResponseCode.SUBSCRIPTION_PARSE_FAILED, f"parse the consumer's subscription "
                                    f"[{expression}] failed: {e}")
        if expression_type.upper() == "SQL92" and not broker.config.enable_property_filter:
            return request.response(ResponseCode.SYSTEM_ERROR,
                                    "The broker does not support consumer to filter message by SQL92")
        out = await broker.pull_message(
            group, topic, queue_id, offset, max_nums, message_filter,
            suspend_ms if sys_flag & FLAG_SUSPEND else 0,
            commit_offset if sys_flag & FLAG_COMMIT_OFFSET else None,
            remote_host(conn),
        )
        ext = {
            "nextBeginOffset": str(out.next_begin_offset),
            "minOffset": str(out.min_offset),
            "maxOffset": str(out.max_offset),
            "suggestWhichBrokerId": str(out.suggest_which_broker_id),
        }
        body = b"".join(out.records) if out.code == ResponseCode.SUCCESS else b""
        remark = out.remark or None
        if out.code == ResponseCode.PULL_OFFSET_MOVED and remark is None:
            remark = f"the request offset: {offset} over flow badly, broker max offset: {out.max_offset}"
        return request.response(out.code, remark, ext, body)

    server.register_processor(RequestCode.PULL_MESSAGE, pull)
    server.register_processor(RequestCode.LITE_PULL_MESSAGE, pull)
