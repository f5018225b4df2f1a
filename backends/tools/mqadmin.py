"""mqadmin: RocketMQ's admin command line (tools.sh org.apache.rocketmq.tools.command.MQAdminStartup).

    mqadmin <command> -n host:port[;host:port] [options]
    mqadmin help [command]

Commands and options keep RocketMQ's names. Exit status 0 on success, 1 when a call fails (the
one-line reason goes to stderr), 2 for a bad command line.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import re
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any, NoReturn

import orjson

from backends.api import BackendError
from backends.model import (
    MESSAGE_TYPE_ATTRIBUTE,
    MessageConst,
    MessageExt,
    Perm,
    SubscriptionGroupConfig,
    TopicConfig,
)
from backends.remoting import json_body
from backends.remoting.codes import RequestCode, ResponseCode
from backends.remoting.version import version_desc
from backends.tools.admin_client import AdminClient, AdminError, iter_mq_table

Handler = Callable[[AdminClient, argparse.Namespace], Awaitable[None]]


class UsageError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{self.prog}: {message} (see `mqadmin help {self.prog.split()[-1]}`)")


def _bool(v: str) -> bool:
    if v.lower() in ("true", "1", "yes"):
        return True
    if v.lower() in ("false", "0", "no"):
        return False
    raise argparse.ArgumentTypeError(f"not a boolean: {v!r}")


def table(rows: list[list[Any]], header: list[str]) -> str:
    cells = [header] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in cells)


def fmt_ts(ms: int | str | None) -> str:
    try:
        v = int(ms or 0)
    except (TypeError, ValueError):
        return str(ms)
    if v <= 0:
        return "-"
    return dt.datetime.fromtimestamp(v / 1000).strftime("%Y-%m-%d %H:%M:%S,%f")[:-3]


def parse_timestamp(text: str) -> int:
    """now | milliseconds | yyyy-MM-dd#HH:mm:ss:SSS (RocketMQ's resetOffsetByTime formats)."""
    if text == "now":
        return int(dt.datetime.now().timestamp() * 1000)
    if text.lstrip("-").isdigit():
        return int(text)
    for fmt in ("%Y-%m-%d#%H:%M:%S:%f", "%Y-%m-%d#%H:%M:%S", "%Y-%m-%dT%H:%M:%S"):
        try:
            return int(dt.datetime.strptime(text, fmt).timestamp() * 1000)
        except ValueError:
            continue
    raise argparse.ArgumentTypeError(f"bad timestamp {text!r}: use now, milliseconds or yyyy-MM-dd#HH:mm:ss:SSS")


# --- topics -----------------------------------------------------------------------------------------


def parse_attributes(text: str | None) -> dict[str, str]:
    """"+message.type=FIFO,+k=v" -> {"message.type": "FIFO", "k": "v"}."""
    out: dict[str, str] = {}
    if not text:
        return out
    for item in text.split(","):
        item = item.strip()
        if not item:
            continue
        if item.startswith("-"):
            continue  # deleting an attribute: nothing to set on a new config
        if not item.startswith("+") or "=" not in item:
            raise UsageError(f"updateTopic: bad attribute {item!r}: expected +key=value")
        k, _, v = item[1:].partition("=")
        out[k] = v
    return out


_TOPIC_RE = re.compile(r"^[%|a-zA-Z0-9_-]+$")


def validate_topic(topic: str) -> None:
    """RocketMQ's TopicValidator rules for a topic a user creates."""
    if not topic.strip():
        raise UsageError("the specified topic is blank")
    if len(topic) > 127:
        raise UsageError("the specified topic is longer than topic max length 127")
    if not _TOPIC_RE.match(topic):
        raise UsageError(f"the specified topic[{topic}] contains illegal characters, allowing only ^[%|a-zA-Z0-9_-]+$")


async def update_topic(admin: AdminClient, a: argparse.Namespace) -> None:
    validate_topic(a.topic)
    attrs = parse_attributes(a.attributes)
    mt = attrs.get(MESSAGE_TYPE_ATTRIBUTE)
    if mt is not None and mt.upper() not in ("NORMAL", "FIFO", "DELAY", "TRANSACTION", "MIXED"):
        raise UsageError(f"updateTopic: unknown message.type {mt!r}")
    tc = TopicConfig(a.topic, a.readQueueNums, a.writeQueueNums, a.perm, topic_sys_flag=0,
                     order=bool(a.order), attributes=attrs)
    targets = await _targets(admin, a)
    for _, addr in targets:
        await admin.create_topic(addr, tc)
        print(f"create topic to {addr} success.")
    if a.order and a.clusterName:
        conf = ";".join(f"{name}:{a.writeQueueNums}" for name, _ in targets)
        await admin.put_kv("ORDER_TOPIC_CONFIG", a.topic, conf)
        print(f"set cluster orderConf. isOrder={a.order}, orderConf=[{conf}]")
    print(
        f"TopicConfig [topicName={tc.topic_name}, readQueueNums={tc.read_queue_nums}, "
        f"writeQueueNums={tc.write_queue_nums}, perm={perm_string(tc.perm)}, topicFilterType={tc.topic_filter_type}, "
        f"topicSysFlag={tc.topic_sys_flag}, order={str(tc.order).lower()}, attributes={tc.attributes}]"
    )


def perm_string(perm: int) -> str:
    return ("R" if perm & Perm.READ else "-") + ("W" if perm & Perm.WRITE else "-") + ("X" if perm & Perm.INHERIT else "-")


async def _targets(admin: AdminClient, a: argparse.Namespace) -> list[tuple[str, str]]:
    if getattr(a, "brokerAddr", None):
        return [("", a.brokerAddr)]
    if getattr(a, "clusterName", None):
        targets = await admin.master_addrs(a.clusterName)
        if not targets:
            raise AdminError(f"no master broker in cluster [{a.clusterName}]")
        return targets
    raise UsageError(f"{a.command}: one of -b brokerAddr or -c clusterName is required")


async def delete_topic(admin: AdminClient, a: argparse.Namespace) -> None:
    for _, addr in await admin.master_addrs(a.clusterName):
        await admin.delete_topic_in_broker(addr, a.topic)
    print(f"delete topic [{a.topic}] from cluster [{a.clusterName}] success.")
    await admin.delete_topic_in_namesrv(a.topic, a.clusterName)
    print(f"delete topic [{a.topic}] from NameServer success.")


async def topic_list(admin: AdminClient, a: argparse.Namespace) -> None:
    topics = await admin.topic_list()
    if not a.clusterModel:
        for t in sorted(topics):
            print(t)
        return
    info = await admin.cluster_info()
    cluster_of = {name: c for c, names in info["clusterAddrTable"].items() for name in names}
    rows = []
    for t in sorted(topics):
        try:
            route = await admin.topic_route(t)
        except BackendError:
            continue
        clusters = sorted({cluster_of.get(b.broker_name, "") for b in route.broker_datas})
        rows.append([",".join(clusters), t])
    print(table(rows, ["#Cluster Name", "#Topic"]))


