"""ClusterBackend: the proxy's Backend over remote brokers found through the NameServers.

Routes come from GET_ROUTEINFO_BY_TOPIC (105), cached and refreshed every 20 s (and at once after an
error); requests go to each broker's master over remoting. Cluster-wide lookups (subscription groups,
the brokers to heartbeat) use the route of the topic named after the cluster (``rocketMQClusterName``),
which every broker registers (clusterTopicEnable).
"""

from __future__ import annotations

import asyncio
import base64
import logging
import os
import socket
import time
from typing import Any

from backends.api import (
    Backend,
    BackendError,
    ConsumerClient,
    ConsumerCommander,
    PopRequest,
    PopResult,
    PopStatus,
    PullResult,
    PullStatus,
    SendResult,
    SendStatus,
    TopicRouteData,
    TransactionCheckListener,
)
from backends.local import decode_transaction_id, encode_transaction_id, is_transaction_half
from backends.model import (
    Message,
    MessageConst,
    MessageExt,
    SubscriptionGroupConfig,
    TopicConfig,
    decode_offset_msg_id,
    properties_to_string,
)
from backends.remoting import json_body
from backends.remoting.client import RemotingClient, RemotingError
from backends.remoting.codes import RequestCode, ResponseCode
from backends.remoting.command import RemotingCommand
from backends.store.record import RecordError, decode_record, decode_records, encode_message_batch
from backends.tasks import cancel_and_wait

log = logging.getLogger("rocketmq.proxy.cluster")

ROUTE_REFRESH_SECONDS = 20.0

_SEND_STATUS = {
    ResponseCode.SUCCESS: SendStatus.SEND_OK,
    ResponseCode.FLUSH_DISK_TIMEOUT: SendStatus.FLUSH_DISK_TIMEOUT,
    ResponseCode.FLUSH_SLAVE_TIMEOUT: SendStatus.FLUSH_SLAVE_TIMEOUT,
    ResponseCode.SLAVE_NOT_AVAILABLE: SendStatus.SLAVE_NOT_AVAILABLE,
}

_PULL_STATUS = {
    ResponseCode.SUCCESS: PullStatus.FOUND,
    ResponseCode.PULL_NOT_FOUND: PullStatus.NO_NEW_MSG,
    ResponseCode.PULL_RETRY_IMMEDIATELY: PullStatus.NO_MATCHED_MSG,
    ResponseCode.PULL_OFFSET_MOVED: PullStatus.OFFSET_ILLEGAL,
}


def remote_addr_of(conn: Any) -> str:
    return str(getattr(conn, "remote_addr", "") or "")


_MAX_BITSET_SPAN = 1 << 16  # offsets past a checkpoint that one BatchAck bit set may name


def _extra_fields(extra_info: str) -> list[str]:
    """The POP extra info "ckQueueOffset popTime invisibleTime reviveQid topicType brokerName queueId
    queueOffset" (8 fields; a 9th, the commitlog offset, may follow)."""
    parts = extra_info.split(" ")
    if len(parts) < 8:
        raise BackendError(ResponseCode.INVALID_PARAMETER, f"bad extra info: {extra_info[:120]!r}")
    return parts


