"""AdminClient: the remoting calls behind mqadmin (RocketMQ's DefaultMQAdminExt), NameServer and broker side."""

from __future__ import annotations

import itertools
import os
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import orjson

from backends.acl import AclConfigError, tools_credentials
from backends.api import BackendError, TopicRouteData
from backends.model import (
    MessageConst,
    SubscriptionGroupConfig,
    TopicConfig,
    properties_to_string,
)
from backends.remoting import json_body
from backends.remoting.client import RemotingClient, RemotingError
from backends.remoting.codes import RequestCode, ResponseCode
from backends.remoting.command import RemotingCommand

DEFAULT_TIMEOUT = 5.0
AUTO_CREATE_TOPIC_KEY = "TBW102"


@dataclass(slots=True)
class MQ:
    topic: str
    broker_name: str
    queue_id: int


def iter_mq_table(table: Any) -> Iterator[tuple[MQ, dict[str, Any]]]:
    """Entries of a map keyed by MessageQueue (fastjson writes object keys; we also accept JSON-text
    keys, "topic@broker@qid" keys, and a list of {"mq"/"messageQueue": {...}, ...} entries)."""
    if isinstance(table, list):
        for item in table:
            if isinstance(item, dict):
                mq = item.get("mq") or item.get("messageQueue") or item
                yield _mq(mq), item
        return
    if not isinstance(table, dict):
        return
    for key, value in table.items():
        mq_obj: Any = None
        if isinstance(key, str) and key.startswith("{"):
            try:
                mq_obj = orjson.loads(key)
            except orjson.JSONDecodeError:
                mq_obj = None
        elif isinstance(key, str) and key.count("@") >= 2:
            topic, broker, qid = key.rsplit("@", 2)
            mq_obj = {"topic": topic, "brokerName": broker, "queueId": qid}
        if mq_obj is None and isinstance(value, dict):
            mq_obj = value.get("mq") or value.get("messageQueue") or value
        yield _mq(mq_obj or {}), value if isinstance(value, dict) else {"value": value}


def _mq(d: dict[str, Any]) -> MQ:
    return MQ(str(d.get("topic", "")), str(d.get("brokerName", "")), int(d.get("queueId", 0) or 0))


class AdminError(Exception):
    """A failed admin call: a response code other than SUCCESS, or a transport failure."""


