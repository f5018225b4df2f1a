"""Admin and query requests (RocketMQ's AdminBrokerProcessor and QueryMessageProcessor): topics,
subscription groups, offsets, stats, runtime info, message lookup."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from backends.broker.broker_config import ConfigError, parse_properties
from backends.broker.processor.common import guarded
from backends.broker.subscription_group_manager import alter_attributes
from backends.broker.topic_config_manager import parse_attributes, queue_nums_error
from backends.model import (
    MESSAGE_TYPE_ATTRIBUTE,
    MessageExt,
    Perm,
    SubscriptionGroupConfig,
    TopicConfig,
    decode_offset_msg_id,
)
from backends.remoting import json_body
from backends.remoting.codes import RequestCode, ResponseCode
from backends.remoting.command import RemotingCommand
from backends.remoting.header import Header, RemotingCommandException
from backends.store.record import encode_record

if TYPE_CHECKING:
    from backends.broker.controller import BrokerController
    from backends.remoting.server import RemotingServer


# Keys that only take effect at start (RocketMQ refuses some of them too).
IMMUTABLE_KEYS = frozenset({"brokerName", "brokerClusterName", "brokerId", "listenPort", "storePathRootDir",
                            "storePathCommitLog", "brokerIP1", "brokerIP2", "haListenPort"})


def mq_key(topic: str, broker_name: str, queue_id: int) -> bytes:
    """A MessageQueue as a map key, the way fastjson writes it (an object key)."""
    return json_body.dumps({"brokerName": broker_name, "queueId": queue_id, "topic": topic})


def object_key_map(entries: list[tuple[bytes, Any]]) -> bytes:
    return b"{" + b",".join(k + b":" + json_body.dumps(v) for k, v in entries) + b"}"


def record_bytes(m: MessageExt) -> bytes:
    return encode_record(m, m.queue_offset, m.commitlog_offset, m.store_timestamp, m.store_host)


def register(server: RemotingServer, broker: BrokerController) -> None:
    reg = server.register_processor
    tcm = broker.topic_config_manager
    sgm = broker.subscription_group_manager
    store = broker.message_store
    bname = broker.config.broker_name

    # -- topics --
    @guarded
    async def create_topic(request: RemotingCommand, conn: Any) -> RemotingCommand | None:
        h = Header(request)
        topic = h.s("topic")
        if topic == broker.config.broker_cluster_name:
            return request.response(ResponseCode.SYSTEM_ERROR,
                                    f"The topic[{topic}] is conflict with cluster name.")
        old = tcm.select_topic_config(topic)
        attrs = dict(old.attributes) if old else {}
        try:
            add, delete = parse_attributes(h.opt("attributes"))
        except ValueError as e:
            return request.response(ResponseCode.INVALID_PARAMETER, str(e))
        for k in delete:
            attrs.pop(k, None)
        attrs.update(add)
        if MESSAGE_TYPE_ATTRIBUTE in attrs:
            attrs[MESSAGE_TYPE_ATTRIBUTE] = attrs[MESSAGE_TYPE_ATTRIBUTE].upper()
        tc = TopicConfig(
            topic_name=topic,
            read_queue_nums=h.i("readQueueNums", 8),
            write_queue_nums=h.i("writeQueueNums", 8),
            perm=h.i("perm", Perm.READ_WRITE),
            topic_filter_type=h.s("topicFilterType", "SINGLE_TAG"),
            topic_sys_flag=h.i("topicSysFlag", 0),
            order=h.b("order", False),
            attributes=attrs,
        )
        broker.create_topic(tc)  # (refuses queue counts outside 1..MAX_QUEUE_NUMS: INVALID_PARAMETER)
        return request.response()

    @guarded
    async def delete_topic(request: RemotingCommand, conn: Any) -> RemotingCommand | None:
        broker.delete_topic(Header(request).s("topic"))
        return request.response()

    @guarded
    async def all_topic_config(request: RemotingCommand, conn: Any) -> RemotingCommand | None:
        enc = tcm.encode()
        enc["topicQueueMappingInfoMap"] = {}
        enc["topicQueueMappingDetailMap"] = {}
        enc["mappingDataVersion"] = enc["dataVersion"]
        return request.response(body=json_body.dumps(enc))

    @guarded
    async def topic_config(request: RemotingCommand, conn: Any) -> RemotingCommand | None:
        topic = Header(request).s("topic")
        tc = tcm.select_topic_config(topic)
        if tc is None:
            return request.response(ResponseCode.TOPIC_NOT_EXIST, f"No topic in this broker. topic: {topic}")
        body = tc.to_json()
        body["mappingDetail"] = None
        return request.response(body=json_body.dumps(body))

    # -- subscription groups --
    @guarded
    async def create_group(request: RemotingCommand, conn: Any) -> RemotingCommand | None:
        try:
            cfg = SubscriptionGroupConfig.from_json(json_body.loads(request.body))
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            return request.response(ResponseCode.INVALID_PARAMETER, f"bad SubscriptionGroupConfig body: {e}")
        if not cfg.group_name:
            return request.response(ResponseCode.INVALID_PARAMETER, "groupName is blank")
        why = queue_nums_error(retryQueueNums=cfg.retry_queue_nums)
        if why:
            return request.response(ResponseCode.INVALID_PARAMETER, why)
        old = sgm.get(cfg.group_name)
        cfg.attributes = alter_attributes(old.attributes if old else {}, cfg.attributes)
        broker.update_subscription_group(cfg)
        return request.response()

    @guarded
    async def delete_group(request: RemotingCommand, conn: Any) -> RemotingCommand | None:
        h = Header(request)
        broker.delete_subscription_group(h.s("groupName"), h.b("cleanOffset", False))
        return request.response()

    @guarded
    async def group_config(request: RemotingCommand, conn: Any) -> RemotingCommand | None:
        group = Header(request).s("group", None, "groupName", "consumerGroup")
        sg = sgm.get(group)
        if sg is None:
            return request.response(ResponseCode.SUBSCRIPTION_GROUP_NOT_EXIST,
                                    f"No subscription group in this broker. group: {group}")
        return request.response(body=json_body.dumps(sg.to_json()))

    @guarded
    async def all_group_config(request: RemotingCommand, conn: Any) -> RemotingCommand | None:
        return request.response(body=json_body.dumps(sgm.encode()))

    # -- stats --
    @guarded
    async def topic_stats(request: RemotingCommand, conn: Any) -> RemotingCommand | None:
        topic = Header(request).s("topic")
        tc = tcm.select_topic_config(topic)
        if tc is None:
            return request.response(ResponseCode.TOPIC_NOT_EXIST, f"topic[{topic}] not exist")
        entries = []
        for q in range(tc.write_queue_nums):
            mx = store.get_max_offset_in_queue(topic, q)
            last = store.get_message_store_timestamp(topic, q, mx - 1) if mx > 0 else 0
            entries.append((mq_key(topic, bname, q), {
                "minOffset": store.get_min_offset_in_queue(topic, q), "maxOffset": mx,
                "lastUpdateTimestamp": last}))
        return request.response(body=b'{"offsetTable":' + object_key_map(entries) + b"}")

    @guarded
    async def consume_stats(request: RemotingCommand, conn: Any) -> RemotingCommand | None:
        h = Header(request)
        group = h.s("consumerGroup")
        topic = h.s("topic", "")
        topics = [topic] if topic else sorted(broker.consumer_offset_manager.which_topic_by_consumer(group))
        entries = []
        for t in topics:
            tc = tcm.select_topic_config(t)
            if tc is None:
                continue
            for q in range(tc.read_queue_nums):
                broker_off = store.get_max_offset_in_queue(t, q)
                cons = broker.consumer_offset_manager.query_offset(group, t, q)
                cons = max(cons, 0)
                last = store.get_message_store_timestamp(t, q, cons - 1) if cons > 0 else 0
                entries.append((mq_key(t, bname, q), {
                    "brokerOffset": broker_off, "consumerOffset": cons, "pullOffset": cons,
                    "lastTimestamp": last}))
        body = b'{"consumeTps":0.0,"offsetTable":' + object_key_map(entries) + b"}"
        return request.response(body=body)

    @guarded
    async def consumer_connections(request: RemotingCommand, conn: Any) -> RemotingCommand | None:
        group = Header(request).s("consumerGroup")
        g = broker.consumer_manager.get(group)
        if g is None or not g.channels:
            return request.response(ResponseCode.CONSUMER_NOT_ONLINE, f"the consumer group[{group}] not online")
        body = {
            "connectionSet": [c.to_json() for c in g.channels.values()],
            "subscriptionTable": {t: s.to_json() for t, s in g.subscription_table.items()},
            "consumeType": g.consume_type,
            "messageModel": g.message_model,
            "consumeFromWhere": g.consume_from_where,
        }
        return request.response(body=json_body.dumps(body))

    @guarded
    async def producer_connections(request: RemotingCommand, conn: Any) -> RemotingCommand | None:
        group = Header(request).s("producerGroup")
        chans = broker.producer_manager.group_channel_table.get(group)
        if not chans:
            return request.response(ResponseCode.SYSTEM_ERROR, f"the producer group[{group}] not exist")
        return request.response(body=json_body.dumps({"connectionSet": [c.to_json() for c in chans.values()]}))

    @guarded
    async def all_delay_offset(request: RemotingCommand, conn: Any) -> RemotingCommand | None:
        # Delay levels are served by the timer service (no per-level SCHEDULE_TOPIC queues to track).
        return request.response(body=json_body.dumps({"offsetTable": {}, "dataVersion": {}}))

    @guarded
    async def runtime_info(request: RemotingCommand, conn: Any) -> RemotingCommand | None:
        return request.response(body=json_body.dumps({"table": broker.runtime_info()}))

    @guarded
    async def all_consumer_offset(request: RemotingCommand, conn: Any) -> RemotingCommand | None:
        return request.response(body=json_body.dumps(broker.consumer_offset_manager.encode()))

    # -- offsets --
    def topic_queue(request: RemotingCommand) -> tuple[str, int]:
        h = Header(request)
        return h.s("topic"), h.i("queueId")

    @guarded
    async def max_offset(request: RemotingCommand, conn: Any) -> RemotingCommand | None:
        t, q = topic_queue(request)
        return request.response(ext_fields={"offset": str(broker.get_max_offset(t, q))})

    @guarded
    async def min_offset(request: RemotingCommand, conn: Any) -> RemotingCommand | None:
        t, q = topic_queue(request)
        return request.response(ext_fields={"offset": str(broker.get_min_offset(t, q))})

    @guarded
    async def search_offset(request: RemotingCommand, conn: Any) -> RemotingCommand | None:
        t, q = topic_queue(request)
        ts = Header(request).i("timestamp")
        return request.response(ext_fields={"offset": str(broker.search_offset(t, q, ts))})

    @guarded
    async def broker_offset(request: RemotingCommand, conn: Any) -> RemotingCommand | None:
        return request.response(ext_fields={"offset": str(store.get_max_phy_offset())})

    @guarded
    async def earliest_time(request: RemotingCommand, conn: Any) -> RemotingCommand | None:
        t, q = topic_queue(request)
        return request.response(ext_fields={"timestamp": str(store.get_earliest_message_time(t, q))})

    # -- messages --
    @guarded
    async def view_message(request: RemotingCommand, conn: Any) -> RemotingCommand | None:
        off = Header(request).i("offset")
        m = store.look_message_by_offset(off)
        if m is None:
            return request.response(ResponseCode.SYSTEM_ERROR, f"can not find message by the offset, {off}")
        return request.response(body=record_bytes(m))

    @guarded
    async def consumer_running_info(request: RemotingCommand, conn: Any) -> RemotingCommand | None:
        h = Header(request)
        return await broker.call_consumer(request, h.s("consumerGroup"), h.s("clientId"))

    @guarded
    async def consume_message_directly(request: RemotingCommand, conn: Any) -> RemotingCommand | None:
        h = Header(request)
        try:
            off = decode_offset_msg_id(h.s("msgId"))[1]
        except ValueError as e:
            raise RemotingCommandException(f"msgId {h.s('msgId')!r} is not an offset message id") from e
        m = store.look_message_by_offset(off)
        if m is None:
            return request.response(ResponseCode.SYSTEM_ERROR, f"can not find message by the offset, {off}")
        request.ext_fields["brokerName"] = broker.config.broker_name
        request.body = record_bytes(m)
        return await broker.call_consumer(request, h.s("consumerGroup"), h.s("clientId"))

    @guarded
    async def query_message(request: RemotingCommand, conn: Any) -> RemotingCommand | None:
        h = Header(request)
        topic, key = h.s("topic"), h.s("key")
        max_num = h.i("maxNum", 32)
        begin, end = h.i("beginTimestamp", 0), h.i("endTimestamp", 2**62)
        if max_num <= 0:
            raise RemotingCommandException("maxNum must be positive")
        msgs = store.query_message(topic, key, max_num, begin, end)
        ext = {"indexLastUpdateTimestamp": str(int(time.time() * 1000)),
               "indexLastUpdatePhyoffset": str(store.get_max_phy_offset())}
        if not msgs:
            return request.response(ResponseCode.QUERY_NOT_FOUND,
                                    "can not find message, maybe time range not correct", ext)
        return request.response(ext_fields=ext, body=b"".join(record_bytes(m) for m in msgs))

    @guarded
    async def broker_config(request: RemotingCommand, conn: Any) -> RemotingCommand | None:
        props = broker.config.to_properties()
        text = "\n".join(f"{k}={v}" for k, v in sorted(props.items())) + "\n"
        return request.response(body=text.encode())

    @guarded
    async def update_broker_config(request: RemotingCommand, conn: Any) -> RemotingCommand | None:
        try:
            props = parse_properties(request.body.decode("utf-8"))
        except UnicodeDecodeError:
            return request.response(ResponseCode.INVALID_PARAMETER, "broker config body is not UTF-8 text")
        fixed = sorted(k for k in props if k in IMMUTABLE_KEYS)
        if fixed:
            return request.response(ResponseCode.NO_PERMISSION, f"cannot update {', '.join(fixed)} at runtime")
        old_perm = broker.config.broker_permission
        try:
            broker.config.apply(props, "UPDATE_BROKER_CONFIG")
        except ConfigError as e:
            return request.response(ResponseCode.INVALID_PARAMETER, str(e))
        if broker.config.broker_permission != old_perm:
            broker.topic_config_manager.data_version.next_version()
            broker.broker_outer_api.register_soon()
        return request.response()

    @guarded
    async def reset_offset(request: RemotingCommand, conn: Any) -> RemotingCommand | None:
        """INVOKE_BROKER_TO_RESET_OFFSET 222: set the group's offsets of ``topic`` to the queue offsets at
        ``timestamp`` (-1: the max offset) and tell online consumers (RESET_CONSUMER_CLIENT_OFFSET 220)."""
        h = Header(request)
        topic, group = h.s("topic"), h.s("group")
        ts = h.i("timestamp")
        force = h.b("isForce", True)
        tc = tcm.select_topic_config(topic)
        if tc is None:
            return request.response(ResponseCode.TOPIC_NOT_EXIST, f"topic[{topic}] not exist")
        com = broker.consumer_offset_manager
        entries = []
        for q in range(tc.read_queue_nums):
            target = broker.get_max_offset(topic, q) if ts < 0 else broker.search_offset(topic, q, ts)
            current = com.query_offset(group, topic, q)
            if not force and 0 <= current < target:
                target = current
            com.commit_offset("RESET", group, topic, q, target)
            entries.append((mq_key(topic, bname, q), target))
        table = b'{"offsetTable":' + object_key_map(entries) + b"}"
        g = broker.consumer_manager.get(group)
        if g is not None:
            for ch in list(g.channels.values()):
                if ch.conn is None or getattr(ch.conn, "closed", False):
                    continue
                note = RemotingCommand.request(RequestCode.RESET_CONSUMER_CLIENT_OFFSET, {
                    "topic": topic, "group": group, "timestamp": str(ts), "isForce": str(force).lower()}, table)
                try:
                    await ch.conn.invoke_oneway(note)
                except Exception:  # noqa: BLE001
                    pass
        return request.response(body=table)

    reg(RequestCode.UPDATE_AND_CREATE_TOPIC, create_topic)
    reg(RequestCode.DELETE_TOPIC_IN_BROKER, delete_topic)
    reg(RequestCode.GET_ALL_TOPIC_CONFIG, all_topic_config)
    reg(RequestCode.GET_TOPIC_CONFIG, topic_config)
    reg(RequestCode.UPDATE_AND_CREATE_SUBSCRIPTIONGROUP, create_group)
    reg(RequestCode.DELETE_SUBSCRIPTIONGROUP, delete_group)
    reg(RequestCode.GET_SUBSCRIPTIONGROUP_CONFIG, group_config)
    reg(RequestCode.GET_ALL_SUBSCRIPTIONGROUP_CONFIG, all_group_config)
    reg(RequestCode.GET_TOPIC_STATS_INFO, topic_stats)
    reg(RequestCode.GET_CONSUME_STATS, consume_stats)
    reg(RequestCode.GET_CONSUMER_CONNECTION_LIST, consumer_connections)
    reg(RequestCode.GET_BROKER_RUNTIME_INFO, runtime_info)
    reg(RequestCode.GET_PRODUCER_CONNECTION_LIST, producer_connections)
    reg(RequestCode.GET_ALL_DELAY_OFFSET, all_delay_offset)
    reg(RequestCode.GET_ALL_CONSUMER_OFFSET, all_consumer_offset)
    reg(RequestCode.GET_MAX_OFFSET, max_offset)
    reg(RequestCode.GET_MIN_OFFSET, min_offset)
    reg(RequestCode.SEARCH_OFFSET_BY_TIMESTAMP, search_offset)
    reg(RequestCode.GET_EARLIEST_MSG_STORETIME, earliest_time)
    reg(RequestCode.QUERY_BROKER_OFFSET, broker_offset)
    reg(RequestCode.VIEW_MESSAGE_BY_ID, view_message)
    reg(RequestCode.GET_CONSUMER_RUNNING_INFO, consumer_running_info)
    reg(RequestCode.CONSUME_MESSAGE_DIRECTLY, consume_message_directly)
    reg(RequestCode.QUERY_MESSAGE, query_message)
    reg(RequestCode.GET_BROKER_CONFIG, broker_config)
    reg(RequestCode.UPDATE_BROKER_CONFIG, update_broker_config)
    reg(RequestCode.INVOKE_BROKER_TO_RESET_OFFSET, reset_offset)