async def topic_route(admin: AdminClient, a: argparse.Namespace) -> None:
    data = await admin.topic_route_json(a.topic)
    if a.list:
        rows = []
        for qd in data.get("queueDatas") or []:
            rows.append([qd.get("brokerName"), qd.get("readQueueNums"), qd.get("writeQueueNums"), qd.get("perm")])
        print(table(rows, ["#BrokerName", "#Read Queue", "#Write Queue", "#Perm"]))
        return
    print(orjson.dumps(data, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS).decode())


async def topic_status(admin: AdminClient, a: argparse.Namespace) -> None:
    rows = []
    for broker_name, addr in await admin.route_masters(a.topic):
        for mq, off in await admin.topic_stats(addr, a.topic):
            rows.append((mq.broker_name or broker_name, mq.queue_id, int(off.get("minOffset", 0)),
                         int(off.get("maxOffset", 0)), fmt_ts(off.get("lastUpdateTimestamp"))))
    rows.sort(key=lambda r: (r[0], r[1]))
    print(table([list(r) for r in rows], ["#Broker Name", "#QID", "#Min Offset", "#Max Offset", "#Last Updated"]))


# --- subscription groups -----------------------------------------------------------------------------


async def update_sub_group(admin: AdminClient, a: argparse.Namespace) -> None:
    cfg = SubscriptionGroupConfig(a.groupName)
    if a.consumeEnable is not None:
        cfg.consume_enable = a.consumeEnable
    if a.consumeFromMinEnable is not None:
        cfg.consume_from_min_enable = a.consumeFromMinEnable
    if a.consumeBroadcastEnable is not None:
        cfg.consume_broadcast_enable = a.consumeBroadcastEnable
    if a.consumeMessageOrderly is not None:
        cfg.consume_message_orderly = a.consumeMessageOrderly
    if a.retryQueueNums is not None:
        cfg.retry_queue_nums = a.retryQueueNums
    if a.retryMaxTimes is not None:
        cfg.retry_max_times = a.retryMaxTimes
    if a.brokerId is not None:
        cfg.broker_id = a.brokerId
    if a.whichBrokerWhenConsumeSlowly is not None:
        cfg.which_broker_when_consume_slowly = a.whichBrokerWhenConsumeSlowly
    if a.notifyConsumerIdsChanged is not None:
        cfg.notify_consumer_ids_changed_enable = a.notifyConsumerIdsChanged
    # RocketMQ's wire form: "+k" -> v sets, "-k" removes; the broker merges them into the current ones
    for item in (a.attributes or "").split(","):
        item = item.strip()
        if item.startswith("+") and "=" in item:
            k, _, v = item.partition("=")
            cfg.attributes[k] = v
        elif item.startswith("-") and len(item) > 1:
            cfg.attributes[item] = ""
        elif item:
            raise SystemExit(f"bad attribute {item!r}: use +key=value or -key")
    for _, addr in await _targets(admin, a):
        await admin.create_sub_group(addr, cfg)
        print(f"create subscription group to {addr} success.")
    print(orjson.dumps(cfg.to_json()).decode())


async def delete_sub_group(admin: AdminClient, a: argparse.Namespace) -> None:
    for _, addr in await _targets(admin, a):
        await admin.delete_sub_group(addr, a.groupName, a.removeOffset)
        where = f"in cluster [{a.clusterName}]" if a.clusterName else ""
        print(f"delete subscription group [{a.groupName}] from broker [{addr}] {where} success.".replace("  ", " "))


async def consumer_progress(admin: AdminClient, a: argparse.Namespace) -> None:
    if not a.groupName:
        await all_groups_progress(admin)
        return
    rows = []
    tps = 0.0
    answered = False
    for broker_name, addr in await admin.master_addrs():
        try:
            entries, t = await admin.consume_stats(addr, a.groupName, a.topic)
        except BackendError as e:
            if e.code in (ResponseCode.SUBSCRIPTION_GROUP_NOT_EXIST, ResponseCode.CONSUMER_NOT_ONLINE,
                          ResponseCode.QUERY_NOT_FOUND, ResponseCode.SYSTEM_ERROR):
                continue
            raise
        answered = True
        tps += t
        for mq, w in entries:
            broker_off = int(w.get("brokerOffset", 0))
            consumer_off = int(w.get("consumerOffset", 0))
            rows.append((mq.topic, mq.broker_name or broker_name, mq.queue_id, broker_off, consumer_off,
                         max(broker_off - consumer_off, 0), fmt_ts(w.get("lastTimestamp"))))
    if not answered:
        raise AdminError(f"no broker has consume stats of group [{a.groupName}]")
    rows.sort(key=lambda r: (r[0], r[1], r[2]))
    print(table([list(r) for r in rows],
                ["#Topic", "#Broker Name", "#QID", "#Broker Offset", "#Consumer Offset", "#Diff", "#LastTime"]))
    print()
    print(f"Consume TPS: {tps:.2f}")
    print(f"Consume Diff Total: {sum(r[5] for r in rows)}")


async def all_groups_progress(admin: AdminClient) -> None:
    """consumerProgress without -g: one line per subscription group of every master broker."""
    masters = await admin.master_addrs()
    groups: set[str] = set()
    for _, addr in masters:
        resp = await admin.call_ok(addr, RequestCode.GET_ALL_SUBSCRIPTIONGROUP_CONFIG)
        data = json_body.loads(resp.body) if resp.body else {}
        groups.update((data.get("subscriptionGroupTable") or {}).keys())
    rows = []
    for group in sorted(groups):
        if group.startswith(("CID_RMQ_SYS_", "CID_ONSAPI_", "TOOLS_CONSUMER")) or group in _SYSTEM_GROUPS:
            continue
        diff, tps, count, version, ctype, model = 0, 0.0, 0, "OFFLINE", "", ""
        for _, addr in masters:
            try:
                entries, t = await admin.consume_stats(addr, group)
            except BackendError:
                continue
            tps += t
            diff += sum(max(int(w.get("brokerOffset", 0)) - int(w.get("consumerOffset", 0)), 0) for _, w in entries)
        for _, addr in masters:
            resp = await admin.consumer_connection(addr, group)
            if resp.code == ResponseCode.SUCCESS:
                data = json_body.loads(resp.body) if resp.body else {}
                conns = data.get("connectionSet") or []
                count = len(conns)
                versions = sorted({int(c.get("version") or 0) for c in conns})
                version = version_desc(versions[-1]) if versions else "OFFLINE"
                ctype = {"CONSUME_ACTIVELY": "PULL", "CONSUME_PASSIVELY": "PUSH", "CONSUME_POP": "POP"}.get(
                    str(data.get("consumeType", "")), str(data.get("consumeType", "")))
                model = str(data.get("messageModel", ""))
                break
        rows.append([group, count, version, ctype, model, f"{tps:.0f}", diff])
    print(table(rows, ["#Group", "#Count", "#Version", "#Type", "#Model", "#TPS", "#Diff Total"]))


