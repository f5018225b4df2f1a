"""HEART_BEAT 34, UNREGISTER_CLIENT 35, GET_CONSUMER_LIST_BY_GROUP 38, QUERY_CONSUMER_OFFSET 14,
UPDATE_CONSUMER_OFFSET 15 (RocketMQ's ClientManageProcessor and ConsumerManageProcessor)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from backends.broker.client_manager import ClientChannelInfo, SubscriptionData
from backends.broker.processor.common import guarded, remote_host
from backends.remoting import json_body
from backends.remoting.codes import RequestCode, ResponseCode
from backends.remoting.command import RemotingCommand
from backends.remoting.header import Header, RemotingCommandException

if TYPE_CHECKING:
    from backends.broker.controller import BrokerController
    from backends.remoting.server import RemotingServer


def allocate_average(queues: list[int], cids: list[str], cid: str) -> list[int]:
    """RocketMQ's AllocateMessageQueueAveragely."""
    if cid not in cids or not queues:
        return []
    index, n, m = cids.index(cid), len(queues), len(cids)
    mod = n % m
    size = (n // m + 1 if index < mod else n // m) if n > m else 1
    start = index * size if mod > 0 and index < mod else index * size + mod
    return [queues[(start + i) % n] for i in range(min(size, n - start))] if start < n else []


def register(server: RemotingServer, broker: BrokerController) -> None:
    @guarded
    async def heartbeat(request: RemotingCommand, conn: Any) -> RemotingCommand | None:
        try:
            data = json_body.loads(request.body) if request.body else {}
        except ValueError as e:
            return request.response(ResponseCode.SYSTEM_ERROR, f"bad HeartbeatData body: {e}")
        if not isinstance(data, dict):
            return request.response(ResponseCode.SYSTEM_ERROR, "bad HeartbeatData body: not an object")
        client_id = str(data.get("clientID") or "")
        addr = remote_host(conn)
        for c in data.get("consumerDataSet") or []:
            group = str(c.get("groupName") or "")
            if not group:
                continue
            try:
                subs = [SubscriptionData.from_json(s) for s in c.get("subscriptionDataSet") or []]
            except (KeyError, TypeError, ValueError) as e:
                return request.response(ResponseCode.SYSTEM_ERROR, f"bad subscription data: {e}")
            info = ClientChannelInfo(client_id, addr, request.language, request.version, conn)
            broker.register_consumer_client(
                group, info, str(c.get("consumeType") or "CONSUME_PASSIVELY"),
                str(c.get("messageModel") or "CLUSTERING"),
                str(c.get("consumeFromWhere") or "CONSUME_FROM_LAST_OFFSET"), subs)
        for p in data.get("producerDataSet") or []:
            group = str(p.get("groupName") or "")
            if group:
                broker.producer_manager.register_producer(
                    group, ClientChannelInfo(client_id, addr, request.language, request.version, conn))
        return request.response(ResponseCode.SUCCESS, None, {"isSupportHeartBeatV2": "false"})

    @guarded
    async def unregister_client(request: RemotingCommand, conn: Any) -> RemotingCommand | None:
        h = Header(request)
        client_id = h.s("clientID", "")
        pg = h.opt("producerGroup")
        cg = h.opt("consumerGroup")
        if pg:
            broker.producer_manager.unregister_producer(pg, conn, client_id)
        if cg:
            if broker.consumer_manager.unregister_consumer(cg, conn, client_id):
                broker.notify_consumer_ids_changed(cg)
        return request.response()

    @guarded
    async def consumer_list(request: RemotingCommand, conn: Any) -> RemotingCommand | None:
        group = Header(request).s("consumerGroup")
        g = broker.consumer_manager.get(group)
        if g is None or not g.channels:
            return request.response(ResponseCode.SYSTEM_ERROR, f"no consumer for this group, {group}")
        return request.response(body=json_body.dumps({"consumerIdList": g.client_ids()}))

    @guarded
    async def query_offset(request: RemotingCommand, conn: Any) -> RemotingCommand | None:
        h = Header(request)
        group, topic, qid = h.s("consumerGroup"), h.s("topic"), h.i("queueId")
        off = broker.query_consumer_offset(group, topic, qid, zero_if_not_found=h.b("setZeroIfNotFound", True))
        if off < 0:
            return request.response(ResponseCode.QUERY_NOT_FOUND, "Not found, V3_0_6_SNAPSHOT maybe this group "
                                    "consumer boot first")
        return request.response(ext_fields={"offset": str(off)})

    @guarded
    async def update_offset(request: RemotingCommand, conn: Any) -> RemotingCommand | None:
        h = Header(request)
        group, topic, qid = h.s("consumerGroup"), h.s("topic"), h.i("queueId")
        off = h.i("commitOffset")
        if off < 0:
            raise RemotingCommandException("commitOffset must not be negative")
        broker.update_consumer_offset(group, topic, qid, off, remote_host(conn))
        return request.response()

    def parse_lock_body(request: RemotingCommand) -> tuple[str, str, list[tuple[str, str, int]]]:
        try:
            data = json_body.loads(request.body)
            group = str(data["consumerGroup"])
            client_id = str(data.get("clientId") or "")
            mqs = [(str(m["topic"]), str(m.get("brokerName") or broker.broker_name), int(m["queueId"]))
                   for m in data.get("mqSet") or []]
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            raise RemotingCommandException(f"bad lock batch body: {e}") from None
        return group, client_id, mqs

    def mq_json(mqs: list[tuple[str, str, int]]) -> list[dict[str, object]]:
        return [{"topic": t, "brokerName": b, "queueId": q} for t, b, q in mqs]

    @guarded
    async def lock_batch(request: RemotingCommand, conn: Any) -> RemotingCommand | None:
        group, client_id, mqs = parse_lock_body(request)
        ok = broker.rebalance_lock_manager.try_lock_batch(group, mqs, client_id)
        return request.response(body=json_body.dumps({"lockOKMQSet": mq_json(ok)}))

    @guarded
    async def unlock_batch(request: RemotingCommand, conn: Any) -> RemotingCommand | None:
        group, client_id, mqs = parse_lock_body(request)
        broker.rebalance_lock_manager.unlock_batch(group, mqs, client_id)
        return request.response()

    @guarded
    async def query_assignment(request: RemotingCommand, conn: Any) -> RemotingCommand | None:
        """QUERY_ASSIGNMENT 400 (5.x remoting clients): AVG allocation of this broker's read queues over
        the group's consumers; every queue for BROADCASTING."""
        try:
            data = json_body.loads(request.body)
            topic = str(data["topic"])
            group = str(data["consumerGroup"])
            client_id = str(data.get("clientId") or "")
            model = str(data.get("messageModel") or "CLUSTERING")
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            raise RemotingCommandException(f"bad QueryAssignmentRequestBody: {e}") from None
        tc = broker.topic_config_manager.select_topic_config(topic)
        if tc is None:
            return request.response(ResponseCode.TOPIC_NOT_EXIST, f"topic[{topic}] not exist")
        queues = list(range(tc.read_queue_nums))
        if model != "BROADCASTING":
            g = broker.consumer_manager.get(group)
            cids = sorted(set(g.client_ids())) if g else []
            if client_id not in cids:
                cids = sorted({*cids, client_id})
            queues = allocate_average(queues, cids, client_id)
        body = {"messageQueueAssignments": [
            {"messageQueue": {"topic": topic, "brokerName": broker.broker_name, "queueId": q}, "mode": "PULL",
             "attachments": {}} for q in queues]}
        return request.response(body=json_body.dumps(body))

    server.register_processor(RequestCode.QUERY_ASSIGNMENT, query_assignment)
    server.register_processor(RequestCode.LOCK_BATCH_MQ, lock_batch)
    server.register_processor(RequestCode.UNLOCK_BATCH_MQ, unlock_batch)
    server.register_processor(RequestCode.HEART_BEAT, heartbeat)
    server.register_processor(RequestCode.UNREGISTER_CLIENT, unregister_client)
    server.register_processor(RequestCode.GET_CONSUMER_LIST_BY_GROUP, consumer_list)
    server.register_processor(RequestCode.QUERY_CONSUMER_OFFSET, query_offset)
    server.register_processor(RequestCode.UPDATE_CONSUMER_OFFSET, update_offset)
