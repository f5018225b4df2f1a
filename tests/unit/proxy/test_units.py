"""Pure helpers: config, receipt handles, validation, conversion."""

from __future__ import annotations

import json
import time

import pytest

from backends.model import MessageConst, MessageExt, SysFlag
from protos.apache.rocketmq.v2 import definition_pb2 as pb
from proxy import receipt_handle as rh
from proxy import validation as v
from proxy.config import ProxyConfig, advertised_addresses
from proxy.convert import java_hash, parse_peer, to_message, to_pb_message
from proxy.errors import ProxyError

C = pb.Code


def test_config_keys_defaults_and_unknown(tmp_path, caplog, monkeypatch):
    p = tmp_path / "rmq-proxy.json"
    p.write_text(json.dumps({"rocketMQClusterName": "C1", "proxyMode": "local", "grpcServerPort": "9999",
                             "enableTopicMessageTypeCheck": "false", "bogusKey": 1,
                             "grpcAdvertisedAddress": "10.0.0.1:8081", "remotingListenPort": 8080}))
    monkeypatch.setenv("NAMESRV_ADDR", "1.2.3.4:9876")
    cfg = ProxyConfig.load(str(p))
    assert cfg.rocketmq_cluster_name == "C1"
    assert cfg.local_mode and cfg.proxy_mode == "LOCAL"
    assert cfg.grpc_server_port == 9999
    assert cfg.enable_topic_message_type_check is False
    assert cfg.namesrv_addr == "1.2.3.4:9876"
    assert cfg.grpc_advertised_address == "10.0.0.1:8081"
    assert "bogusKey" in caplog.text
    # accepted as RocketMQ's proxy accepts it, but said not to serve anything
    assert "remotingListenPort=8080 is not used" in caplog.text
    d = ProxyConfig()
    assert (d.grpc_server_port, d.max_message_size, d.min_invisible_time_mills_for_recv) == (8081, 4194304, 10000)


def test_advertised_addresses():
    assert advertised_addresses("10.0.0.1:8081; 10.0.0.2") == (("10.0.0.1", 8081), ("10.0.0.2", None))
    assert advertised_addresses("[::1]:18081;fe80::1") == (("::1", 18081), ("fe80::1", None))
    assert advertised_addresses("mq.example.com:443") == (("mq.example.com", 443),)
    for bad, why in (("a.example:8081;b.example:8081", "one domain name only"),
                     ("10.0.0.1:8081;mq.example.com:8081", "mixes"), ("10.0.0.1:http", "bad address"),
                     ("10.0.0.1:70000", "bad address"), ("[::1", "bad address"),
                     ("a:b:c", "bad address")):
        with pytest.raises(ValueError, match=why):
            ProxyConfig.from_dict({"grpcAdvertisedAddress": bad})


def test_config_rocketmq_home(tmp_path, monkeypatch):
    (tmp_path / "conf").mkdir()
    (tmp_path / "conf" / "p.json").write_text('{"grpcServerPort": 1234}')
    monkeypatch.setenv("ROCKETMQ_HOME", str(tmp_path))
    monkeypatch.chdir("/")
    assert ProxyConfig.load("conf/p.json").grpc_server_port == 1234
    assert ProxyConfig.load("$ROCKETMQ_HOME/conf/p.json").grpc_server_port == 1234


def test_receipt_handle_round_trip_and_rejection():
    extra = "5 1700000000000 30000 0 0 broker-a 3 17"
    h = rh.decode(rh.encode(extra, 123456))
    assert (h.broker_name, h.queue_id, h.queue_offset, h.commit_log_offset) == ("broker-a", 3, 17, 123456)
    assert h.extra_info == extra
    assert h.is_expired(1700000030000) and not h.is_expired(1700000029999)
    for bad in ("", "garbage", "a b c d e f g h i", "1 2 3"):
        with pytest.raises(ProxyError) as ei:
            rh.decode(bad)
        assert ei.value.code == C.INVALID_RECEIPT_HANDLE


@pytest.mark.parametrize("topic,ok", [("T", True), ("a%b|c_d-e", True), ("", False), (" ", False),
                                      ("x" * 128, False), ("x" * 127, True), ("a b", False), ("a/b", False),
                                      ("TBW102", False), ("rmq_sys_x", False), ("SCHEDULE_TOPIC_XXXX", False)])