_SYSTEM_GROUPS = frozenset({
    "TOOLS_CONSUMER", "FILTERSRV_CONSUMER", "__MONITOR_CONSUMER", "CLIENT_INNER_PRODUCER", "SELF_TEST_P_GROUP",
    "SELF_TEST_C_GROUP", "CID_ONS-HTTP-PROXY", "CID_ONSAPI_PERMISSION", "CID_ONSAPI_OWNER", "CID_ONSAPI_PULL",
    "CID_RMQ_SYS_TRANS", "CID_SYS_RMQ_TRANS", "PID_SYS_RMQ_TRANS",
})


async def consumer_connection(admin: AdminClient, a: argparse.Namespace) -> None:
    last = f"the consumer group [{a.consumerGroup}] not online"
    for _, addr in await admin.master_addrs():
        resp = await admin.consumer_connection(addr, a.consumerGroup)
        if resp.code != ResponseCode.SUCCESS:
            last = resp.remark or last
            continue
        data = json_body.loads(resp.body) if resp.body else {}
        conns = data.get("connectionSet") or []
        rows = [[i + 1, c.get("clientId", ""), c.get("clientAddr", ""), c.get("language", ""),
                 version_desc(int(c.get("version") or 0))]
                for i, c in enumerate(conns)]
        print(table(rows, ["#", "#ClientId", "#ClientAddr", "#Language", "#Version"]))
        print()
        print("Below is subscription:")
        subs = data.get("subscriptionTable") or {}
        srows = [[i + 1, s.get("topic", t) if isinstance(s, dict) else t,
                  s.get("subString", "") if isinstance(s, dict) else s]
                 for i, (t, s) in enumerate(sorted(subs.items()))]
        print(table(srows, ["#", "#Topic", "#SubExpression"]))
        print()
        print(f"ConsumeType: {data.get('consumeType', '')}")
        print(f"MessageModel: {data.get('messageModel', '')}")
        print(f"ConsumeFromWhere: {data.get('consumeFromWhere', '')}")
        return
    raise AdminError(f"CODE: {ResponseCode.CONSUMER_NOT_ONLINE} DESC: {last}")


async def consumer_status(admin: AdminClient, a: argparse.Namespace) -> None:
    """Each online consumer of the group with its running info (RocketMQ's ConsumerStatusSubCommand,
    printed instead of written to files)."""
    clients: list[tuple[str, str, str]] = []  # (broker address, client id, version name)
    for _, addr in await admin.master_addrs():
        if a.brokerAddr and addr != a.brokerAddr:
            continue
        resp = await admin.consumer_connection(addr, a.consumerGroup)
        if resp.code == ResponseCode.SUCCESS and resp.body:
            for c in json_body.loads(resp.body).get("connectionSet") or []:
                cid = c.get("clientId", "")
                # a 4.x consumer heartbeats to every broker: ask it once
                if (not a.clientId or cid == a.clientId) and all(cid != known for _, known, _ in clients):
                    clients.append((addr, cid, version_desc(int(c.get("version") or 0))))
    if not clients:
        raise AdminError(f"CODE: {ResponseCode.CONSUMER_NOT_ONLINE} DESC: the consumer group "
                         f"[{a.consumerGroup}] not online" + (f" with client {a.clientId}" if a.clientId else ""))
    for i, (addr, client_id, version) in enumerate(clients, 1):
        resp = await admin.call(addr, RequestCode.GET_CONSUMER_RUNNING_INFO, {
            "consumerGroup": a.consumerGroup, "clientId": client_id, "jstackEnable": str(a.jstack).lower()},
            timeout=15.0)
        print(f"{i:03d}  {client_id:<40} {version}")
        if resp.code != ResponseCode.SUCCESS:
            print(f"  CODE: {resp.code} DESC: {resp.remark}")
            continue
        print(format_running_info(json_body.loads(resp.body) if resp.body else {}))


def format_running_info(info: dict[str, Any]) -> str:
    """ConsumerRunningInfo as RocketMQ's formatString lays it out."""
    out = ["#Consumer Properties#"]
    out += [f"{k:<40}: {v}" for k, v in sorted((info.get("properties") or {}).items())]
    out.append("\n#Consumer Subscription#")
    for i, sd in enumerate(info.get("subscriptionSet") or [], 1):
        out.append(f"{i:03d} Topic: {sd.get('topic', ''):<40} ClassFilter: "
                   f"{str(sd.get('classFilterMode', False)).lower():<8} SubExpression: {sd.get('subString', '')}")
    mq_rows = sorted(iter_mq_table(info.get("mqTable")), key=lambda r: (r[0].topic, r[0].broker_name, r[0].queue_id))
    if mq_rows:
        out.append("\n#Consumer Offset#")
        out.append(f"{'#Topic':<64}  {'#Broker Name':<32}  {'#QID':<4}  {'#Consumer Offset':<20}")
        for mq, pq in mq_rows:
            out.append(f"{mq.topic:<64}  {mq.broker_name:<32}  {mq.queue_id:<4}  {pq.get('commitOffset', '')!s:<20}")
    if info.get("jstack"):
        out.append("\n#Consumer jstack#")
        out.append(str(info["jstack"]))
    return "\n".join(out)


async def reset_offset_by_time(admin: AdminClient, a: argparse.Namespace) -> None:
    rows = []
    masters = await admin.route_masters(a.topic)
    # RocketMQ first asks each broker to reset and notify online consumers (INVOKE_BROKER_TO_RESET_OFFSET);
    # a broker without that (or with no consumer online) gets the offsets written directly.
    new_way: list[list[Any]] = []
    for broker_name, addr in masters:
        resp = await admin.call(addr, RequestCode.INVOKE_BROKER_TO_RESET_OFFSET, {
            "topic": a.topic, "group": a.group, "timestamp": a.timestamp, "isForce": a.force})
        if resp.code != ResponseCode.SUCCESS:
            new_way = []
            break
        data = json_body.loads(resp.body) if resp.body else {}
        for mq, v in iter_mq_table(data.get("offsetTable")):
            new_way.append([mq.broker_name or broker_name, mq.queue_id, v.get("value", v)])
    if new_way:
        print(f"reset offset of group [{a.group}] topic [{a.topic}] to {fmt_ts(a.timestamp)}:")
        print(table(sorted(new_way, key=lambda r: (r[0], r[1])), ["#brokerName", "#queueId", "#offset"]))
        return
    for broker_name, addr in masters:
        stats = await admin.topic_stats(addr, a.topic)
        for mq, _ in sorted(stats, key=lambda e: e[0].queue_id):
            offset = await admin.search_offset(addr, a.topic, mq.queue_id, a.timestamp)
            await admin.update_consumer_offset(addr, a.group, a.topic, mq.queue_id, offset)
            rows.append([mq.broker_name or broker_name, mq.queue_id, offset])
    print(f"reset offset of group [{a.group}] topic [{a.topic}] to {fmt_ts(a.timestamp)}:")
    print(table(rows, ["#brokerName", "#queueId", "#offset"]))


