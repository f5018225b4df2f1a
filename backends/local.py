"""LocalBackend: the proxy's Backend over an in-process BrokerController (no network hop).

Every call goes through the broker's typed API, the same code the remoting processors use.

Transaction ids: the ``transaction_id`` a send returns (and a check-back hands to the listener) is
self-contained, ``"<remoting transactionId> <commitLogOffset> <tranStateTableOffset> <brokerName>"``, so that
END_TRANSACTION can name the half message on any proxy process; see :func:`encode_transaction_id`.
"""

from __future__ import annotations

import inspect
from typing import TYPE_CHECKING, Any

from backends.api import (
    Backend,
    BackendError,
    BrokerData,
    ConsumerClient,
    ConsumerCommander,
    PopRequest,
    PopResult,
    PullResult,
    PullStatus,
    QueueData,
    SendResult,
    SendStatus,
    TopicRouteData,
    TransactionCheckListener,
)
from backends.broker.client_manager import ClientChannelInfo, SubscriptionData
from backends.broker.controller import put_status_code
from backends.broker.pull_filter import build_pull_filter
from backends.model import (
    Message,
    MessageConst,
    MessageExt,
    PutMessageResult,
    SubscriptionGroupConfig,
    SysFlag,
    TopicConfig,
)
from backends.remoting import json_body
from backends.remoting.codes import RequestCode, ResponseCode
from backends.remoting.command import RemotingCommand
from backends.store.record import decode_record

if TYPE_CHECKING:
    from backends.broker.controller import BrokerController

_SOFT_STATUS = {
    ResponseCode.SUCCESS: SendStatus.SEND_OK,
    ResponseCode.FLUSH_DISK_TIMEOUT: SendStatus.FLUSH_DISK_TIMEOUT,
    ResponseCode.FLUSH_SLAVE_TIMEOUT: SendStatus.FLUSH_SLAVE_TIMEOUT,
    ResponseCode.SLAVE_NOT_AVAILABLE: SendStatus.SLAVE_NOT_AVAILABLE,
}

PULL_STATUS = {
    ResponseCode.SUCCESS: PullStatus.FOUND,
    ResponseCode.PULL_NOT_FOUND: PullStatus.NO_NEW_MSG,
    ResponseCode.PULL_RETRY_IMMEDIATELY: PullStatus.NO_MATCHED_MSG,
    ResponseCode.PULL_OFFSET_MOVED: PullStatus.OFFSET_ILLEGAL,
}


def encode_transaction_id(raw_id: str, commitlog_offset: int, queue_offset: int, broker_name: str) -> str:
    return f"{raw_id} {commitlog_offset} {queue_offset} {broker_name}"


def decode_transaction_id(transaction_id: str) -> tuple[str, int, int, str] | None:
    """(raw id, commitLogOffset, tranStateTableOffset, brokerName), or None for an id not made by us."""
    parts = transaction_id.split(" ")
    if len(parts) != 4:
        return None
    try:
        return parts[0], int(parts[1]), int(parts[2]), parts[3]
    except ValueError:
        return None


def is_transaction_half(m: Message) -> bool:
    return (m.properties.get(MessageConst.TRANSACTION_PREPARED) == "true"
            or (m.sys_flag & SysFlag.TRANSACTION_MASK) == SysFlag.TRANSACTION_PREPARED_TYPE)


def send_results(messages: list[Message], result: PutMessageResult, broker_name: str,
                 recall_handles: list[str] | None = None) -> list[SendResult]:
    """SendResults for a store result; raises BackendError for a hard failure."""
    code, remark = put_status_code(result)
    status = _SOFT_STATUS.get(code)
    if status is None or not result.results:
        raise BackendError(code if code != ResponseCode.SUCCESS else ResponseCode.SYSTEM_ERROR,
                           remark or "put message failed")
    out = []
    for i, (m, r) in enumerate(zip(messages, result.results, strict=False)):
        uniq = m.uniq_key or r.msg_id
        tx = encode_transaction_id(uniq, r.commitlog_offset, r.queue_offset, broker_name) \
            if is_transaction_half(m) else ""
        out.append(SendResult(status, uniq, r.msg_id, m.queue_id, r.queue_offset, broker_name, tx,
                              (recall_handles[i] if recall_handles and i < len(recall_handles) else "")))
    return out


# a consumer's verify answer (apache.rocketmq.v2.Code: OK, MESSAGE_CORRUPTED, FAILED_TO_CONSUME_MESSAGE) ->
# ConsumeMessageDirectlyResult.consumeResult, as RocketMQ's proxy maps it (any other code: none)
_CM_RESULTS = {20000: "CR_SUCCESS", 40016: "CR_RETURN_NULL", 60000: "CR_LATER"}


async def _maybe_await(v: Any) -> Any:
    if inspect.isawaitable(v):
        return await v
    return v


