"""BrokerConfig from broker.conf (Java properties with RocketMQ's keys)."""

from __future__ import annotations

from pathlib import Path

import pytest

from backends.broker.broker_config import BrokerConfig, ConfigError, parse_properties
from tests.harness import REPO


def test_parse_properties_forms() -> None:
    text = "# c\n! c2\na=1\nb : two\nc three\nd = x \\\n  y\n\n  e=  spaced  \n"
    assert parse_properties(text) == {"a": "1", "b": "two", "c": "three", "d": "x y", "e": "spaced"}


def test_defaults_and_shipped_conf(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NAMESRV_ADDR", raising=False)
    c = BrokerConfig()
    assert (c.broker_cluster_name, c.broker_name, c.broker_id, c.listen_port) == ("DefaultCluster", "broker-a", 0,
                                                                                  10911)
    assert c.default_topic_queue_nums == 8 and c.auto_create_topic_enable and c.max_message_size == 4194304
    assert c.delay_levels_ms[:3] == [1000, 5000, 10000] and len(c.delay_levels_ms) == 18
    c = BrokerConfig.load(str(REPO / "conf" / "broker.conf"))
    assert c.broker_role == "ASYNC_MASTER" and c.flush_disk_type == "ASYNC_FLUSH" and c.delete_when == "04"
    s = BrokerConfig.load(str(REPO / "conf" / "2m-2s-sync" / "broker-b-s.properties"))
    assert (s.broker_name, s.broker_id, s.broker_role, s.is_slave) == ("broker-b", 1, "SLAVE", True)
    m = BrokerConfig.load(str(REPO / "conf" / "2m-2s-sync" / "broker-a.properties"))
    assert m.broker_role == "SYNC_MASTER"


def test_keys_read_but_not_acted_on_are_said_so(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    p = tmp_path / "b.conf"
    p.write_text("enableActingMaster=true\nfilterSupportRetry=true\n")
    BrokerConfig.load(str(p))
    assert "enableActingMaster=true is not used" in caplog.text
    assert "filterSupportRetry=true is not used" in caplog.text
    caplog.clear()
    p.write_text("enableActingMaster=false\n")
    BrokerConfig.load(str(p))
    assert "not used" not in caplog.text


def test_keys_types_namesrv_precedence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    p = tmp_path / "b.conf"
    p.write_text("brokerIP1=10.0.0.5\nlistenPort=20911\nautoCreateTopicEnable=false\nnamesrvAddr=f:1\n"
                 f"storePathRootDir={tmp_path}/s\nmappedFileSizeConsumeQueue=6000\nunknownKey=1\n"
                 "storePathCommitLog=/data/rocketmq/commitlog\n")
    monkeypatch.setenv("NAMESRV_ADDR", "env:9876")
    c = BrokerConfig.load(str(p))
    assert c.namesrv_addr == "f:1" and c.broker_addr == "10.0.0.5:20911" and c.ha_server_addr == "10.0.0.5:20912"
    assert c.auto_create_topic_enable is False and c.extra == {"unknownKey": "1"}
    assert c.store_config().mapped_file_size_consume_queue == 6000
    assert c.store_config().store_host == ("10.0.0.5", 20911)
    assert c.store_config().store_path_commit_log == "/data/rocketmq/commitlog"
    assert BrokerConfig.load(str(p), "cli:9876;cli2:9876").namesrv_addr_list == ["cli:9876", "cli2:9876"]
    p.write_text("")
    assert BrokerConfig.load(str(p)).namesrv_addr == "env:9876"


def test_bad_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        BrokerConfig.load(str(tmp_path / "missing.conf"))
    p = tmp_path / "b.conf"
    p.write_text("listenPort=abc\n")
    with pytest.raises(ConfigError, match="listenPort"):
        BrokerConfig.load(str(p))
    p.write_text("autoCreateTopicEnable=maybe\n")
    with pytest.raises(ConfigError, match="autoCreateTopicEnable"):
        BrokerConfig.load(str(p))
    p.write_text("flushDiskType=SOMETIMES\n")
    with pytest.raises(ConfigError, match="flushDiskType"):
        BrokerConfig.load(str(p))
    (tmp_path / "conf").mkdir()
    (tmp_path / "conf" / "x.conf").write_text("brokerName=from-home\n")
    monkeypatch.setenv("ROCKETMQ_HOME", str(tmp_path))
    monkeypatch.chdir(tmp_path / "conf")
    assert BrokerConfig.load("conf/x.conf").broker_name == "from-home"


def test_remoting_acl_signature_and_decisions():
    from backends.acl import (
        SessionCredentials,
        parse_plain_acl,
        remoting_content,
        sign_remoting,
        sign_request,
    )
    from backends.broker.acl import RemotingAccessValidator
    from backends.remoting.codes import RequestCode, ResponseCode
    from backends.remoting.command import RemotingCommand

    f = {"b": "T", "a": "1", "AccessKey": "ak"}
    assert remoting_content(f, b"xyz") == b"ak1Txyz"  # values in key order, then the body
    # printf ak1Txyz | openssl dgst -sha1 -hmac sk -binary | base64
    assert sign_remoting("sk", b"ak1Txyz") == "LYVz3MYh0Hczk8/haDL6fnLn0Gs="
    acl = RemotingAccessValidator(parse_plain_acl({"accounts": [
        {"accessKey": "app", "secretKey": "s", "defaultTopicPerm": "DENY", "defaultGroupPerm": "SUB",
         "topicPerms": ["T=PUB"], "groupPerms": ["G2=DENY"]}]}))

    def check(code: int, fields: dict[str, str], body: bytes = b"", creds: SessionCredentials | None = None,
              peer: str = "127.0.0.1:5000") -> int:
        cmd = RemotingCommand.request(code, dict(fields), body)
        if creds:
            sign_request(cmd.ext_fields, cmd.body, creds)
        r = acl.check(cmd, peer)
        return ResponseCode.SUCCESS if r is None else r.code

    app = SessionCredentials("app", "s")
    assert check(RequestCode.SEND_MESSAGE_V2, {"a": "g", "b": "T"}, b"body", app) == ResponseCode.SUCCESS
    assert check(RequestCode.SEND_MESSAGE_V2, {"a": "g", "b": "U"}, b"body", app) == ResponseCode.NO_PERMISSION
    assert check(RequestCode.SEND_MESSAGE_V2, {"a": "g", "b": "T"}, b"body",
                 SessionCredentials("app", "bad")) == ResponseCode.NO_PERMISSION
    assert check(RequestCode.SEND_MESSAGE_V2, {"a": "g", "b": "T"}, b"body") == ResponseCode.NO_PERMISSION
    assert check(RequestCode.UPDATE_AND_CREATE_TOPIC, {"topic": "T"}, b"", app) == ResponseCode.NO_PERMISSION
    hb = b'{"clientID":"c","consumerDataSet":[{"groupName":"G2","subscriptionDataSet":[{"topic":"T"}]}]}'
    assert check(RequestCode.HEART_BEAT, {}, hb, app) == ResponseCode.NO_PERMISSION  # group G2 DENY
    assert check(RequestCode.HEART_BEAT, {}, b"{not json", app) == ResponseCode.NO_PERMISSION  # no crash
    # a tampered body no longer matches the signature
    cmd = RemotingCommand.request(RequestCode.SEND_MESSAGE_V2, {"a": "g", "b": "T"}, b"body")
    sign_request(cmd.ext_fields, cmd.body, app)
    cmd.body = b"other"
    assert acl.check(cmd, "127.0.0.1:1") is not None
