"""proxy.acl: plain_acl.yml parsing, address patterns, signatures and permission decisions."""

from __future__ import annotations

import pytest

from backends.acl import DENY, PUB, SUB, AclConfigError, address_matches, parse_plain_acl
from backends.acl import sign_hex as sign
from protos.apache.rocketmq.v2 import definition_pb2 as pb
from protos.apache.rocketmq.v2 import service_pb2 as spb
from proxy.acl import AclError, PlainAccessValidator, parse_authorization, resources_of

CONFIG = {
    "globalWhiteRemoteAddresses": ["10.10.103.*"],
    "accounts": [
        {"accessKey": "app", "secretKey": "sk", "defaultTopicPerm": "DENY", "defaultGroupPerm": "SUB",
         "topicPerms": ["pubsub=PUB|SUB", "subonly=SUB", "denied=DENY"], "groupPerms": ["gdeny=DENY"]},
        {"accessKey": "ops", "secretKey": "ops-sk", "admin": True},
        {"accessKey": "lan", "secretKey": "x", "whiteRemoteAddress": "192.168.1.{1,2},192.168.2.10-20"},
    ],
}


def md(ak: str, sk: str, when: str = "20261126T120000Z") -> dict[str, str]:
    return {"x-mq-date-time": when,
            "authorization": f"MQv2-HMAC-SHA1 Credential={ak}, SignedHeaders=x-mq-date-time, Signature={sign(sk, when)}"}


def check(ip: str, meta: dict[str, str], resources: list) -> int:
    try:
        PlainAccessValidator(parse_plain_acl(CONFIG)).validate(ip, meta, resources)
    except AclError as e:
        return int(e.code)
    return 0


def test_signature_is_hmac_sha1_hex_of_the_date_time():
    # printf 20221110T104405Z | openssl dgst -sha1 -hmac 12345678
    assert sign("12345678", "20221110T104405Z") == "4a75e0eae88c57a0d4617a278f36d8dcb115f9b7"


@pytest.mark.parametrize("pattern, ip, ok", [
    ("*", "1.2.3.4", True), ("10.10.103.*", "10.10.103.7", True), ("10.10.103.*", "10.10.104.7", False),
    ("192.168.1.{1,2}", "192.168.1.2", True), ("192.168.1.{1,2}", "192.168.1.3", False),
    ("192.168.2.10-20", "192.168.2.20", True), ("192.168.2.10-20", "192.168.2.21", False),
    ("1.1.1.1,2.2.2.2", "2.2.2.2", True), ("10.0.0.*", "::1", False), ("*", "::1", True),
])
def test_address_patterns(pattern, ip, ok):
    assert address_matches(pattern, ip) is ok


def test_decisions():
    ok, unauthorized, forbidden = 0, int(pb.Code.UNAUTHORIZED), int(pb.Code.FORBIDDEN)
    assert check("127.0.0.1", md("app", "sk"), [("pubsub", False, PUB), ("g", True, SUB)]) == ok
    assert check("127.0.0.1", md("app", "sk"), [("subonly", False, PUB)]) == forbidden
    assert check("127.0.0.1", md("app", "sk"), [("subonly", False, SUB)]) == ok
    assert check("127.0.0.1", md("app", "sk"), [("denied", False, SUB)]) == forbidden
    assert check("127.0.0.1", md("app", "sk"), [("other", False, SUB)]) == forbidden  # defaultTopicPerm DENY
    assert check("127.0.0.1", md("app", "sk"), [("gdeny", True, SUB)]) == forbidden
    assert check("127.0.0.1", md("app", "wrong"), []) == unauthorized
    assert check("127.0.0.1", md("nobody", "sk"), []) == unauthorized
    assert check("127.0.0.1", {}, []) == unauthorized
    assert check("127.0.0.1", md("ops", "ops-sk"), [("denied", False, PUB)]) == ok  # admin
    assert check("10.10.103.9", {}, [("denied", False, PUB)]) == ok  # global white list
    assert check("192.168.1.1", md("lan", "not-checked"), [("denied", False, PUB)]) == ok  # account's list


def test_authorization_headers_of_each_sdk():
    when = "20261126T120000Z"
    sig = sign("sk", when)
    go = f"MQv2-HMAC-SHA1 Credential=app//Rocketmq, SignedHeaders=x-mq-date-time, Signature={sig}"
    assert parse_authorization(go) == ("app", sig)  # Go SDK (client.go): <ak>/<namespace>/Rocketmq
    assert parse_authorization(md("app", "sk")["authorization"]) == ("app", sig)  # Java, Python, Node
    assert parse_authorization("MQv2-HMAC-SHA1 Credential=, SignedHeaders=x-mq-date-time, Signature=") == ("", "")
    assert parse_authorization("") == (None, "")
    assert check("127.0.0.1", {"x-mq-date-time": when, "authorization": go}, [("pubsub", False, PUB)]) == 0
    bad = go.replace("Credential=app", "Credential=nobody")
    assert check("127.0.0.1", {"x-mq-date-time": when, "authorization": bad}, []) == int(pb.Code.UNAUTHORIZED)


def test_resources_of_each_rpc():
    send = spb.SendMessageRequest()
    send.messages.add().topic.name = "T"
    assert resources_of("SendMessage", send) == [("T", False, PUB)]
    recv = spb.ReceiveMessageRequest()
    recv.group.name, recv.message_queue.topic.name = "G", "T"
    assert resources_of("ReceiveMessage", recv) == [("G", True, SUB), ("T", False, SUB)]
    ack = spb.AckMessageRequest()
    ack.group.name, ack.topic.name = "G", "T"
    assert resources_of("AckMessage", ack) == [("G", True, SUB), ("T", False, SUB)]
    assert resources_of("Heartbeat", spb.HeartbeatRequest()) == []
    assert resources_of("QueryRoute", spb.QueryRouteRequest()) == []


