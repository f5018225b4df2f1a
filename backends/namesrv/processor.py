"""DefaultRequestProcessor: the NameServer's request codes, answered from RouteInfoManager and KV config."""

from __future__ import annotations

import logging
import zlib
from typing import Any

from backends.api import TopicRouteData
from backends.model import TopicConfig
from backends.namesrv.config import NamesrvConfig, parse_properties
from backends.namesrv.kvconfig_manager import KVConfigManager
from backends.namesrv.route_info_manager import DataVersion, RouteInfoManager
from backends.remoting import json_body
from backends.remoting.codes import RequestCode, ResponseCode
from backends.remoting.command import RemotingCommand
from backends.remoting.header import Header
from backends.remoting.server import Connection, RemotingServer

log = logging.getLogger("RocketmqNamesrv")

NAMESPACE_ORDER_TOPIC_CONFIG = "ORDER_TOPIC_CONFIG"


def crc32(data: bytes) -> int:
    """RocketMQ's UtilAll.crc32: CRC32 masked to a non-negative int."""
    return zlib.crc32(data) & 0x7FFFFFFF


def parse_register_body(body: bytes) -> tuple[dict[str, TopicConfig], DataVersion]:
    """RegisterBrokerBody JSON -> (topic configs, data version)."""
    if not body:
        return {}, DataVersion()
    data = json_body.loads(body)
    if not isinstance(data, dict):
        raise ValueError("register body is not a JSON object")
    wrapper = data.get("topicConfigSerializeWrapper") or {}
    table = wrapper.get("topicConfigTable") or {}
    configs: dict[str, TopicConfig] = {}
    for name, tc in table.items():
        if isinstance(tc, dict):
            tc = dict(tc)
            tc.setdefault("topicName", name)
            configs[str(name)] = TopicConfig.from_json(tc)
    return configs, DataVersion.from_json(wrapper.get("dataVersion"))


MAX_INFLATED_REGISTER_BODY = 64 * 1024 * 1024


def parse_compressed_register_body(body: bytes) -> tuple[dict[str, TopicConfig], DataVersion]:
    """RegisterBrokerBody as a broker with compressedRegister=true writes it: deflate of
    [int len, DataVersion JSON] [int n] n x [int len, TopicConfig.encode() text] [int len, filter list JSON]
    [int n, n x [int len, TopicQueueMappingInfo JSON]] (big-endian ints)."""
    d = zlib.decompressobj()
    raw = d.decompress(body, MAX_INFLATED_REGISTER_BODY)
    if d.unconsumed_tail:
        raise ValueError("inflated register body too large")
    pos = 0

    def read_int() -> int:
        nonlocal pos
        if pos + 4 > len(raw):
            raise ValueError("compressed register body truncated")
        v = int.from_bytes(raw[pos : pos + 4], "big", signed=True)
        pos += 4
        return v

    def read_bytes(n: int) -> bytes:
        nonlocal pos
        if n < 0 or pos + n > len(raw):
            raise ValueError("compressed register body truncated")
        out = raw[pos : pos + n]
        pos += n
        return out

    data_version = DataVersion.from_json(json_body.loads(read_bytes(read_int())))
    configs: dict[str, TopicConfig] = {}
    for _ in range(read_int()):
        parts = read_bytes(read_int()).decode("utf-8").split(" ")
        if len(parts) < 5:
            continue
        attrs: dict[str, str] = {}
        if len(parts) >= 6:
            try:
                attrs = {str(k): str(v) for k, v in json_body.loads(" ".join(parts[5:])).items()}
            except (ValueError, AttributeError):
                attrs = {}
        tc = TopicConfig(parts[0], int(parts[1]), int(parts[2]), int(parts[3]), parts[4], attributes=attrs)
        configs[tc.topic_name] = tc
    return configs, data_version