# --- cluster and brokers ----------------------------------------------------------------------------


async def cluster_list(admin: AdminClient, a: argparse.Namespace) -> None:
    info = await admin.cluster_info()
    rows = []
    for cluster in sorted(info["clusterAddrTable"]):
        if a.clusterName and cluster != a.clusterName:
            continue
        for name in sorted(info["clusterAddrTable"][cluster]):
            bd = info["brokerAddrTable"].get(name) or {}
            for bid, addr in sorted(((int(k), v) for k, v in (bd.get("brokerAddrs") or {}).items())):
                try:
                    rt = await admin.broker_runtime_info(addr)
                except (AdminError, BackendError):
                    rt = {}
                in_tps = (rt.get("putTps") or "0").split(" ")[0]
                out_tps = (rt.get("getTransferedTps") or rt.get("getTransferredTps") or "0").split(" ")[0]
                rows.append([cluster, name, bid, addr, rt.get("brokerVersionDesc", "-"),
                             _f(in_tps), _f(out_tps), rt.get("commitLogDiskRatio", "-"),
                             "true" if rt else "false"])
    print(table(rows, ["#Cluster Name", "#Broker Name", "#BID", "#Addr", "#Version", "#InTPS", "#OutTPS",
                       "#SPACE", "#ACTIVATED"]))


def _f(v: str) -> str:
    try:
        return f"{float(v):.2f}"
    except ValueError:
        return v


async def broker_status(admin: AdminClient, a: argparse.Namespace) -> None:
    if a.brokerAddr:
        addrs = [a.brokerAddr]
    elif a.clusterName:
        addrs = [addr for _, addr in await admin.master_addrs(a.clusterName)]
    else:
        raise UsageError("brokerStatus: one of -b brokerAddr or -c clusterName is required")
    for addr in addrs:
        rt = await admin.broker_runtime_info(addr)
        for k in sorted(rt):
            print(f"{addr:<24s} {k:<32s}: {rt[k]}" if len(addrs) > 1 else f"{k:<32s}: {rt[k]}")


# --- messages ---------------------------------------------------------------------------------------


def _decode(body: bytes) -> list[MessageExt]:
    from backends.store.record import decode_records

    return list(decode_records(body, check_crc=False)) if body else []


def print_message(m: MessageExt) -> None:
    props = m.properties
    print(f"{'OffsetID:':<20s}{m.offset_msg_id}")
    print(f"{'Topic:':<20s}{m.topic}")
    print(f"{'Tags:':<20s}[{props.get(MessageConst.TAGS, '')}]")
    print(f"{'Keys:':<20s}[{props.get(MessageConst.KEYS, '')}]")
    print(f"{'Queue ID:':<20s}{m.queue_id}")
    print(f"{'Queue Offset:':<20s}{m.queue_offset}")
    print(f"{'CommitLog Offset:':<20s}{m.commitlog_offset}")
    print(f"{'Reconsume Times:':<20s}{m.reconsume_times}")
    print(f"{'Born Timestamp:':<20s}{fmt_ts(m.born_timestamp)}")
    print(f"{'Store Timestamp:':<20s}{fmt_ts(m.store_timestamp)}")
    print(f"{'Born Host:':<20s}{m.born_host[0]}:{m.born_host[1]}")
    print(f"{'Store Host:':<20s}{m.store_host[0]}:{m.store_host[1]}")
    print(f"{'System Flag:':<20s}{m.sys_flag}")
    print(f"{'Properties:':<20s}{props}")
    print(f"{'Message Body:':<20s}{_body_text(m.body)}")


def _body_text(body: bytes, limit: int = 4096) -> str:
    text = body[:limit].decode("utf-8", errors="replace")
    return text + (f"... ({len(body)} bytes)" if len(body) > limit else "")


async def query_msg_by_id(admin: AdminClient, a: argparse.Namespace) -> None:
    from backends.model import decode_offset_msg_id

    for msg_id in a.msgId.split(","):
        msg_id = msg_id.strip()
        try:
            (host, port), offset = decode_offset_msg_id(msg_id)
        except ValueError:
            if not a.topic:
                raise AdminError(f"{msg_id} is not an offset message id; give -t topic to look it up by unique key") from None
            await _show_or_consume(admin, a, await _by_unique_key(admin, a.topic, msg_id))
            continue
        if a.consumerGroup and a.clientId:  # consume it once more on that consumer (RocketMQ's -g -d)
            await _consume_directly(admin, f"{host}:{port}", a.consumerGroup, a.clientId, msg_id)
            continue
        body = await admin.view_message(f"{host}:{port}", offset)
        msgs = _decode(body)
        if not msgs:
            raise AdminError(f"message {msg_id} not found")
        print_message(msgs[0])


async def _consume_directly(admin: AdminClient, addr: str, group: str, client_id: str, offset_msg_id: str) -> None:
    resp = await admin.call(addr, RequestCode.CONSUME_MESSAGE_DIRECTLY, {
        "consumerGroup": group, "clientId": client_id, "msgId": offset_msg_id}, timeout=15.0)
    if resp.code != ResponseCode.SUCCESS:
        raise AdminError(f"CODE: {resp.code} DESC: {resp.remark}")
    r = json_body.loads(resp.body) if resp.body else {}
    print(f"ConsumeMessageDirectlyResult [order={str(r.get('order', False)).lower()}, "
          f"autoCommit={str(r.get('autoCommit', True)).lower()}, consumeResult={r.get('consumeResult') or 'null'}, "
          f"remark={r.get('remark')}, spentTimeMills={r.get('spentTimeMills', 0)}]")


async def _by_unique_key(admin: AdminClient, topic: str, key: str) -> MessageExt:
    found: list[MessageExt] = []
    for _, addr in await admin.route_masters(topic):
        body = await admin.query_message(addr, topic, key, 32, 0, 2**63 - 1, unique=True)
        found.extend(m for m in _decode(body) if m.msg_id == key or m.uniq_key == key)
    if not found:
        raise AdminError(f"CODE: {ResponseCode.QUERY_NOT_FOUND} DESC: query message by unique key [{key}] not found")
    return found[0]