def test_topic_rule(topic, ok):
    if ok:
        v.validate_topic(topic)
    else:
        with pytest.raises(ProxyError) as ei:
            v.validate_topic(topic)
        assert ei.value.code == C.ILLEGAL_TOPIC


@pytest.mark.parametrize("group,ok", [("G", True), ("", False), ("x" * 121, False), ("a b", False),
                                      ("CID_RMQ_SYS_X", False), ("x" * 120, True)])
def test_group_rule(group, ok):
    if ok:
        v.validate_group(group)
    else:
        with pytest.raises(ProxyError) as ei:
            v.validate_group(group)
        assert ei.value.code == C.ILLEGAL_CONSUMER_GROUP


def _code(fn, *args):
    try:
        fn(*args)
    except ProxyError as e:
        return e.code
    return C.OK


def test_message_field_rules():
    cfg = ProxyConfig()
    assert _code(v.validate_tag, "a|b") == C.ILLEGAL_MESSAGE_TAG
    assert _code(v.validate_tag, " ") == C.ILLEGAL_MESSAGE_TAG
    assert _code(v.validate_tag, "a\x01") == C.ILLEGAL_MESSAGE_TAG
    assert _code(v.validate_tag, "TagA") == C.OK
    assert _code(v.validate_key, " ") == C.ILLEGAL_MESSAGE_KEY
    assert _code(v.validate_key, "k\n") == C.ILLEGAL_MESSAGE_KEY
    assert _code(v.validate_message_group, " ", cfg) == C.ILLEGAL_MESSAGE_GROUP
    # empty is no value (RocketMQ skips it; the Go SDK sends empty fields)
    assert _code(v.validate_message_group, "", cfg) == _code(v.validate_tag, "") == _code(v.validate_key, "") == C.OK
    assert _code(v.validate_message_group, "g" * 64, cfg) == C.ILLEGAL_MESSAGE_GROUP
    assert _code(v.validate_message_group, "g" * 63, cfg) == C.OK
    assert _code(v.validate_message_group, "g\x00", cfg) == C.ILLEGAL_MESSAGE_GROUP
    assert _code(v.validate_body, b"", cfg) == C.MESSAGE_BODY_EMPTY
    assert _code(v.validate_body, b"x" * (4 * 1024 * 1024 + 1), cfg) == C.MESSAGE_BODY_TOO_LARGE
    assert _code(v.validate_body, b"x" * (4 * 1024 * 1024), cfg) == C.OK
    assert _code(v.validate_user_properties, {str(i): "v" for i in range(129)}, cfg) == C.MESSAGE_PROPERTIES_TOO_LARGE
    assert _code(v.validate_user_properties, {"k": "v" * 16384}, cfg) == C.MESSAGE_PROPERTIES_TOO_LARGE
    assert _code(v.validate_user_properties, {"TAGS": "x"}, cfg) == C.ILLEGAL_MESSAGE_PROPERTY_KEY
    assert _code(v.validate_user_properties, {"UNIQ_KEY": "x"}, cfg) == C.ILLEGAL_MESSAGE_PROPERTY_KEY
    assert _code(v.validate_user_properties, {"k\x01": "x"}, cfg) == C.ILLEGAL_MESSAGE_PROPERTY_KEY
    now = int(time.time() * 1000)
    assert _code(v.validate_delivery_time, now + 86_400_000 + 60_000, cfg) == C.ILLEGAL_DELIVERY_TIME
    assert _code(v.validate_delivery_time, now + 60_000, cfg) == C.OK
    assert _code(v.validate_invisible_time, 9_999, cfg) == C.ILLEGAL_INVISIBLE_TIME
    assert _code(v.validate_invisible_time, 12 * 3600 * 1000 + 1, cfg) == C.ILLEGAL_INVISIBLE_TIME
    assert _code(v.validate_invisible_time, 10_000, cfg) == C.OK


def test_java_hash_matches_java():
    assert java_hash("") == 0
    assert java_hash("hello") == 99162322
    assert java_hash("polygenelubricants") == -2147483648


def test_parse_peer():
    assert parse_peer("ipv4:127.0.0.1:5000") == ("127.0.0.1", 5000)
    assert parse_peer("ipv6:[::1]:5000") == ("::1", 5000)
    assert parse_peer("ipv6:[::ffff:10.1.2.3]:5000") == ("10.1.2.3", 5000)  # IPv4 client, dual-stack port
    assert parse_peer(None) == ("127.0.0.1", 0)