class AdminClient:
    def __init__(self, namesrv_addr: str, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.namesrv_addrs = [a.strip() for a in namesrv_addr.replace(",", ";").split(";") if a.strip()]
        if not self.namesrv_addrs:
            raise AdminError("no NameServer address (use -n host:port or set NAMESRV_ADDR)")
        self.timeout = timeout
        # brokers with ACL (aclEnable): sign with the keys of $ROCKETMQ_HOME/conf/tools.yml, as RocketMQ's tools
        try:
            creds = tools_credentials()
        except AclConfigError as e:
            raise AdminError(str(e)) from None
        self.client = RemotingClient(connect_timeout=min(3.0, timeout), credentials=creds)
        self._rr = itertools.count()

    async def close(self) -> None:
        await self.client.close()

    # -- plumbing ----------------------------------------------------------------------------------

    async def call(self, addr: str, code: int, ext: dict[str, Any] | None = None, body: bytes = b"",
                   timeout: float | None = None) -> RemotingCommand:
        req = RemotingCommand.request(
            code, {k: _s(v) for k, v in (ext or {}).items() if v is not None}, body
        )
        try:
            return await self.client.invoke(addr, req, timeout or self.timeout)
        except RemotingError as e:
            raise AdminError(str(e)) from None

    async def call_ok(self, addr: str, code: int, ext: dict[str, Any] | None = None, body: bytes = b"",
                      timeout: float | None = None, ok: tuple[int, ...] = (ResponseCode.SUCCESS,)) -> RemotingCommand:
        resp = await self.call(addr, code, ext, body, timeout)
        if resp.code not in ok:
            raise BackendError(resp.code, resp.remark or "")
        return resp

    async def namesrv(self, code: int, ext: dict[str, Any] | None = None, body: bytes = b"") -> RemotingCommand:
        """Ask the NameServers in order; the first one that answers is used."""
        last: Exception | None = None
        for addr in self.namesrv_addrs:
            try:
                return await self.call(addr, code, ext, body)
            except AdminError as e:
                last = e
        raise AdminError(str(last))

    # -- NameServer ----------------------------------------------------------------------------------

    async def topic_route(self, topic: str) -> TopicRouteData:
        resp = await self.namesrv(RequestCode.GET_ROUTEINFO_BY_TOPIC, {"topic": topic})
        if resp.code != ResponseCode.SUCCESS:
            raise BackendError(resp.code, resp.remark or "")
        return TopicRouteData.from_json(json_body.loads(resp.body))

    async def topic_route_json(self, topic: str) -> dict[str, Any]:
        resp = await self.namesrv(RequestCode.GET_ROUTEINFO_BY_TOPIC, {"topic": topic})
        if resp.code != ResponseCode.SUCCESS:
            raise BackendError(resp.code, resp.remark or "")
        data: dict[str, Any] = json_body.loads(resp.body)
        return data

    async def cluster_info(self) -> dict[str, Any]:
        resp = await self.namesrv(RequestCode.GET_BROKER_CLUSTER_INFO)
        if resp.code != ResponseCode.SUCCESS:
            raise BackendError(resp.code, resp.remark or "")
        data = json_body.loads(resp.body) if resp.body else {}
        return {"brokerAddrTable": data.get("brokerAddrTable") or {},
                "clusterAddrTable": data.get("clusterAddrTable") or {}}

    async def topic_list(self) -> list[str]:
        resp = await self.namesrv(RequestCode.GET_ALL_TOPIC_LIST_FROM_NAMESERVER)
        if resp.code != ResponseCode.SUCCESS:
            raise BackendError(resp.code, resp.remark or "")
        return list(json_body.loads(resp.body).get("topicList") or [])

    async def delete_topic_in_namesrv(self, topic: str, cluster: str | None) -> None:
        for addr in self.namesrv_addrs:
            await self.call_ok(addr, RequestCode.DELETE_TOPIC_IN_NAMESRV, {"topic": topic, "clusterName": cluster})

    async def put_kv(self, namespace: str, key: str, value: str) -> None:
        for addr in self.namesrv_addrs:
            await self.call_ok(addr, RequestCode.PUT_KV_CONFIG, {"namespace": namespace, "key": key, "value": value})

    async def master_addrs(self, cluster: str | None = None, broker_name: str | None = None) -> list[tuple[str, str]]:
        """(brokerName, master address) of a cluster (or all clusters), sorted by broker name."""
        info = await self.cluster_info()
        names: set[str]
        if cluster:
            if cluster not in info["clusterAddrTable"]:
                raise AdminError(f"cluster [{cluster}] not exist")
            names = set(info["clusterAddrTable"][cluster])
        else:
            names = set(info["brokerAddrTable"])
        out = []
        for name in sorted(names):
            if broker_name and name != broker_name:
                continue
            bd = info["brokerAddrTable"].get(name) or {}
            addrs = {str(k): v for k, v in (bd.get("brokerAddrs") or {}).items()}
            if "0" in addrs:
                out.append((name, str(addrs["0"])))
        return out

    async def route_masters(self, topic: str) -> list[tuple[str, str]]:
        route = await self.topic_route(topic)
        return sorted((b.broker_name, b.master_addr) for b in route.broker_datas if b.master_addr)

    # -- broker ------------------------------------------------------------------------------------

    async def create_topic(self, addr: str, tc: TopicConfig) -> None:
        attrs = ",".join(f"+{k}={v}" for k, v in tc.attributes.items())
        await self.call_ok(addr, RequestCode.UPDATE_AND_CREATE_TOPIC, {
            "topic": tc.topic_name, "defaultTopic": AUTO_CREATE_TOPIC_KEY,
            "readQueueNums": tc.read_queue_nums, "writeQueueNums": tc.write_queue_nums, "perm": tc.perm,
            "topicFilterType": tc.topic_filter_type, "topicSysFlag": tc.topic_sys_flag, "order": tc.order,
            "attributes": attrs or None, "force": False,
        })

    async def delete_topic_in_broker(self, addr: str, topic: str) -> None:
        await self.call_ok(addr, RequestCode.DELETE_TOPIC_IN_BROKER, {"topic": topic})

    async def create_sub_group(self, addr: str, cfg: SubscriptionGroupConfig) -> None:
        await self.call_ok(addr, RequestCode.UPDATE_AND_CREATE_SUBSCRIPTIONGROUP, body=json_body.dumps(cfg.to_json()))

    async def delete_sub_group(self, addr: str, group: str, clean_offset: bool) -> None:
        await self.call_ok(addr, RequestCode.DELETE_SUBSCRIPTIONGROUP, {"groupName": group, "cleanOffset": clean_offset})

    async def broker_runtime_info(self, addr: str) -> dict[str, str]:
        resp = await self.call_ok(addr, RequestCode.GET_BROKER_RUNTIME_INFO)
        data = json_body.loads(resp.body) if resp.body else {}
        return {str(k): str(v) for k, v in (data.get("table") or {}).items()}

    async def topic_stats(self, addr: str, topic: str) -> list[tuple[MQ, dict[str, Any]]]:
        resp = await self.call_ok(addr, RequestCode.GET_TOPIC_STATS_INFO, {"topic": topic})
        data = json_body.loads(resp.body) if resp.body else {}
        return list(iter_mq_table(data.get("offsetTable")))

    async def consume_stats(self, addr: str, group: str, topic: str | None = None) -> tuple[list[tuple[MQ, dict[str, Any]]], float]:
        resp = await self.call_ok(addr, RequestCode.GET_CONSUME_STATS, {"consumerGroup": group, "topic": topic})
        data = json_body.loads(resp.body) if resp.body else {}
        return list(iter_mq_table(data.get("offsetTable"))), float(data.get("consumeTps") or 0)

    async def consumer_connection(self, addr: str, group: str) -> RemotingCommand:
        return await self.call(addr, RequestCode.GET_CONSUMER_CONNECTION_LIST, {"consumerGroup": group})

    async def max_offset(self, addr: str, topic: str, queue_id: int) -> int:
        resp = await self.call_ok(addr, RequestCode.GET_MAX_OFFSET, {"topic": topic, "queueId": queue_id})
        return int(resp.ext_fields.get("offset", 0))

    async def min_offset(self, addr: str, topic: str, queue_id: int) -> int:
        resp = await self.call_ok(addr, RequestCode.GET_MIN_OFFSET, {"topic": topic, "queueId": queue_id})
        return int(resp.ext_fields.get("offset", 0))

    async def search_offset(self, addr: str, topic: str, queue_id: int, timestamp: int) -> int:
        resp = await self.call_ok(addr, RequestCode.SEARCH_OFFSET_BY_TIMESTAMP,
                                  {"topic": topic, "queueId": queue_id, "timestamp": timestamp})
        return int(resp.ext_fields.get("offset", 0))

    async def update_consumer_offset(self, addr: str, group: str, topic: str, queue_id: int, offset: int) -> None:
        await self.call_ok(addr, RequestCode.UPDATE_CONSUMER_OFFSET,
                           {"consumerGroup": group, "topic": topic, "queueId": queue_id, "commitOffset": offset})

    async def query_message(self, addr: str, topic: str, key: str, max_num: int, begin: int, end: int,
                            unique: bool) -> bytes:
        ext: dict[str, Any] = {"topic": topic, "key": key, "maxNum": max_num, "beginTimestamp": begin,
                               "endTimestamp": end}
        if unique:
            ext["_UNIQUE_KEY_QUERY"] = "true"
        resp = await self.call_ok(addr, RequestCode.QUERY_MESSAGE, ext,
                                  ok=(ResponseCode.SUCCESS, ResponseCode.QUERY_NOT_FOUND))
        return resp.body if resp.code == ResponseCode.SUCCESS else b""

    async def view_message(self, addr: str, commitlog_offset: int) -> bytes:
        resp = await self.call_ok(addr, RequestCode.VIEW_MESSAGE_BY_ID, {"offset": commitlog_offset})
        return resp.body

    async def send_message(self, addr: str, broker_name: str, topic: str, queue_id: int, body: bytes,
                           properties: dict[str, str], producer_group: str = "PID_MQADMIN") -> RemotingCommand:
        """SEND_MESSAGE_V2; ``properties`` gets UNIQ_KEY (the id clients see) when it has none."""
        props = properties
        props.setdefault(MessageConst.UNIQ_CLIENT_MESSAGE_ID_KEYIDX, new_uniq_id())
        props.setdefault(MessageConst.WAIT_STORE_MSG_OK, "true")
        return await self.call_ok(addr, RequestCode.SEND_MESSAGE_V2, {
            "a": producer_group, "b": topic, "c": AUTO_CREATE_TOPIC_KEY, "d": 4, "e": queue_id, "f": 0,
            "g": int(time.time() * 1000), "h": 0, "i": properties_to_string(props), "j": 0, "k": False,
            "m": False, "n": broker_name,
        }, body)

    async def pull(self, addr: str, group: str, topic: str, queue_id: int, offset: int, max_nums: int = 32,
                   expression: str = "*") -> RemotingCommand:
        return await self.call_ok(addr, RequestCode.PULL_MESSAGE, {
            "consumerGroup": group, "topic": topic, "queueId": queue_id, "queueOffset": offset,
            "maxMsgNums": max_nums, "sysFlag": 0, "commitOffset": 0, "suspendTimeoutMillis": 0,
            "subscription": expression, "subVersion": 0, "expressionType": "TAG",
        }, ok=(ResponseCode.SUCCESS, ResponseCode.PULL_NOT_FOUND, ResponseCode.PULL_RETRY_IMMEDIATELY,
               ResponseCode.PULL_OFFSET_MOVED))


_uniq_counter = itertools.count()


_ip: bytes | None = None


def new_uniq_id() -> str:
    """A message id in the shape of RocketMQ's MessageClientIDSetter (IP, pid, class hash, time, counter)."""
    global _ip
    if _ip is None:
        try:
            _ip = socket.inet_aton(socket.gethostbyname(socket.gethostname()))
        except OSError:
            _ip = b"\x7f\x00\x00\x01"
    ip = _ip
    pid = os.getpid() & 0xFFFF
    now = int(time.time() * 1000) & 0xFFFFFFFF
    seq = next(_uniq_counter) & 0xFFFF
    raw = ip + pid.to_bytes(2, "big") + b"\x00\x00\x00\x01" + now.to_bytes(4, "big") + seq.to_bytes(2, "big")
    return raw.hex().upper()


def _s(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)