async def _show_or_consume(admin: AdminClient, a: argparse.Namespace, m: MessageExt) -> None:
    """A message found by its unique key: printed, or with -g -d consumed once more on that consumer."""
    if a.consumerGroup and a.clientId:
        host, port = m.store_host
        await _consume_directly(admin, f"{host}:{port}", a.consumerGroup, a.clientId, m.offset_msg_id)
    else:
        print_message(m)


async def query_msg_by_unique_key(admin: AdminClient, a: argparse.Namespace) -> None:
    await _show_or_consume(admin, a, await _by_unique_key(admin, a.topic, a.msgId))


async def query_msg_by_key(admin: AdminClient, a: argparse.Namespace) -> None:
    rows = []
    for _, addr in await admin.route_masters(a.topic):
        body = await admin.query_message(addr, a.topic, a.msgKey, a.maxNum, a.beginTimestamp, a.endTimestamp,
                                         unique=False)
        for m in _decode(body):
            if a.msgKey in m.keys:
                rows.append([m.msg_id, m.queue_id, m.queue_offset])
    print(table(rows, ["#Message ID", "#QID", "#Offset"]))


async def send_message(admin: AdminClient, a: argparse.Namespace) -> None:
    route = await admin.topic_route(a.topic)
    addr_of = {b.broker_name: b.master_addr for b in route.broker_datas if b.master_addr}
    queues = []
    for qd in sorted(route.queue_datas, key=lambda q: q.broker_name):
        if not Perm.writeable(qd.perm) or qd.broker_name not in addr_of:
            continue
        if a.broker and qd.broker_name != a.broker:
            continue
        for qid in range(qd.write_queue_nums):
            if a.qid is not None and qid != a.qid:
                continue
            queues.append((qd.broker_name, qid))
    if not queues:
        raise AdminError(f"no writable queue of topic [{a.topic}]"
                         + (f" on broker [{a.broker}]" if a.broker else ""))
    props: dict[str, str] = {}
    if a.tags:
        props[MessageConst.TAGS] = a.tags
    if a.keys:
        props[MessageConst.KEYS] = a.keys
    broker_name, qid = queues[int.from_bytes(os.urandom(2), "big") % len(queues)]
    resp = await admin.send_message(addr_of[broker_name], broker_name, a.topic, qid, a.body.encode(), props)
    status = {0: "SEND_OK", 10: "FLUSH_DISK_TIMEOUT", 12: "FLUSH_SLAVE_TIMEOUT", 11: "SLAVE_NOT_AVAILABLE"}
    msg_id = props.get(MessageConst.UNIQ_CLIENT_MESSAGE_ID_KEYIDX) or resp.ext_fields.get("msgId", "")
    print(table([[broker_name, resp.ext_fields.get("queueId", qid), status.get(resp.code, str(resp.code)), msg_id]],
                ["#Broker Name", "#QID", "#Send Result", "#MsgId"]))


async def consume_message(admin: AdminClient, a: argparse.Namespace) -> None:
    route = await admin.topic_route(a.topic)
    addr_of = {b.broker_name: b.master_addr for b in route.broker_datas if b.master_addr}
    remaining = a.count
    for qd in sorted(route.queue_datas, key=lambda q: q.broker_name):
        if a.broker and qd.broker_name != a.broker:
            continue
        addr = addr_of.get(qd.broker_name)
        if not addr:
            continue
        for qid in range(qd.read_queue_nums):
            if a.qid is not None and qid != a.qid:
                continue
            offset = a.offset if a.offset is not None else await admin.min_offset(addr, a.topic, qid)
            if a.beginTimestamp is not None and a.offset is None:
                offset = await admin.search_offset(addr, a.topic, qid, a.beginTimestamp)
            while remaining > 0:
                resp = await admin.pull(addr, a.group, a.topic, qid, offset, min(32, remaining))
                if resp.code == ResponseCode.PULL_OFFSET_MOVED:
                    offset = int(resp.ext_fields.get("nextBeginOffset", offset))
                    continue
                if resp.code != ResponseCode.SUCCESS:
                    break
                msgs = _decode(resp.body)
                if not msgs:
                    break
                for m in msgs:
                    if a.endTimestamp is not None and m.store_timestamp > a.endTimestamp:
                        remaining = 0
                        break
                    print(f"MSGID: {m.msg_id} {m.topic} {qd.broker_name}:{qid}@{m.queue_offset} "
                          f"TAGS: {m.properties.get(MessageConst.TAGS, '')} BODY: {_body_text(m.body, 1024)}")
                    remaining -= 1
                    if remaining <= 0:
                        break
                offset = int(resp.ext_fields.get("nextBeginOffset", offset + len(msgs)))
            if remaining <= 0:
                return


# --- NameServer KV config and broker permissions -----------------------------------------------------


async def update_kv_config(admin: AdminClient, a: argparse.Namespace) -> None:
    await admin.put_kv(a.namespace, a.key, a.value)
    print("update kv config in namespace success.")


async def delete_kv_config(admin: AdminClient, a: argparse.Namespace) -> None:
    for addr in admin.namesrv_addrs:
        await admin.call_ok(addr, RequestCode.DELETE_KV_CONFIG, {"namespace": a.namespace, "key": a.key})
    print("delete kv config from namespace success.")


async def wipe_write_perm(admin: AdminClient, a: argparse.Namespace) -> None:
    for addr in admin.namesrv_addrs:
        resp = await admin.call_ok(addr, RequestCode.WIPE_WRITE_PERM_OF_BROKER, {"brokerName": a.brokerName})
        print(f"wipe write perm of broker[{a.brokerName}] in name server[{addr}] OK, "
              f"{resp.ext_fields.get('wipeTopicCount', '0')}")


async def add_write_perm(admin: AdminClient, a: argparse.Namespace) -> None:
    for addr in admin.namesrv_addrs:
        resp = await admin.call_ok(addr, 327, {"brokerName": a.brokerName})  # ADD_WRITE_PERM_OF_BROKER
        print(f"add write perm of broker[{a.brokerName}] in name server[{addr}] OK, "
              f"{resp.ext_fields.get('addTopicCount', '0')}")


async def get_namesrv_config(admin: AdminClient, a: argparse.Namespace) -> None:
    for addr in admin.namesrv_addrs:
        resp = await admin.call_ok(addr, 319)  # GET_NAMESRV_CONFIG
        print(f"============{addr}============")
        for line in resp.body.decode("utf-8", errors="replace").splitlines():
            k, _, v = line.partition("=")
            if k.strip():
                print(f"{k.strip():<50s}=  {v.strip()}")


