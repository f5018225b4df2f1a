"""SEND_MESSAGE 10, SEND_MESSAGE_V2 310, SEND_BATCH_MESSAGE 320, CONSUMER_SEND_MSG_BACK 36
(RocketMQ's SendMessageProcessor)."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from backends.broker.controller import put_status_code
from backends.broker.processor.common import guarded, parse_host, remote_host
from backends.model import Message, MessageConst, string_to_properties
from backends.remoting.codes import RequestCode, ResponseCode
from backends.remoting.command import RemotingCommand
from backends.remoting.header import Header
from backends.store.record import RecordError, decode_message_batch

if TYPE_CHECKING:
    from backends.broker.controller import BrokerController
    from backends.remoting.server import RemotingServer

def register(server: RemotingServer, broker: BrokerController) -> None:
    @guarded
    async def send(request: RemotingCommand, conn: Any) -> RemotingCommand | None:
        h = Header(request)  # SEND_MESSAGE_V2 uses the short names a..n, SEND_MESSAGE the long ones
        topic = h.s("b", None, "topic")
        queue_id = h.i("e", None, "queueId")
        sys_flag = h.i("f", 0, "sysFlag")
        born_ts = h.i("g", int(time.time() * 1000), "bornTimestamp")
        flag = h.i("h", 0, "flag")
        props = string_to_properties(h.s("i", "", "properties"))
        reconsume = h.i("j", 0, "reconsumeTimes")
        max_reconsume = h.opt("l", "maxReconsumeTimes")
        if max_reconsume:
            props.setdefault(MessageConst.MAX_RECONSUME_TIMES, max_reconsume)
        default_qn = h.i("d", 0, "defaultTopicQueueNums")
        is_batch = request.code == RequestCode.SEND_BATCH_MESSAGE or h.b("m", False, "batch")
        born_host = parse_host(remote_host(conn))
        if is_batch:
            try:
                inner = decode_message_batch(request.body, topic)
            except RecordError as e:
                return request.response(ResponseCode.MESSAGE_ILLEGAL, f"bad batch body: {e}")
            msgs = []
            for m in inner:
                m.queue_id = queue_id
                m.sys_flag = sys_flag
                m.born_timestamp = born_ts
                m.born_host = born_host
                m.reconsume_times = reconsume
                for k, v in props.items():
                    m.properties.setdefault(k, v)
                msgs.append(m)
        else:
            msgs = [Message(topic=topic, body=request.body, properties=props, flag=flag, queue_id=queue_id,
                            sys_flag=sys_flag, born_timestamp=born_ts, born_host=born_host,
                            reconsume_times=reconsume)]
        result = await broker.send_messages(msgs, default_qn)
        queue_id = msgs[0].queue_id if "REAL_QID" not in msgs[0].properties else int(
            msgs[0].properties["REAL_QID"])
        code, remark = put_status_code(result)
        if not result.results:
            return request.response(code if code != ResponseCode.SUCCESS else ResponseCode.SYSTEM_ERROR,
                                    remark or "put message failed")
        first = result.results[0]
        ext = {
            "msgId": ",".join(r.msg_id for r in result.results),
            "queueId": str(queue_id),
            "queueOffset": str(first.queue_offset),
            "MSG_REGION": "DefaultRegion",
            "TRACE_ON": "true",
        }
        uniq = msgs[0].properties.get(MessageConst.UNIQ_CLIENT_MESSAGE_ID_KEYIDX)
        if uniq:
            ext["transactionId"] = uniq
        recall = broker.recall_handle_for(msgs[0])
        if recall:
            ext["recallHandle"] = recall
        if is_batch:
            ext["batchUniqId"] = ",".join(
                m.properties.get(MessageConst.UNIQ_CLIENT_MESSAGE_ID_KEYIDX, "") for m in msgs)
        return request.response(code, remark or None, ext)

    @guarded
    async def send_back(request: RemotingCommand, conn: Any) -> RemotingCommand | None:
        h = Header(request)
        group = h.s("group")
        extra_info = h.opt("extraInfo")
        if extra_info:
            # Extension for a proxy that holds only the POP extra info (ClusterBackend): the POP service
            # moves the popped message to %DLQ%<group> and acks it, as LocalBackend does in-process.
            if broker.pop_service is None:
                return request.response(ResponseCode.SYSTEM_ERROR, "POP is not available on this broker")
            max_t = h.i("maxReconsumeTimes", broker.config.max_reconsume_times)
            await broker.pop_service.forward_to_dlq(group, h.s("originTopic"), extra_info, max_t)
            return request.response()
        offset = h.i("offset")
        delay_level = h.i("delayLevel", 0)
        origin_msg_id = h.s("originMsgId", "")
        origin_topic = h.s("originTopic", "")
        max_times = h.i("maxReconsumeTimes") if h.opt("maxReconsumeTimes") not in (None, "") else None
        result = await broker.consumer_send_msg_back(
            group, offset, delay_level, origin_msg_id, origin_topic, max_times)
        code, remark = put_status_code(result)
        return request.response(code, remark or None)

    @guarded
    async def recall(request: RemotingCommand, conn: Any) -> RemotingCommand | None:
        h = Header(request)
        topic, handle = h.s("topic"), h.s("recallHandle")
        svc = broker.timer_service
        if svc is None:
            return request.response(ResponseCode.REQUEST_CODE_NOT_SUPPORTED, "recall is not available")
        try:
            msg_id = await svc.recall(topic, handle)
        except Exception as e:  # noqa: BLE001 -- RecallError carries its remoting code
            code = getattr(e, "code", None)
            if code is None:
                raise
            return request.response(int(code), str(e))
        return request.response(ext_fields={"msgId": str(msg_id)})

    server.register_processor(RequestCode.RECALL_MESSAGE, recall)
    server.register_processor(RequestCode.SEND_MESSAGE, send)
    server.register_processor(RequestCode.SEND_MESSAGE_V2, send)
    server.register_processor(RequestCode.SEND_BATCH_MESSAGE, send)
    server.register_processor(RequestCode.CONSUMER_SEND_MSG_BACK, send_back)