def _pb_msg(**sp) -> pb.Message:
    m = pb.Message(body=b"hello")
    m.topic.name = "T"
    m.system_properties.message_id = "01ABC"
    for k, val in sp.items():
        setattr(m.system_properties, k, val)
    return m


def test_to_message_properties():
    m = _pb_msg(tag="TagA", message_type=pb.MessageType.TRANSACTION, body_encoding=pb.Encoding.GZIP)
    m.system_properties.keys.extend(["k1", "k2"])
    m.user_properties["color"] = "red"
    m.system_properties.born_timestamp.seconds = 1700000000
    m.system_properties.born_host = "host-1"
    m.system_properties.trace_context = "tc"
    out = to_message(m, "T", 3, ("10.0.0.1", 1234), "T")
    p = out.properties
    assert p["UNIQ_KEY"] == "01ABC" and p["TAGS"] == "TagA" and p["KEYS"] == "k1 k2"
    assert p["color"] == "red" and p["TRAN_MSG"] == "true" and p["PGROUP"] == "T"
    assert p["BORN_TIMESTAMP"] == "1700000000000" and p["__BORNHOST"] == "host-1" and p["TRACE_CONTEXT"] == "tc"
    assert out.sys_flag & SysFlag.COMPRESSED and out.sys_flag & SysFlag.TRANSACTION_PREPARED_TYPE
    assert out.queue_id == 3 and out.born_timestamp == 1700000000000
    fifo = _pb_msg(message_group="g1")
    assert to_message(fifo, "T", 0, ("h", 1), "T").properties["__SHARDINGKEY"] == "g1"
    d = _pb_msg()
    d.system_properties.delivery_timestamp.seconds = 1800000000
    assert to_message(d, "T", 0, ("h", 1), "T").properties["TIMER_DELIVER_MS"] == "1800000000000"


def test_to_pb_message():
    import hashlib
    import zlib

    props = {"UNIQ_KEY": "ID1", "TAGS": "TagA", "KEYS": "a b", "color": "red", MessageConst.POP_CK: "x",
             "__SHARDINGKEY": "g"}
    ext = MessageExt("T", zlib.compress(b"payload"), props, sys_flag=SysFlag.COMPRESSED, queue_id=2,
                     born_timestamp=1000, reconsume_times=2, queue_offset=7, commitlog_offset=99,
                     store_timestamp=2000, store_host=("1.2.3.4", 10911))
    m = to_pb_message(ext, "T", "rh", 30_000)
    sp = m.system_properties
    assert m.body == b"payload" and sp.body_encoding == pb.Encoding.IDENTITY
    assert sp.body_digest.type == pb.DigestType.MD5
    assert sp.body_digest.checksum == hashlib.md5(b"payload").hexdigest().upper()
    assert sp.message_id == "ID1" and sp.tag == "TagA" and list(sp.keys) == ["a", "b"]
    assert sp.delivery_attempt == 3 and sp.queue_id == 2 and sp.queue_offset == 7
    assert sp.receipt_handle == "rh" and sp.invisible_duration.seconds == 30
    assert sp.store_host == "1.2.3.4:10911" and sp.message_type == pb.MessageType.FIFO and sp.message_group == "g"
    assert dict(m.user_properties) == {"color": "red"}
    assert sp.born_timestamp.seconds == 1 and sp.store_timestamp.seconds == 2


def test_session_expiry_and_producers():
    from proxy.session import SessionManager

    sm = SessionManager(expire_after_s=10)
    st = pb.Settings(client_type=pb.ClientType.PRODUCER)
    st.publishing.topics.add(name="T")
    s = sm.update_settings("c1", st)
    assert s.topics == ("T",) and sm.producers_for("T") == []  # no open stream yet
    import asyncio

    q: asyncio.Queue = asyncio.Queue()
    sm.attach("c1", q)
    assert sm.producers_for("T") == [s]
    sm.touch("c2")
    now = s.last_seen
    assert sm.expire(now + 11) == ["c2"]  # c1 keeps an open Telemetry stream
    sm.detach("c1", q)
    assert sm.expire(now + 11) == ["c1"] and sm.get("c1") is None