async def update_namesrv_config(admin: AdminClient, a: argparse.Namespace) -> None:
    for addr in admin.namesrv_addrs:
        await admin.call_ok(addr, 318, body=f"{a.key}={a.value}\n".encode())  # UPDATE_NAMESRV_CONFIG
    print(f"update name server config success!{admin.namesrv_addrs}\n{a.key} : {a.value}")


async def topic_cluster_list(admin: AdminClient, a: argparse.Namespace) -> None:
    route = await admin.topic_route(a.topic)
    for cluster in sorted({b.cluster for b in route.broker_datas}):
        print(cluster)


async def get_broker_config(admin: AdminClient, a: argparse.Namespace) -> None:
    if a.brokerAddr:
        targets = [("", a.brokerAddr)]
    elif a.clusterName:
        targets = await admin.master_addrs(a.clusterName)
    else:
        raise UsageError("getBrokerConfig: one of -b brokerAddr or -c clusterName is required")
    for name, addr in targets:
        resp = await admin.call_ok(addr, RequestCode.GET_BROKER_CONFIG)
        print(f"============{addr}{' ' + name if name else ''}============")
        for line in resp.body.decode("utf-8", errors="replace").splitlines():
            k, _, v = line.partition("=")
            if k.strip():
                print(f"{k.strip():<50s}=  {v.strip()}")


async def update_broker_config(admin: AdminClient, a: argparse.Namespace) -> None:
    targets = await _targets(admin, a)
    body = f"{a.key}={a.value}\n".encode()
    for _, addr in targets:
        await admin.call_ok(addr, RequestCode.UPDATE_BROKER_CONFIG, body=body)
        print(f"update broker config success, {addr}")


async def skip_accumulated_message(admin: AdminClient, a: argparse.Namespace) -> None:
    rows = []
    for broker_name, addr in await admin.route_masters(a.topic):
        for mq, _ in sorted(await admin.topic_stats(addr, a.topic), key=lambda e: e[0].queue_id):
            offset = await admin.max_offset(addr, a.topic, mq.queue_id)
            await admin.update_consumer_offset(addr, a.group, a.topic, mq.queue_id, offset)
            rows.append([mq.broker_name or broker_name, mq.queue_id, offset])
    print(table(rows, ["#brokerName", "#queueId", "#offset"]))


async def get_sync_state_set(admin: AdminClient, a: argparse.Namespace) -> None:
    resp = await admin.call_ok(a.controllerAddress, RequestCode.CONTROLLER_GET_SYNC_STATE_DATA,
                               body=json.dumps(a.brokerName.split(",")).encode())
    for name, d in json.loads(resp.body or b"{}").items():
        print(f"#brokerName  {name}\n#MasterBrokerId  {d['masterBrokerId']}\n#MasterAddr  {d['masterAddress']}\n"
              f"#MasterEpoch  {d['masterEpoch']}\n#SyncStateSetEpoch  {d['syncStateSetEpoch']}\n"
              f"#SyncStateSetNums  {len(d['syncStateSet'])}")
        rows = [[bid, addr, str(int(bid) in d["syncStateSet"]).lower(), str(d["alive"].get(bid, False)).lower()]
                for bid, addr in sorted(d["brokerIdTable"].items(), key=lambda kv: int(kv[0]))]
        print(table(rows, ["#brokerId", "#brokerAddress", "#inSyncStateSet", "#alive"]))


async def get_controller_meta_data(admin: AdminClient, a: argparse.Namespace) -> None:
    ext = (await admin.call_ok(a.controllerAddress, RequestCode.CONTROLLER_GET_METADATA_INFO)).ext_fields or {}
    print(f"ControllerGroup\t{ext.get('group', '')}\nControllerLeaderId\t{ext.get('controllerLeaderId', '')}\n"
          f"ControllerLeaderAddress\t{ext.get('controllerLeaderAddress', '')}\nPeers\t{ext.get('peers', '')}")


async def elect_master(admin: AdminClient, a: argparse.Namespace) -> None:
    ext = (await admin.call_ok(a.controllerAddress, RequestCode.CONTROLLER_ELECT_MASTER, {
        "clusterName": a.clusterName, "brokerName": a.brokerName, "brokerId": a.brokerId,
        "designateElect": True, "invokeTime": int(time.time() * 1000)})).ext_fields or {}
    print(f"\nClusterName: {a.clusterName}\nBrokerName: {a.brokerName}\n"
          f"NewMasterAddress: {ext.get('masterAddress', '')}\nNewMasterEpoch: {ext.get('masterEpoch', '')}")


# --- command table ----------------------------------------------------------------------------------

COMMANDS: dict[str, tuple[str, Handler, Callable[[argparse.ArgumentParser], None]]] = {}


Builder = Callable[[argparse.ArgumentParser], None]


def command(name: str, help_text: str) -> Callable[[Builder], Builder]:
    def register(build: Builder) -> Builder:
        handler = globals()[_HANDLER_NAMES[name]]
        COMMANDS[name] = (help_text, handler, build)
        return build

    return register


_HANDLER_NAMES = {
    "updateTopic": "update_topic", "deleteTopic": "delete_topic", "topicList": "topic_list",
    "topicRoute": "topic_route", "topicStatus": "topic_status", "updateSubGroup": "update_sub_group",
    "deleteSubGroup": "delete_sub_group", "consumerProgress": "consumer_progress",
    "consumerConnection": "consumer_connection", "consumerStatus": "consumer_status", "clusterList": "cluster_list", "brokerStatus": "broker_status",
    "queryMsgById": "query_msg_by_id", "queryMsgByKey": "query_msg_by_key",
    "queryMsgByUniqueKey": "query_msg_by_unique_key", "sendMessage": "send_message",
    "consumeMessage": "consume_message", "resetOffsetByTime": "reset_offset_by_time",
    "skipAccumulatedMessage": "skip_accumulated_message", "updateKvConfig": "update_kv_config",
    "deleteKvConfig": "delete_kv_config", "wipeWritePerm": "wipe_write_perm", "addWritePerm": "add_write_perm",
    "topicClusterList": "topic_cluster_list", "getBrokerConfig": "get_broker_config",
    "updateBrokerConfig": "update_broker_config", "getNamesrvConfig": "get_namesrv_config",
    "updateNamesrvConfig": "update_namesrv_config", "getSyncStateSet": "get_sync_state_set",
    "getControllerMetaData": "get_controller_meta_data", "electMaster": "elect_master",
}