class ClusterBackend(Backend):
    def __init__(self, namesrv_addrs: list[str], cluster_name: str = "DefaultCluster",
                 client: RemotingClient | None = None) -> None:
        self.namesrv_addrs = [a.strip() for a in namesrv_addrs if a.strip()]
        if not self.namesrv_addrs:
            raise ValueError("ClusterBackend needs at least one NameServer address")
        self.cluster_name = cluster_name
        self.client = client or RemotingClient()
        self._routes: dict[str, tuple[TopicRouteData, float]] = {}
        self._broker_addrs: dict[str, str] = {}  # broker name -> master address
        self._ns_index = 0
        self._listener: TransactionCheckListener | None = None
        self._producers: dict[str, str] = {}  # producer group -> client id
        self.client_id = f"{socket.gethostname()}@{os.getpid()}@proxy"
        self._task: asyncio.Task[None] | None = None
        self._health: tuple[bool, float] = (False, -10.0)
        self.client.register_processor(RequestCode.CHECK_TRANSACTION_STATE, self._on_check_transaction)
        self.client.register_processor(RequestCode.NOTIFY_CONSUMER_IDS_CHANGED, self._ignore)

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        self._task = asyncio.create_task(self._refresh_loop())

    async def shutdown(self) -> None:
        await cancel_and_wait(self._task)
        await self._unregister_producers()
        await self.client.close()

    async def healthy(self) -> bool:
        """A master of the cluster is known to the NameServers (answer cached for 2 s)."""
        now = time.monotonic()
        if now - self._health[1] < 2.0:
            return self._health[0]
        try:
            route = await self.get_route(self.cluster_name, refresh=True)
            ok = any(b.master_addr for b in route.broker_datas)
        except (BackendError, RemotingError):
            ok = False
        self._health = (ok, time.monotonic())
        return ok

    async def _refresh_loop(self) -> None:
        while True:
            await asyncio.sleep(ROUTE_REFRESH_SECONDS)
            for topic in list(self._routes):
                try:
                    await self.get_route(topic, refresh=True)
                except BackendError as e:
                    if e.code == ResponseCode.TOPIC_NOT_EXIST:
                        self._routes.pop(topic, None)
                except Exception as e:  # noqa: BLE001
                    log.info("route refresh of %s failed: %s", topic, e)
            if self._producers:
                try:
                    await self._heartbeat_all()
                except Exception as e:  # noqa: BLE001
                    log.info("producer heartbeat failed: %s", e)

    # ------------------------------------------------------------------ remoting helpers
    async def _namesrv_invoke(self, request: RemotingCommand, timeout: float = 3.0) -> RemotingCommand:
        last: Exception | None = None
        n = len(self.namesrv_addrs)
        for i in range(n):
            addr = self.namesrv_addrs[(self._ns_index + i) % n]
            try:
                resp = await self.client.invoke(addr, RemotingCommand(code=request.code,
                                                                      ext_fields=dict(request.ext_fields),
                                                                      body=request.body), timeout)
                self._ns_index = (self._ns_index + i) % n
                return resp
            except RemotingError as e:
                last = e
        raise BackendError(ResponseCode.SYSTEM_ERROR, f"no NameServer reachable: {last}")

    async def _broker_addr(self, broker_name: str) -> str:
        addr = self._broker_addrs.get(broker_name)
        if addr is None:
            # learn the broker from the cluster route
            try:
                await self.get_route(self.cluster_name, refresh=True)
            except BackendError:
                pass
            addr = self._broker_addrs.get(broker_name)
        if addr is None:  # RocketMQ's proxy: INVALID_BROKER_NAME, answered as BAD_REQUEST
            raise BackendError(ResponseCode.INVALID_PARAMETER,
                               f"cannot find broker {broker_name} (no master of that name in cluster "
                               f"{self.cluster_name})")
        return addr

    async def _invoke(self, broker_name: str, request: RemotingCommand, timeout: float) -> RemotingCommand:
        addr = await self._broker_addr(broker_name)
        try:
            return await self.client.invoke(addr, request, timeout)
        except RemotingError as e:
            self._routes.clear()  # refresh routes on the next lookup
            raise BackendError(ResponseCode.SYSTEM_ERROR, f"broker {broker_name} ({addr}): {e}") from None

    @staticmethod
    def _check(resp: RemotingCommand, *ok: int) -> RemotingCommand:
        if resp.code == ResponseCode.SUCCESS or resp.code in ok:
            return resp
        raise BackendError(resp.code, resp.remark or f"request failed with code {resp.code}")

    async def _any_broker(self, topic: str | None = None) -> str:
        route = await self.get_route(topic or self.cluster_name)
        for b in route.broker_datas:
            if b.master_addr:
                return b.broker_name
        raise BackendError(ResponseCode.SYSTEM_ERROR, f"no master broker in the route of {topic}")

    # ------------------------------------------------------------------ metadata
    async def get_route(self, topic: str, refresh: bool = False) -> TopicRouteData:
        cached = self._routes.get(topic)
        if cached is not None and not refresh and time.monotonic() - cached[1] < ROUTE_REFRESH_SECONDS:
            return cached[0]
        resp = await self._namesrv_invoke(RemotingCommand.request(RequestCode.GET_ROUTEINFO_BY_TOPIC,
                                                                  {"topic": topic}))
        if resp.code == ResponseCode.TOPIC_NOT_EXIST:
            self._routes.pop(topic, None)
            raise BackendError(ResponseCode.TOPIC_NOT_EXIST,
                               resp.remark or f"No topic route info in name server for the topic: {topic}")
        self._check(resp)
        try:
            route = TopicRouteData.from_json(json_body.loads(resp.body))
        except (ValueError, KeyError, TypeError) as e:
            raise BackendError(ResponseCode.SYSTEM_ERROR, f"bad route data for {topic}: {e}") from None
        for b in route.broker_datas:
            if b.master_addr:
                self._broker_addrs[b.broker_name] = b.master_addr
        self._routes[topic] = (route, time.monotonic())
        return route

    async def get_topic_config(self, topic: str) -> TopicConfig | None:
        try:
            name = await self._any_broker(topic)
        except BackendError as e:
            if e.code == ResponseCode.TOPIC_NOT_EXIST:
                return None
            raise
        resp = await self._invoke(name, RemotingCommand.request(RequestCode.GET_TOPIC_CONFIG,
                                                                {"topic": topic, "bname": name}), 3.0)
        if resp.code == ResponseCode.TOPIC_NOT_EXIST:
            return None
        self._check(resp)
        return TopicConfig.from_json(json_body.loads(resp.body))

    async def get_subscription_group(self, group: str) -> SubscriptionGroupConfig | None:
        name = await self._any_broker()
        resp = await self._invoke(name, RemotingCommand.request(RequestCode.GET_SUBSCRIPTIONGROUP_CONFIG,
                                                                {"group": group, "bname": name}), 3.0)
        if resp.code == ResponseCode.SUBSCRIPTION_GROUP_NOT_EXIST:
            return None
        self._check(resp)
        return SubscriptionGroupConfig.from_json(json_body.loads(resp.body))

    # ------------------------------------------------------------------ produce
    async def send_message(self, broker_name: str, messages: list[Message], timeout: float) -> list[SendResult]:
        if not messages:
            raise BackendError(ResponseCode.MESSAGE_ILLEGAL, "no message to send")
        first = messages[0]
        batch = len(messages) > 1
        group = first.properties.get(MessageConst.PRODUCER_GROUP, "PROXY_SEND_GROUP")
        header = {
            "a": group, "b": first.topic, "c": "TBW102", "d": "4", "e": str(first.queue_id),
            "f": str(first.sys_flag), "g": str(first.born_timestamp or int(time.time() * 1000)),
            "h": str(first.flag), "i": "" if batch else properties_to_string(first.properties),
            "j": str(first.reconsume_times), "k": "false", "m": "true" if batch else "false",
            "n": broker_name, "bname": broker_name,
        }
        if batch:
            req = RemotingCommand.request(RequestCode.SEND_BATCH_MESSAGE, header, encode_message_batch(messages))
        else:
            req = RemotingCommand.request(RequestCode.SEND_MESSAGE_V2, header, first.body)
        resp = await self._invoke(broker_name, req, timeout)
        status = _SEND_STATUS.get(resp.code)
        if status is None:
            raise BackendError(resp.code, resp.remark or f"send failed with code {resp.code}")
        ext = resp.ext_fields
        try:
            queue_id = int(ext.get("queueId", first.queue_id))
            queue_offset = int(ext.get("queueOffset", -1))
        except ValueError:
            raise BackendError(ResponseCode.SYSTEM_ERROR, f"bad send response {ext}") from None
        msg_ids = (ext.get("msgId") or "").split(",")
        out = []
        for i, m in enumerate(messages):
            off_id = msg_ids[i] if i < len(msg_ids) else ""
            uniq = m.uniq_key or off_id
            tx = ""
            if is_transaction_half(m) and off_id:
                try:
                    _, cl_off = decode_offset_msg_id(off_id)
                except ValueError:
                    cl_off = -1
                tx = encode_transaction_id(ext.get("transactionId") or uniq, cl_off, queue_offset + i, broker_name)
            out.append(SendResult(status, uniq, off_id, queue_id, queue_offset + i, broker_name, tx,
                                  ext.get("recallHandle", "")))
        return out

    async def end_transaction(self, broker_name: str, producer_group: str, topic: str, msg_id: str,
                              transaction_id: str, commit: bool, from_check: bool) -> None:
        decoded = decode_transaction_id(transaction_id)
        raw, cl_off, q_off, bname = decoded if decoded else (transaction_id, -1, -1, "")
        broker_name = broker_name or bname
        header = {
            "producerGroup": producer_group, "topic": topic, "tranStateTableOffset": str(q_off),
            "commitLogOffset": str(cl_off), "commitOrRollback": "8" if commit else "12",
            "fromTransactionCheck": "true" if from_check else "false", "msgId": msg_id, "transactionId": raw,
            "bname": broker_name,
        }
        addr = await self._broker_addr(broker_name)
        try:
            await self.client.invoke_oneway(addr, RemotingCommand.request(RequestCode.END_TRANSACTION, header))
        except RemotingError as e:
            raise BackendError(ResponseCode.SYSTEM_ERROR, f"end transaction on {broker_name}: {e}") from None

    async def recall_message(self, broker_name: str, topic: str, recall_handle: str) -> str:
        header = {"producerGroup": "PROXY_SEND_GROUP", "topic": topic, "recallHandle": recall_handle,
                  "bname": broker_name}
        resp = self._check(await self._invoke(broker_name, RemotingCommand.request(RequestCode.RECALL_MESSAGE,
                                                                                   header), 3.0))
        return resp.ext_fields.get("msgId", "")

    # ------------------------------------------------------------------ POP
    async def pop_message(self, broker_name: str, request: PopRequest, timeout: float) -> PopResult:
        header = {
            "consumerGroup": request.group, "topic": request.topic, "queueId": str(request.queue_id),
            "maxMsgNums": str(request.max_msg_nums), "invisibleTime": str(request.invisible_time_ms),
            "pollTime": str(request.poll_time_ms), "bornTime": str(int(time.time() * 1000)), "initMode": "1",
            "expType": request.expression_type, "exp": request.expression,
            "order": "true" if request.order else "false", "bname": broker_name,
        }
        if request.attempt_id:
            header["attemptId"] = request.attempt_id
        resp = await self._invoke(broker_name, RemotingCommand.request(RequestCode.POP_MESSAGE, header),
                                  max(timeout, request.poll_time_ms / 1000.0 + 3.0))
        if resp.code in (ResponseCode.PULL_NOT_FOUND, ResponseCode.POLLING_TIMEOUT, ResponseCode.NO_MESSAGE):
            return PopResult(PopStatus.NO_NEW_MSG)
        if resp.code == ResponseCode.POLLING_FULL:
            return PopResult(PopStatus.POLLING_FULL)
        self._check(resp)
        ext = resp.ext_fields
        pop_time = int(ext.get("popTime", 0) or 0)
        invisible = int(ext.get("invisibleTime", request.invisible_time_ms) or 0)
        revive_qid = ext.get("reviveQid", "0")
        try:
            msgs = decode_records(resp.body, check_crc=False)
        except RecordError as e:
            raise BackendError(ResponseCode.SYSTEM_ERROR, f"bad POP response body: {e}") from None
        for m in msgs:
            if MessageConst.POP_CK not in m.properties:
                topic_type = "1" if m.topic.startswith("%RETRY%") else "0"
                m.properties[MessageConst.POP_CK] = (
                    f"{m.queue_offset} {pop_time} {invisible} {revive_qid} {topic_type} {broker_name} "
                    f"{m.queue_id} {m.queue_offset}")
        return PopResult(PopStatus.FOUND if msgs else PopStatus.NO_NEW_MSG, msgs, pop_time, invisible,
                         int(ext.get("restNum", 0) or 0))

    async def ack_message(self, broker_name: str, group: str, topic: str, extra_info: str) -> None:
        parts = _extra_fields(extra_info)
        header = {"consumerGroup": group, "topic": topic, "queueId": parts[6], "extraInfo": extra_info,
                  "offset": parts[7], "bname": broker_name}
        self._check(await self._invoke(broker_name, RemotingCommand.request(RequestCode.ACK_MESSAGE, header), 5.0))

    async def ack_messages(self, broker_name: str, group: str, topic: str,
                           extra_infos: list[str]) -> list[BackendError | None]:
        """One BATCH_ACK_MESSAGE (200151) for the batch: entries of one pop checkpoint share a BatchAck
        with a bit set of their offsets. Its answer only counts failures, so when some failed the
        entries are acked one by one to learn which (acks are idempotent)."""
        results: list[BackendError | None] = [None] * len(extra_infos)
        singles: list[int] = []
        groups: dict[tuple[str, ...], list[int]] = {}
        name = ""
        for i, extra in enumerate(extra_infos):
            try:
                p = _extra_fields(extra)
                ck, off = int(p[0]), int(p[7])
                int(p[1]), int(p[2]), int(p[3]), int(p[6])
            except (BackendError, ValueError):
                singles.append(i)
                continue
            name = name or p[5]
            if p[5] != name or off < ck or off - ck >= _MAX_BITSET_SPAN:
                singles.append(i)
                continue
            groups.setdefault((p[0], p[1], p[2], p[3], p[4], p[6]), []).append(i)
        if len(groups) == 1 and len(next(iter(groups.values()))) == 1:
            singles += groups.pop(next(iter(groups)))
        if groups:
            acks = []
            for (start, pt, it, rq, retry, qid), idx in groups.items():
                bits = bytearray()
                base = int(start)
                for i in idx:
                    d = int(extra_infos[i].split(" ", 8)[7]) - base
                    if d // 8 >= len(bits):
                        bits.extend(b"\0" * (d // 8 + 1 - len(bits)))
                    bits[d // 8] |= 1 << (d % 8)
                acks.append({"c": group, "t": topic, "r": retry, "so": base, "q": int(qid), "rq": int(rq),
                             "pt": int(pt), "it": int(it), "b": base64.b64encode(bytes(bits)).decode()})
            req = RemotingCommand.request(RequestCode.BATCH_ACK_MESSAGE, {"bname": broker_name},
                                          body=json_body.dumps({"acks": acks, "brokerName": name}))
            try:
                resp = await self._invoke(broker_name, req, 5.0)
            except BackendError as e:  # the broker is unreachable: every entry failed
                for idx in groups.values():
                    for i in idx:
                        results[i] = e
                resp = None
            # failures, a rejected batch or a broker without BATCH_ACK_MESSAGE: ack one by one
            if resp is not None and (resp.code != ResponseCode.SUCCESS or resp.remark):
                singles += [i for idx in groups.values() for i in idx]
        if singles:
            singles.sort()
            errs = await super().ack_messages(broker_name, group, topic, [extra_infos[i] for i in singles])
            for i, err in zip(singles, errs, strict=True):
                results[i] = err
        return results

    async def change_invisible_time(self, broker_name: str, group: str, topic: str, extra_info: str,
                                    invisible_time_ms: int) -> str:
        parts = _extra_fields(extra_info)
        header = {"consumerGroup": group, "topic": topic, "queueId": parts[6], "extraInfo": extra_info,
                  "offset": parts[7], "invisibleTime": str(invisible_time_ms), "bname": broker_name}
        resp = self._check(await self._invoke(
            broker_name, RemotingCommand.request(RequestCode.CHANGE_MESSAGE_INVISIBLETIME, header), 5.0))
        ext = resp.ext_fields
        if "extraInfo" in ext:
            return ext["extraInfo"]
        new = list(parts[:8])
        new[1] = ext.get("popTime", new[1])
        new[2] = ext.get("invisibleTime", str(invisible_time_ms))
        new[3] = ext.get("reviveQid", new[3])
        return " ".join(new)

    async def forward_to_dead_letter_queue(self, broker_name: str, group: str, topic: str, extra_info: str,
                                           max_reconsume_times: int) -> None:
        """CONSUMER_SEND_MSG_BACK with delayLevel -1 carrying the POP extra info (``extraInfo``, our
        extension): the broker's POP service moves the message to %DLQ%<group> and acks it."""
        _extra_fields(extra_info)
        header = {"offset": "-1", "group": group, "delayLevel": "-1", "originMsgId": "", "originTopic": topic,
                  "unitMode": "false", "maxReconsumeTimes": str(max_reconsume_times),
                  "extraInfo": " ".join(extra_info.split(" ")[:8]), "bname": broker_name}
        self._check(await self._invoke(broker_name, RemotingCommand.request(RequestCode.CONSUMER_SEND_MSG_BACK,
                                                                            header), 5.0))

    # ------------------------------------------------------------------ pull and offsets
    async def pull_message(self, broker_name: str, group: str, topic: str, queue_id: int, offset: int,
                           max_nums: int, expression_type: str, expression: str, poll_time_ms: int,
                           timeout: float) -> PullResult:
        sys_flag = 4 | (2 if poll_time_ms > 0 else 0)
        header = {
            "consumerGroup": group, "topic": topic, "queueId": str(queue_id), "queueOffset": str(offset),
            "maxMsgNums": str(max_nums), "sysFlag": str(sys_flag), "commitOffset": "0",
            "suspendTimeoutMillis": str(poll_time_ms), "subscription": expression or "*", "subVersion": "0",
            "expressionType": expression_type or "TAG", "bname": broker_name,
        }
        resp = await self._invoke(broker_name, RemotingCommand.request(RequestCode.PULL_MESSAGE, header),
                                  max(timeout, poll_time_ms / 1000.0 + 3.0))
        status = _PULL_STATUS.get(resp.code)
        if status is None:
            raise BackendError(resp.code, resp.remark or f"pull failed with code {resp.code}")
        ext = resp.ext_fields
        msgs: list[MessageExt] = []
        if status is PullStatus.FOUND:
            try:
                msgs = decode_records(resp.body, check_crc=False)
            except RecordError as e:
                raise BackendError(ResponseCode.SYSTEM_ERROR, f"bad PULL response body: {e}") from None
        return PullResult(status, int(ext.get("nextBeginOffset", offset)), int(ext.get("minOffset", 0)),
                          int(ext.get("maxOffset", 0)), msgs)

    async def query_consumer_offset(self, broker_name: str, group: str, topic: str, queue_id: int) -> int:
        resp = await self._invoke(broker_name, RemotingCommand.request(RequestCode.QUERY_CONSUMER_OFFSET, {
            "consumerGroup": group, "topic": topic, "queueId": str(queue_id), "setZeroIfNotFound": "false",
            "bname": broker_name}), 3.0)
        self._check(resp)
        return int(resp.ext_fields.get("offset", -1))

    async def update_consumer_offset(self, broker_name: str, group: str, topic: str, queue_id: int,
                                     offset: int) -> None:
        self._check(await self._invoke(broker_name, RemotingCommand.request(RequestCode.UPDATE_CONSUMER_OFFSET, {
            "consumerGroup": group, "topic": topic, "queueId": str(queue_id), "commitOffset": str(offset),
            "bname": broker_name}), 3.0))

    async def _offset(self, broker_name: str, code: int, fields: dict[str, str]) -> int:
        fields["bname"] = broker_name
        resp = self._check(await self._invoke(broker_name, RemotingCommand.request(code, fields), 3.0))
        return int(resp.ext_fields.get("offset", 0))

    async def get_max_offset(self, broker_name: str, topic: str, queue_id: int) -> int:
        return await self._offset(broker_name, RequestCode.GET_MAX_OFFSET, {"topic": topic, "queueId": str(queue_id)})

    async def get_min_offset(self, broker_name: str, topic: str, queue_id: int) -> int:
        return await self._offset(broker_name, RequestCode.GET_MIN_OFFSET, {"topic": topic, "queueId": str(queue_id)})

    async def search_offset(self, broker_name: str, topic: str, queue_id: int, timestamp_ms: int) -> int:
        return await self._offset(broker_name, RequestCode.SEARCH_OFFSET_BY_TIMESTAMP,
                                  {"topic": topic, "queueId": str(queue_id), "timestamp": str(timestamp_ms)})

    # ------------------------------------------------------------------ transaction check-back
    def set_transaction_check_listener(self, listener: TransactionCheckListener) -> None:
        self._listener = listener

    async def register_producer(self, client_id: str, producer_group: str) -> None:
        new = producer_group not in self._producers
        self._producers[producer_group] = client_id
        if new:
            await self._heartbeat_all()

    async def register_consumer(self, client: ConsumerClient) -> None:
        # as RocketMQ's cluster-mode proxy: consumers stay with the proxy; the brokers hear only of
        # producer groups (for check-back)
        return None

    async def unregister_consumer(self, group: str, client_id: str) -> None:
        return None

    def set_consumer_commander(self, commander: ConsumerCommander) -> None:
        # RocketMQ's cluster-mode proxy relays no admin request to its consumers either
        return None

    async def _master_addrs(self) -> list[str]:
        try:
            route = await self.get_route(self.cluster_name)
        except BackendError as e:
            log.info("cluster route of %s unavailable: %s", self.cluster_name, e)
            return list(set(self._broker_addrs.values()))
        return [b.master_addr for b in route.broker_datas if b.master_addr]

    async def _heartbeat_all(self) -> None:
        body = json_body.dumps({
            "clientID": self.client_id,
            "producerDataSet": [{"groupName": g} for g in self._producers],
            "consumerDataSet": [],
        })

        async def one(addr: str) -> None:
            try:
                await self.client.invoke(addr, RemotingCommand.request(RequestCode.HEART_BEAT, body=body), 3.0)
            except RemotingError as e:
                log.info("heartbeat to %s failed: %s", addr, e)

        await asyncio.gather(*(one(a) for a in await self._master_addrs()))

    async def _unregister_producers(self) -> None:
        if not self._producers:
            return
        for addr in list(set(self._broker_addrs.values())):
            for group in self._producers:
                try:
                    await self.client.invoke(addr, RemotingCommand.request(RequestCode.UNREGISTER_CLIENT, {
                        "clientID": self.client_id, "producerGroup": group}), 1.0)
                except RemotingError:
                    break

    async def _on_check_transaction(self, request: RemotingCommand, conn: Any) -> RemotingCommand | None:
        if self._listener is None:
            return None
        f = request.ext_fields
        try:
            msg = decode_record(request.body, check_crc=False)
            cl_off = int(f.get("commitLogOffset", msg.commitlog_offset))
            q_off = int(f.get("tranStateTableOffset", msg.queue_offset))
        except (RecordError, ValueError) as e:
            log.warning("bad CHECK_TRANSACTION_STATE request: %s", e)
            return None
        raw = f.get("transactionId") or msg.properties.get(MessageConst.UNIQ_CLIENT_MESSAGE_ID_KEYIDX, "")
        bname = f.get("bname") or f.get("brokerName") or self._broker_of_addr(remote_addr_of(conn))
        group = msg.properties.get(MessageConst.PRODUCER_GROUP, "")
        try:
            await self._listener(group, msg, encode_transaction_id(raw, cl_off, q_off, bname))
        except Exception as e:  # noqa: BLE001
            log.warning("transaction check listener failed: %s", e)
        return None

    def _broker_of_addr(self, addr: str) -> str:
        for name, a in self._broker_addrs.items():
            if a == addr:
                return name
        return ""

    async def _ignore(self, request: RemotingCommand, conn: Any) -> RemotingCommand | None:
        return None