class LocalBackend(Backend):
    def __init__(self, broker: BrokerController, owns_broker: bool = False) -> None:
        self.broker = broker
        self.owns_broker = owns_broker
        self._listener: TransactionCheckListener | None = None
        self._commander: ConsumerCommander | None = None

    async def start(self) -> None:
        if self.owns_broker:
            await self.broker.start()

    async def shutdown(self) -> None:
        if self.owns_broker:
            await self.broker.shutdown()

    async def healthy(self) -> bool:
        return not self.broker._shutting_down

    def _check_broker(self, broker_name: str) -> None:
        if broker_name and broker_name != self.broker.broker_name:
            raise BackendError(ResponseCode.INVALID_PARAMETER,
                               f"cannot find broker {broker_name} (Local mode serves {self.broker.broker_name})")

    # -- metadata --
    async def get_route(self, topic: str) -> TopicRouteData:
        tc = self.broker.topic_config_manager.select_topic_config(topic)
        if tc is None:
            raise BackendError(ResponseCode.TOPIC_NOT_EXIST, f"No topic route info in name server for the topic: "
                               f"{topic}")
        c = self.broker.config
        return TopicRouteData(
            [QueueData(c.broker_name, tc.read_queue_nums, tc.write_queue_nums, tc.perm, tc.topic_sys_flag)],
            [BrokerData(c.broker_cluster_name, c.broker_name, {c.broker_id: self.broker.broker_addr})],
        )

    async def get_topic_config(self, topic: str) -> TopicConfig | None:
        return self.broker.topic_config_manager.select_topic_config(topic)

    async def get_subscription_group(self, group: str) -> SubscriptionGroupConfig | None:
        return self.broker.subscription_group_manager.get(group)

    # -- produce --
    async def send_message(self, broker_name: str, messages: list[Message], timeout: float) -> list[SendResult]:
        self._check_broker(broker_name)
        # No wait_for here: cancelling a store append half way helps nobody; the store bounds its own
        # waits (syncFlushTimeout -> FLUSH_DISK_TIMEOUT).
        result = await self.broker.send_messages(messages)
        handles: list[str] | None = None
        for i, m in enumerate(messages):
            # the timer service (delayed) and the transaction service (half message) moved this message
            # to their topic in place: answer with its own queue and, when delayed, its recall handle
            real_qid = m.properties.get(MessageConst.REAL_QUEUE_ID)
            if real_qid is None or not m.properties.get(MessageConst.REAL_TOPIC):
                continue
            m.queue_id = int(real_qid)
            if handles is None:
                handles = [""] * len(messages)
            handles[i] = self.broker.recall_handle_for(m)
        return send_results(messages, result, self.broker.broker_name, handles)

    async def end_transaction(self, broker_name: str, producer_group: str, topic: str, msg_id: str,
                              transaction_id: str, commit: bool, from_check: bool) -> None:
        self._check_broker(broker_name)
        svc = self.broker.transaction_service
        if svc is None:
            raise BackendError(ResponseCode.SYSTEM_ERROR, "transactions are not available on this broker")
        decoded = decode_transaction_id(transaction_id)
        raw, cl_off, q_off, _ = decoded if decoded else (transaction_id, -1, -1, "")
        await _maybe_await(svc.end_transaction(
            producer_group=producer_group, topic=topic, msg_id=msg_id, transaction_id=raw,
            commitlog_offset=cl_off, tran_state_table_offset=q_off, commit=commit, from_check=from_check))

    async def recall_message(self, broker_name: str, topic: str, recall_handle: str) -> str:
        self._check_broker(broker_name)
        svc = self.broker.timer_service
        if svc is None:
            raise BackendError(ResponseCode.SYSTEM_ERROR, "recall is not available on this broker")
        return str(await _maybe_await(svc.recall(topic, recall_handle)))

    # -- POP --
    def _pop(self) -> Any:
        svc = self.broker.pop_service
        if svc is None:
            raise BackendError(ResponseCode.SYSTEM_ERROR, "POP is not available on this broker")
        return svc

    async def pop_message(self, broker_name: str, request: PopRequest, timeout: float) -> PopResult:
        self._check_broker(broker_name)
        res: PopResult = await self._pop().pop(request, timeout)
        return res

    async def ack_message(self, broker_name: str, group: str, topic: str, extra_info: str) -> None:
        self._check_broker(broker_name)
        await self._pop().ack(group, topic, extra_info)

    async def ack_messages(self, broker_name: str, group: str, topic: str,
                           extra_infos: list[str]) -> list[BackendError | None]:
        """One in-memory pass and one ack record per queue for the whole batch."""
        self._check_broker(broker_name)
        results: list[BackendError | None] = await self._pop().batch_ack(group, topic, extra_infos)
        return results

    async def change_invisible_time(self, broker_name: str, group: str, topic: str, extra_info: str,
                                    invisible_time_ms: int) -> str:
        self._check_broker(broker_name)
        return str(await self._pop().change_invisible_time(group, topic, extra_info, invisible_time_ms))

    async def forward_to_dead_letter_queue(self, broker_name: str, group: str, topic: str, extra_info: str,
                                           max_reconsume_times: int) -> None:
        self._check_broker(broker_name)
        await self._pop().forward_to_dlq(group, topic, extra_info, max_reconsume_times)

    # -- pull and offsets --
    async def pull_message(self, broker_name: str, group: str, topic: str, queue_id: int, offset: int,
                           max_nums: int, expression_type: str, expression: str, poll_time_ms: int,
                           timeout: float) -> PullResult:
        self._check_broker(broker_name)
        try:
            flt = build_pull_filter(expression_type, expression)
        except ValueError as e:
            raise BackendError(ResponseCode.SUBSCRIPTION_PARSE_FAILED, str(e)) from None
        out = await self.broker.pull_message(group, topic, queue_id, offset, max_nums, flt, poll_time_ms)
        msgs: list[MessageExt] = [decode_record(r, check_crc=False) for r in out.records] \
            if out.code == ResponseCode.SUCCESS else []
        return PullResult(PULL_STATUS.get(out.code, PullStatus.NO_NEW_MSG), out.next_begin_offset,
                          out.min_offset, out.max_offset, msgs)

    async def query_consumer_offset(self, broker_name: str, group: str, topic: str, queue_id: int) -> int:
        self._check_broker(broker_name)
        off = self.broker.query_consumer_offset(group, topic, queue_id)
        if off < 0:
            raise BackendError(ResponseCode.QUERY_NOT_FOUND, "Not found, maybe this group consumer boot first")
        return off

    async def update_consumer_offset(self, broker_name: str, group: str, topic: str, queue_id: int,
                                     offset: int) -> None:
        self._check_broker(broker_name)
        self.broker.update_consumer_offset(group, topic, queue_id, offset)

    async def get_max_offset(self, broker_name: str, topic: str, queue_id: int) -> int:
        self._check_broker(broker_name)
        return self.broker.get_max_offset(topic, queue_id)

    async def get_min_offset(self, broker_name: str, topic: str, queue_id: int) -> int:
        self._check_broker(broker_name)
        return self.broker.get_min_offset(topic, queue_id)

    async def search_offset(self, broker_name: str, topic: str, queue_id: int, timestamp_ms: int) -> int:
        self._check_broker(broker_name)
        return self.broker.search_offset(topic, queue_id, timestamp_ms)

    # -- transaction check-back --
    def set_transaction_check_listener(self, listener: TransactionCheckListener) -> None:
        first = self._listener is None
        self._listener = listener
        if first:
            self.broker.add_local_transaction_checker(self._check)

    async def _check(self, producer_group: str, msg: MessageExt, transaction_id: str) -> None:
        if self._listener is None:
            return
        tx = transaction_id if decode_transaction_id(transaction_id) else encode_transaction_id(
            transaction_id, msg.commitlog_offset, msg.queue_offset, self.broker.broker_name)
        await self._listener(producer_group, msg, tx)

    async def register_producer(self, client_id: str, producer_group: str) -> None:
        # In-process: check-backs reach the proxy through the local checker registered above.
        return None

    async def register_consumer(self, client: ConsumerClient) -> None:
        # an in-process channel (no connection): the broker's scan expires it without heartbeats
        info = ClientChannelInfo(client.client_id, client.client_addr, client.language, client.version, None)
        subs = [SubscriptionData.of(*s) for s in client.subscriptions]
        self.broker.consumer_manager.register_consumer(client.group, info, client.consume_type, "CLUSTERING",
                                                       "CONSUME_FROM_LAST_OFFSET", subs)

    async def unregister_consumer(self, group: str, client_id: str) -> None:
        self.broker.consumer_manager.unregister_consumer(group, None, client_id)

    def set_consumer_commander(self, commander: ConsumerCommander) -> None:
        first = self._commander is None
        self._commander = commander
        if first:
            self.broker.add_local_consumer_relay(self._call_consumer)

    async def _call_consumer(self, group: str, client_id: str, request: RemotingCommand) -> RemotingCommand | None:
        """The broker's call_consumer for a gRPC consumer of this proxy (RocketMQ's LocalProxyRelayService)."""
        commander = self._commander
        if commander is None:
            return None
        fields = request.ext_fields
        if request.code == RequestCode.GET_CONSUMER_RUNNING_INFO:
            stack = ""
            if fields.get("jstackEnable") == "true":
                got = await commander.thread_stack_trace(client_id)
                if got is None:
                    return None
                stack = got
            g = self.broker.consumer_manager.get(group)
            info = {
                "properties": {"PROP_CONSUME_TYPE": g.consume_type if g else ""},
                "subscriptionSet": [sd.to_json() for sd in g.subscription_table.values()] if g else [],
                "mqTable": {}, "statusTable": {}, "jstack": stack,
            }
            return request.response(body=json_body.dumps(info))
        if request.code == RequestCode.CONSUME_MESSAGE_DIRECTLY:
            code = await commander.verify_message(client_id, decode_record(request.body, check_crc=False))
            if code is None:
                return None
            result = {"order": False, "autoCommit": True, "consumeResult": _CM_RESULTS.get(code),
                      "remark": "from gRPC client", "spentTimeMills": 0}
            return request.response(body=json_body.dumps(result))
        return request.response(ResponseCode.REQUEST_CODE_NOT_SUPPORTED, f"request code {request.code} not supported")