@command("updateTopic", "Update or create topic")
def _args_updateTopic(p: argparse.ArgumentParser) -> None:
    g = p.add_mutually_exclusive_group()
    g.add_argument("-b", "--brokerAddr", help="create topic to which broker")
    g.add_argument("-c", "--clusterName", help="create topic to which cluster")
    p.add_argument("-t", "--topic", required=True)
    p.add_argument("-r", "--readQueueNums", type=int, default=8)
    p.add_argument("-w", "--writeQueueNums", type=int, default=8)
    p.add_argument("-p", "--perm", type=int, default=6)
    p.add_argument("-o", "--order", type=_bool, default=False)
    p.add_argument("-u", "--unit", type=_bool, default=False)
    p.add_argument("-s", "--hasUnitSub", type=_bool, default=False)
    p.add_argument("-a", "--attributes", help="e.g. +message.type=FIFO")


@command("deleteTopic", "Delete topic from broker and NameServer")
def _args_deleteTopic(p: argparse.ArgumentParser) -> None:
    p.add_argument("-t", "--topic", required=True)
    p.add_argument("-c", "--clusterName", required=True)


@command("topicList", "Fetch all topic list from name server")
def _args_topicList(p: argparse.ArgumentParser) -> None:
    p.add_argument("-c", "--clusterModel", action="store_true")


@command("topicRoute", "Examine topic route info")
def _args_topicRoute(p: argparse.ArgumentParser) -> None:
    p.add_argument("-t", "--topic", required=True)
    p.add_argument("-l", "--list", action="store_true", help="as a table")


@command("topicStatus", "Examine topic Status info")
def _args_topicStatus(p: argparse.ArgumentParser) -> None:
    p.add_argument("-t", "--topic", required=True)
    p.add_argument("-c", "--cluster")


@command("updateSubGroup", "Update or create subscription group")
def _args_updateSubGroup(p: argparse.ArgumentParser) -> None:
    g = p.add_mutually_exclusive_group()
    g.add_argument("-b", "--brokerAddr")
    g.add_argument("-c", "--clusterName")
    p.add_argument("-g", "--groupName", required=True)
    p.add_argument("-s", "--consumeEnable", type=_bool)
    p.add_argument("-m", "--consumeFromMinEnable", type=_bool)
    p.add_argument("-d", "--consumeBroadcastEnable", type=_bool)
    p.add_argument("-o", "--consumeMessageOrderly", type=_bool)
    p.add_argument("-q", "--retryQueueNums", type=int)
    p.add_argument("-r", "--retryMaxTimes", type=int)
    p.add_argument("-i", "--brokerId", type=int)
    p.add_argument("-w", "--whichBrokerWhenConsumeSlowly", type=int)
    p.add_argument("-a", "--notifyConsumerIdsChanged", type=_bool)
    p.add_argument("--attributes", help="group attributes to set (+k=v) or remove (-k), e.g. "
                   "+consumeFromWhere=EARLIEST (LATEST | EARLIEST | TIMESTAMP with +consumeTimestamp=<ms>): "
                   "where a new group starts; others are kept")


@command("deleteSubGroup", "Delete subscription group from broker")
def _args_deleteSubGroup(p: argparse.ArgumentParser) -> None:
    g = p.add_mutually_exclusive_group()
    g.add_argument("-b", "--brokerAddr")
    g.add_argument("-c", "--clusterName")
    p.add_argument("-g", "--groupName", required=True)
    p.add_argument("-r", "--removeOffset", type=_bool, default=False)


@command("consumerProgress", "Query consumer's progress, speed")
def _args_consumerProgress(p: argparse.ArgumentParser) -> None:
    p.add_argument("-g", "--groupName")
    p.add_argument("-t", "--topic")
    p.add_argument("-s", "--showClientIP", type=_bool, default=False)


@command("consumerConnection", "Query consumer's socket connection, client version and subscription")
def _args_consumerConnection(p: argparse.ArgumentParser) -> None:
    p.add_argument("-g", "--consumerGroup", required=True)
    p.add_argument("-b", "--brokerAddr")


@command("consumerStatus", "Query consumer's internal data structure")
def _args_consumerStatus(p: argparse.ArgumentParser) -> None:
    p.add_argument("-g", "--consumerGroup", required=True)
    p.add_argument("-i", "--clientId", help="the consumer client id")
    p.add_argument("-b", "--brokerAddr", help="only the consumers this broker knows")
    p.add_argument("-s", "--jstack", action="store_true", help="with the client's thread stacks")


@command("clusterList", "List cluster infos")
def _args_clusterList(p: argparse.ArgumentParser) -> None:
    p.add_argument("-c", "--clusterName")
    p.add_argument("-m", "--moreStats", action="store_true")
    p.add_argument("-i", "--interval", type=int)


@command("brokerStatus", "Fetch broker runtime status data")
def _args_brokerStatus(p: argparse.ArgumentParser) -> None:
    p.add_argument("-b", "--brokerAddr")
    p.add_argument("-c", "--clusterName")


@command("queryMsgById", "Query Message by Id")
def _args_queryMsgById(p: argparse.ArgumentParser) -> None:
    p.add_argument("-i", "--msgId", required=True)
    p.add_argument("-t", "--topic")
    p.add_argument("-g", "--consumerGroup")
    p.add_argument("-d", "--clientId")


@command("queryMsgByKey", "Query Message by Key")
def _args_queryMsgByKey(p: argparse.ArgumentParser) -> None:
    p.add_argument("-t", "--topic", required=True)
    p.add_argument("-k", "--msgKey", required=True)
    p.add_argument("-f", "--fallbackHours", type=int)
    p.add_argument("-c", "--maxNum", type=int, default=64)
    p.add_argument("-b", "--beginTimestamp", type=parse_timestamp, default=0)
    p.add_argument("-e", "--endTimestamp", type=parse_timestamp, default=2**63 - 1)


@command("queryMsgByUniqueKey", "Query Message by Unique key")
def _args_queryMsgByUniqueKey(p: argparse.ArgumentParser) -> None:
    p.add_argument("-i", "--msgId", required=True)
    p.add_argument("-t", "--topic", required=True)
    p.add_argument("-g", "--consumerGroup")
    p.add_argument("-d", "--clientId")


@command("sendMessage", "Send a message")
def _args_sendMessage(p: argparse.ArgumentParser) -> None:
    p.add_argument("-t", "--topic", required=True)
    p.add_argument("-p", "--body", required=True)
    p.add_argument("-k", "--keys")
    p.add_argument("-c", "--tags")
    p.add_argument("-b", "--broker")
    p.add_argument("-i", "--qid", type=int)
    p.add_argument("-m", "--msgTraceEnable", type=_bool, default=False)