@pytest.mark.parametrize("data, error", [
    ([], "expected a mapping"),
    ({"accounts": [{"accessKey": "a"}]}, "needs accessKey and secretKey"),
    ({"accounts": [{"accessKey": "a", "secretKey": "b", "defaultTopicPerm": "ALL"}]}, "permission 'ALL'"),
    ({"accounts": [{"accessKey": "a", "secretKey": "b", "topicPerms": ["T"]}]}, "is not name=PERM"),
    ({"accounts": [{"accessKey": "a", "secretKey": "b", "whiteRemoteAddress": "10.0.*"}]}, "not an address"),
    ({"accounts": [{"accessKey": "a", "secretKey": "b"}, {"accessKey": "a", "secretKey": "c"}]}, "appears twice"),
])
def test_bad_files_name_the_entry(data, error):
    with pytest.raises(AclConfigError, match=error):
        parse_plain_acl(data)


def test_perm_values():
    acc = parse_plain_acl(CONFIG).accounts["app"]
    assert acc.topic_perms == {"pubsub": PUB | SUB, "subonly": SUB, "denied": DENY} and acc.default_group_perm == SUB


ACL_YML = """\
accounts:
  - accessKey: app
    secretKey: sk
    defaultTopicPerm: SUB
    topicPerms:
      - T=PUB|SUB
"""


async def test_codes_on_the_wire(tmp_path, monkeypatch):
    import grpc

    from protos.apache.rocketmq.v2 import service_pb2_grpc
    from proxy.config import ProxyConfig
    from proxy.server import ProxyServer
    from tests.unit.proxy.fake_backend import FakeBackend

    (tmp_path / "conf").mkdir()
    (tmp_path / "conf" / "plain_acl.yml").write_text(ACL_YML)
    monkeypatch.setenv("ROCKETMQ_HOME", str(tmp_path))
    backend = FakeBackend(brokers=("broker-a",))
    backend.add_topic("T")
    backend.add_topic("U")
    server = ProxyServer(ProxyConfig(grpc_server_port=0, grpc_bind_address="127.0.0.1", enable_acl=True), backend)
    await server.start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{server.port}")
    stub = service_pb2_grpc.MessagingServiceStub(channel)

    def meta(sk: str) -> tuple[tuple[str, str], ...]:
        return (("x-mq-client-id", "c1"), *md("app", sk).items())

    def send(topic: str) -> spb.SendMessageRequest:
        req = spb.SendMessageRequest()
        m = req.messages.add(body=b"x")
        m.topic.name = topic
        m.system_properties.message_id = "01" * 17
        m.system_properties.message_type = pb.MessageType.NORMAL
        m.system_properties.body_encoding = pb.Encoding.IDENTITY
        return req

    try:
        r = await stub.SendMessage(send("T"), metadata=meta("sk"))
        assert r.status.code == pb.Code.OK, r
        r = await stub.SendMessage(send("U"), metadata=meta("sk"))
        assert r.status.code == pb.Code.FORBIDDEN and "PUB permission on topic U" in r.status.message
        r = await stub.SendMessage(send("T"), metadata=meta("wrong"))
        assert r.status.code == pb.Code.UNAUTHORIZED
        q = spb.QueryRouteRequest()
        q.topic.name = "T"
        assert (await stub.QueryRoute(q, metadata=(("x-mq-client-id", "c1"),))).status.code == pb.Code.UNAUTHORIZED
        recv = spb.ReceiveMessageRequest(batch_size=1)
        recv.group.name, recv.message_queue.topic.name = "G", "T"
        got = [x async for x in stub.ReceiveMessage(recv, metadata=meta("wrong"))]
        assert [x.status.code for x in got] == [pb.Code.UNAUTHORIZED]
        call = stub.Telemetry(metadata=meta("wrong"))
        await call.write(spb.TelemetryCommand())
        with pytest.raises(grpc.aio.AioRpcError) as e:
            await call.read()
        assert e.value.code() == grpc.StatusCode.UNAUTHENTICATED
    finally:
        await channel.close()
        await server.shutdown(0)


def test_plain_acl_file_is_reloaded_when_it_changes(tmp_path, caplog):
    from backends.acl import PlainAclFile

    path = tmp_path / "plain_acl.yml"
    path.write_text("accounts:\n  - accessKey: a\n    secretKey: s\n")
    now = [0.0]
    src = PlainAclFile(path, check_interval=1.0, clock=lambda: now[0])
    v = PlainAccessValidator(src)
    v.validate("127.0.0.1", md("a", "s"), [])
    path.write_text("accounts:\n  - accessKey: b\n    secretKey: t\n    admin: true\n")
    v.validate("127.0.0.1", md("a", "s"), [])  # not looked at again within the interval
    now[0] = 1.5
    v.validate("127.0.0.1", md("b", "t"), [("any", False, PUB)])  # the new account, at once after it
    with pytest.raises(AclError):
        v.validate("127.0.0.1", md("a", "s"), [])
    path.write_text("accounts: [oops")  # a broken edit keeps the accounts in force
    now[0] = 3.0
    v.validate("127.0.0.1", md("b", "t"), [])
    assert "the 1 account(s) loaded before stay in force" in caplog.text