class DefaultRequestProcessor:
    def __init__(self, config: NamesrvConfig, route: RouteInfoManager, kv: KVConfigManager) -> None:
        self.config = config
        self.route = route
        self.kv = kv

    def register(self, server: RemotingServer) -> None:
        handlers = {
            RequestCode.PUT_KV_CONFIG: self.put_kv_config,
            RequestCode.GET_KV_CONFIG: self.get_kv_config,
            RequestCode.DELETE_KV_CONFIG: self.delete_kv_config,
            RequestCode.REGISTER_BROKER: self.register_broker,
            RequestCode.UNREGISTER_BROKER: self.unregister_broker,
            RequestCode.BROKER_HEARTBEAT: self.broker_heartbeat,
            RequestCode.QUERY_DATA_VERSION: self.query_data_version,
            RequestCode.GET_ROUTEINFO_BY_TOPIC: self.get_route_info_by_topic,
            RequestCode.GET_BROKER_CLUSTER_INFO: self.get_broker_cluster_info,
            RequestCode.WIPE_WRITE_PERM_OF_BROKER: self.wipe_write_perm_of_broker,
            327: self.add_write_perm_of_broker,  # ADD_WRITE_PERM_OF_BROKER
            RequestCode.GET_ALL_TOPIC_LIST_FROM_NAMESERVER: self.get_all_topic_list,
            RequestCode.DELETE_TOPIC_IN_NAMESRV: self.delete_topic_in_namesrv,
            219: self.get_kv_list_by_namespace,  # GET_KVLIST_BY_NAMESPACE
            RequestCode.GET_TOPICS_BY_CLUSTER: self.get_topics_by_cluster,
            217: self.register_topic_to_namesrv,  # REGISTER_TOPIC_IN_NAMESRV
            304: self.get_system_topic_list,  # GET_SYSTEM_TOPIC_LIST_FROM_NS
            318: self.update_config,  # UPDATE_NAMESRV_CONFIG
            319: self.get_config,  # GET_NAMESRV_CONFIG
            RequestCode.GET_BROKER_MEMBER_GROUP: self.get_broker_member_group,
        }
        for code, handler in handlers.items():
            server.register_processor(code, handler)
        server.add_close_listener(self.route.on_channel_destroy)

    # -- KV config ---------------------------------------------------------------------------------

    async def put_kv_config(self, req: RemotingCommand, conn: Connection) -> RemotingCommand:
        h = Header(req)
        self.kv.put(h.s("namespace"), h.s("key"), h.s("value"))
        return req.response()

    async def get_kv_config(self, req: RemotingCommand, conn: Connection) -> RemotingCommand:
        h = Header(req)
        ns, key = h.s("namespace"), h.s("key")
        value = self.kv.get(ns, key)
        if value is None:
            return req.response(ResponseCode.QUERY_NOT_FOUND, f"No config item, Namespace: {ns} Key: {key}")
        return req.response(ext_fields={"value": value})

    async def delete_kv_config(self, req: RemotingCommand, conn: Connection) -> RemotingCommand:
        h = Header(req)
        self.kv.delete(h.s("namespace"), h.s("key"))
        return req.response()

    async def get_kv_list_by_namespace(self, req: RemotingCommand, conn: Connection) -> RemotingCommand:
        ns = Header(req).s("namespace")
        table = self.kv.get_kv_list_by_namespace(ns)
        if table is None:
            return req.response(ResponseCode.QUERY_NOT_FOUND, f"No config item, Namespace: {ns}")
        return req.response(body=json_body.dumps({"table": table}))

    # -- brokers -----------------------------------------------------------------------------------

    async def register_broker(self, req: RemotingCommand, conn: Connection) -> RemotingCommand:
        h = Header(req)
        broker_name = h.s("brokerName")
        broker_addr = h.s("brokerAddr")
        cluster_name = h.s("clusterName")
        broker_id = h.i("brokerId")
        ha_server_addr = h.s("haServerAddr", "")
        timeout_ms = h.i("heartbeatTimeoutMillis", 0)
        body_crc = h.i("bodyCrc32", 0)
        if body_crc and req.body and crc32(req.body) != body_crc:
            log.warning("receive registerBroker request, crc32 not match from %s", conn.remote_addr)
            return req.response(ResponseCode.SYSTEM_ERROR, "crc32 not match")
        compressed = h.b("compressed", False)
        try:
            if compressed and req.body:
                topic_configs, data_version = parse_compressed_register_body(req.body)
            else:
                topic_configs, data_version = parse_register_body(req.body)
        except (ValueError, TypeError, KeyError, AttributeError, zlib.error) as e:
            return req.response(ResponseCode.SYSTEM_ERROR, f"bad register body: {e}")
        result = self.route.register_broker(
            cluster_name,
            broker_addr,
            broker_name,
            broker_id,
            ha_server_addr,
            topic_configs if req.body else None,
            data_version,
            conn,
            timeout_ms or self.config.brokerChannelExpiredTime,
        )
        ext: dict[str, str] = {}
        if result.ha_server_addr is not None:
            ext["haServerAddr"] = result.ha_server_addr
        if result.master_addr is not None:
            ext["masterAddr"] = result.master_addr
        body = b""
        order = self.kv.get_kv_list_by_namespace(NAMESPACE_ORDER_TOPIC_CONFIG)
        if order:
            body = json_body.dumps({"table": order})
        return req.response(ext_fields=ext, body=body)

    async def unregister_broker(self, req: RemotingCommand, conn: Connection) -> RemotingCommand:
        h = Header(req)
        self.route.unregister_broker(h.s("clusterName"), h.s("brokerAddr"), h.s("brokerName"), h.i("brokerId"))
        return req.response()

    async def broker_heartbeat(self, req: RemotingCommand, conn: Connection) -> RemotingCommand:
        h = Header(req)
        self.route.update_broker_info_update_timestamp(h.s("clusterName"), h.s("brokerAddr"))
        return req.response()

    async def query_data_version(self, req: RemotingCommand, conn: Connection) -> RemotingCommand:
        h = Header(req)
        cluster, addr = h.s("clusterName"), h.s("brokerAddr")
        try:
            dv = DataVersion.from_json(json_body.loads(req.body)) if req.body else DataVersion()
        except (ValueError, TypeError, AttributeError) as e:
            return req.response(ResponseCode.SYSTEM_ERROR, f"bad data version: {e}")
        changed = self.route.is_broker_topic_config_changed(cluster, addr, dv)
        self.route.update_broker_info_update_timestamp(cluster, addr)
        held = self.route.query_broker_topic_config(cluster, addr)
        body = json_body.dumps(held.to_json()) if held is not None else b""
        return req.response(ext_fields={"changed": "true" if changed else "false"}, body=body)

    async def wipe_write_perm_of_broker(self, req: RemotingCommand, conn: Connection) -> RemotingCommand:
        count = self.route.wipe_write_perm_of_broker(Header(req).s("brokerName"))
        return req.response(ext_fields={"wipeTopicCount": str(count)})

    async def add_write_perm_of_broker(self, req: RemotingCommand, conn: Connection) -> RemotingCommand:
        count = self.route.add_write_perm_of_broker(Header(req).s("brokerName"))
        return req.response(ext_fields={"addTopicCount": str(count)})

    # -- routes and topics -------------------------------------------------------------------------

    async def get_route_info_by_topic(self, req: RemotingCommand, conn: Connection) -> RemotingCommand:
        topic = Header(req).s("topic")
        route = self.route.pickup_topic_route_data(topic)
        if route is None:
            return req.response(
                ResponseCode.TOPIC_NOT_EXIST, f"No topic route info in name server for the topic: {topic}"
            )
        data: dict[str, Any] = route.to_json()
        if self.config.orderMessageEnable:
            data["orderTopicConf"] = self.kv.get(NAMESPACE_ORDER_TOPIC_CONFIG, topic)
        return req.response(body=json_body.dumps(data))

    async def get_broker_cluster_info(self, req: RemotingCommand, conn: Connection) -> RemotingCommand:
        return req.response(body=json_body.dumps(self.route.get_all_cluster_info()))

    async def get_all_topic_list(self, req: RemotingCommand, conn: Connection) -> RemotingCommand:
        if not self.config.enableAllTopicList:
            return req.response(ResponseCode.SYSTEM_ERROR, "disable")
        return req.response(body=json_body.dumps({"topicList": self.route.get_all_topic_list()}))

    async def get_topics_by_cluster(self, req: RemotingCommand, conn: Connection) -> RemotingCommand:
        if not self.config.enableTopicList:
            return req.response(ResponseCode.SYSTEM_ERROR, "disable")
        topics = self.route.get_topics_by_cluster(Header(req).s("cluster"))
        return req.response(body=json_body.dumps({"topicList": topics}))

    async def delete_topic_in_namesrv(self, req: RemotingCommand, conn: Connection) -> RemotingCommand:
        h = Header(req)
        self.route.delete_topic(h.s("topic"), h.opt("clusterName") or None)
        return req.response()

    async def register_topic_to_namesrv(self, req: RemotingCommand, conn: Connection) -> RemotingCommand:
        topic = Header(req).s("topic")
        try:
            route = TopicRouteData.from_json(json_body.loads(req.body)) if req.body else TopicRouteData()
        except (ValueError, TypeError, KeyError, AttributeError) as e:
            return req.response(ResponseCode.SYSTEM_ERROR, f"bad topic route data: {e}")
        self.route.register_topic(topic, route.queue_datas)
        return req.response()

    async def get_system_topic_list(self, req: RemotingCommand, conn: Connection) -> RemotingCommand:
        topics, addr = self.route.get_system_topic_list()
        return req.response(body=json_body.dumps({"topicList": topics, "brokerAddr": addr}))

    async def get_broker_member_group(self, req: RemotingCommand, conn: Connection) -> RemotingCommand:
        h = Header(req)
        group = self.route.get_broker_member_group(h.s("clusterName"), h.s("brokerName"))
        return req.response(body=json_body.dumps({"brokerMemberGroup": group}))

    async def get_config(self, req: RemotingCommand, conn: Connection) -> RemotingCommand:
        text = "".join(f"{k}={'true' if v is True else 'false' if v is False else v}\n" for k, v in self.config.items())
        return req.response(body=text.encode())

    async def update_config(self, req: RemotingCommand, conn: Connection) -> RemotingCommand:
        props = parse_properties(req.body.decode("utf-8", errors="replace")) if req.body else {}
        black = {"configBlackList", "configStorePath", "kvConfigPath", "listenPort", "bindAddress"}
        if black & set(props):
            return req.response(ResponseCode.NO_PERMISSION, "Can not update config in black list.")
        for k, v in props.items():
            try:
                if not self.config.set(k, v):
                    return req.response(ResponseCode.SYSTEM_ERROR, f"unknown config key {k}")
            except ValueError:
                return req.response(ResponseCode.SYSTEM_ERROR, f"bad value for {k}: {v!r}")
        log.info("updateConfig %s by %s", props, conn.remote_addr)
        return req.response()