@command("consumeMessage", "Consume message")
def _args_consumeMessage(p: argparse.ArgumentParser) -> None:
    p.add_argument("-t", "--topic", required=True)
    p.add_argument("-b", "--broker")
    p.add_argument("-i", "--qid", type=int)
    p.add_argument("-o", "--offset", type=int)
    p.add_argument("-g", "--group", default="TOOLS_CONSUMER")
    p.add_argument("-s", "--beginTimestamp", type=parse_timestamp)
    p.add_argument("-e", "--endTimestamp", type=parse_timestamp)
    p.add_argument("-c", "--count", type=int, default=128)


@command("resetOffsetByTime", "Reset consumer offset by timestamp")
def _args_resetOffsetByTime(p: argparse.ArgumentParser) -> None:
    p.add_argument("-g", "--group", required=True)
    p.add_argument("-t", "--topic", required=True)
    p.add_argument("-s", "--timestamp", type=parse_timestamp, required=True)
    p.add_argument("-f", "--force", type=_bool, default=True)
    p.add_argument("-c", "--cplus", action="store_true")


@command("skipAccumulatedMessage", "Skip all messages that are accumulated (not consumed) currently")
def _args_skipAccumulatedMessage(p: argparse.ArgumentParser) -> None:
    p.add_argument("-g", "--group", required=True)
    p.add_argument("-t", "--topic", required=True)
    p.add_argument("-c", "--cluster")
    p.add_argument("-f", "--force", type=_bool, default=True)


@command("updateKvConfig", "Create or update KV config")
def _args_updateKvConfig(p: argparse.ArgumentParser) -> None:
    p.add_argument("-s", "--namespace", required=True)
    p.add_argument("-k", "--key", required=True)
    p.add_argument("-v", "--value", required=True)


@command("deleteKvConfig", "Delete KV config")
def _args_deleteKvConfig(p: argparse.ArgumentParser) -> None:
    p.add_argument("-s", "--namespace", required=True)
    p.add_argument("-k", "--key", required=True)


@command("wipeWritePerm", "Wipe write perm of broker in all name server you defined in the -n param")
def _args_wipeWritePerm(p: argparse.ArgumentParser) -> None:
    p.add_argument("-b", "--brokerName", required=True)


@command("addWritePerm", "Add write perm of broker in all name server you defined in the -n param")
def _args_addWritePerm(p: argparse.ArgumentParser) -> None:
    p.add_argument("-b", "--brokerName", required=True)


@command("topicClusterList", "Get cluster info for topic")
def _args_topicClusterList(p: argparse.ArgumentParser) -> None:
    p.add_argument("-t", "--topic", required=True)


@command("getBrokerConfig", "Get broker config by cluster or special broker")
def _args_getBrokerConfig(p: argparse.ArgumentParser) -> None:
    p.add_argument("-b", "--brokerAddr")
    p.add_argument("-c", "--clusterName")


@command("updateBrokerConfig", "Update broker's config")
def _args_updateBrokerConfig(p: argparse.ArgumentParser) -> None:
    g = p.add_mutually_exclusive_group()
    g.add_argument("-b", "--brokerAddr")
    g.add_argument("-c", "--clusterName")
    p.add_argument("-k", "--key", required=True)
    p.add_argument("-v", "--value", required=True)



@command("getNamesrvConfig", "Get configs of name server")
def _args_getNamesrvConfig(p: argparse.ArgumentParser) -> None:
    pass


@command("updateNamesrvConfig", "Update configs of name server")
def _args_updateNamesrvConfig(p: argparse.ArgumentParser) -> None:
    p.add_argument("-k", "--key", required=True)
    p.add_argument("-v", "--value", required=True)


@command("getSyncStateSet", "Fetch the master and SyncStateSet of broker sets from the controller")
def _args_getSyncStateSet(p: argparse.ArgumentParser) -> None:
    p.add_argument("-a", "--controllerAddress", required=True, help="the controller's host:port")
    p.add_argument("-b", "--brokerName", required=True, help="broker name(s), comma separated")


@command("getControllerMetaData", "Get the controller's metadata")
def _args_getControllerMetaData(p: argparse.ArgumentParser) -> None:
    p.add_argument("-a", "--controllerAddress", required=True, help="the controller's host:port")


@command("electMaster", "Make one replica of a broker set its master (through the controller)")
def _args_electMaster(p: argparse.ArgumentParser) -> None:
    p.add_argument("-a", "--controllerAddress", required=True, help="the controller's host:port")
    p.add_argument("-c", "--clusterName", required=True)
    p.add_argument("-b", "--brokerName", required=True)
    p.add_argument("-i", "--brokerId", type=int, required=True)


def _parser(name: str) -> argparse.ArgumentParser:
    help_text, _, build = COMMANDS[name]
    p = _Parser(prog=f"mqadmin {name}", description=help_text, add_help=True)
    p.add_argument("-n", "--namesrvAddr", help="Name server address list, eg: '192.168.0.1:9876;192.168.0.2:9876'")
    build(p)
    return p


def usage() -> str:
    lines = ["usage: mqadmin <command> [-n host:port[;host:port]] [options]", "", "The most commonly used mqadmin commands are:"]
    lines += [f"   {name:<22s}{COMMANDS[name][0]}" for name in COMMANDS]
    lines += ["", "See 'mqadmin help <command>' for more information on a specific command."]
    return "\n".join(lines)


async def _run(handler: Handler, admin: AdminClient, args: argparse.Namespace) -> None:
    try:
        await handler(admin, args)
    finally:
        await admin.close()


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print(usage())
        return 0 if args else 2
    if args[0] == "help":
        if len(args) > 1 and args[1] in COMMANDS:
            _parser(args[1]).print_help()
            return 0
        print(usage())
        return 0 if len(args) == 1 else 2
    name = args[0]
    if name not in COMMANDS:
        print(f"mqadmin: the command '{name}' does not exist (see `mqadmin help`)", file=sys.stderr)
        return 2
    try:
        ns = _parser(name).parse_args(args[1:])
        ns.command = name
        # (the controller commands talk to -a only)
        namesrv = ns.namesrvAddr or os.environ.get("NAMESRV_ADDR", "") or getattr(ns, "controllerAddress", "")
        if not namesrv:
            raise UsageError(f"mqadmin {name}: no NameServer address: use -n host:port or set NAMESRV_ADDR")
        admin = AdminClient(namesrv)
        asyncio.run(_run(COMMANDS[name][1], admin, ns))
    except UsageError as e:
        print(str(e), file=sys.stderr)
        return 2
    except BackendError as e:
        print(f"mqadmin {name}: CODE: {e.code} DESC: {e.message}", file=sys.stderr)
        return 1
    except AdminError as e:
        print(f"mqadmin {name}: {e}", file=sys.stderr)
        return 1
    except (ValueError, KeyError, TypeError) as e:
        print(f"mqadmin {name}: bad response: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
