"""Every request code the broker serves answers random headers and bodies with a response over a real
connection, and logs no error: a bad request is refused with its code, never an unexpected exception
(which the remoting server would answer SYSTEM_ERROR and log with its traceback)."""

from __future__ import annotations

import logging
import os
import random

import pytest

from backends.broker.controller import BrokerController
from backends.model import TopicConfig
from backends.remoting.client import RemotingClient
from backends.remoting.codes import RequestCode
from backends.remoting.command import RemotingCommand

pytestmark = pytest.mark.timeout(300)

NUMBERS = ["0", "1", "-1", "7", "2147483648", "99999999999999999999", "-99999999999", "x", ""]
NAMES = ["TopicF", "GroupF", "%RETRY%GroupF", "%DLQ%GroupF", "broker-a", "TBW102", "SCHEDULE_TOPIC_XXXX", "",
         " ", "x" * 300, "a/b", "\x01"]
TEXT = ["*", "TagA || TagB", "a > 1", "(a", "TAG", "SQL92", "\x01\x02", "ü", "0 1 2 3 4 5 6 7",
        "1 1764115200000 30000 0 0 broker-a 0 0 0", "UNIQ_KEY\x01k\x02TAGS\x01TagA\x02", "+message.type=FIFO",
        "CONSUME_FROM_FIRST_OFFSET", "x" * 300, "", "127.0.0.1:10911"]
BOOLS = ["true", "false", "x"]
# header fields of the broker's request codes, each with the values worth trying for it
FIELDS: dict[str, list[str]] = {
    **{f: NAMES for f in ("topic", "group", "consumerGroup", "producerGroup", "brokerName", "bname",
                          "defaultTopic", "originTopic", "a", "b")},
    # long-poll times: small (the processors clamp large ones to their maximum, which a test cannot wait for)
    **{f: ["0", "1", "-1", "200", "x", ""] for f in ("pollTime", "suspendTimeoutMillis")},
    **{f: NUMBERS for f in ("queueId", "queueOffset", "maxMsgNums", "sysFlag", "commitOffset", "subVersion", "offset", "timestamp", "bornTimestamp", "flag",
                            "reconsumeTimes", "maxReconsumeTimes", "invisibleTime", "bornTime",
                            "initMode", "maxNum", "beginTimestamp", "endTimestamp", "tranStateTableOffset",
                            "commitLogOffset", "commitOrRollback", "defaultTopicQueueNums", "readQueueNums",
                            "writeQueueNums", "perm", "lockTime", "ackOffset", "delayLevel", "c", "d", "e", "f",
                            "g", "j", "l")},
    **{f: BOOLS for f in ("unitMode", "batch", "order", "fromTransactionCheck", "k", "m", "n")},
    **{f: TEXT for f in ("subscription", "expressionType", "properties", "extraInfo", "msgId", "key",
                         "attributes", "consumeFromWhere", "clientId", "topicFilterType", "originMsgId", "uniqKey",
                         "transactionId", "h", "i")},
}
BODIES = [b"", b"{}", b"[]", b"null", b"x", b"\x00" * 16, b'{"offsetTable":{}}', b'{"topicConfigTable":{"T":{}}}',
          b'{"mqSet":[{"topic":"TopicF","brokerName":"broker-a","queueId":0}]}', b'{"clientID":"c","consumerDataSet":[{}]}',
          b'{"groupName":"GroupF","consumeFromWhere":"x"}', b"flushDiskType=x\nlistenPort=-1", b'{"a":']


@pytest.mark.parametrize("seed", [int(s) for s in os.environ.get("FUZZ_SEEDS", "1,2").split(",")])
async def test_random_requests_to_every_code_get_a_response(broker: BrokerController, client: RemotingClient,
                                                            caplog: pytest.LogCaptureFixture, seed: int) -> None:
    broker.topic_config_manager.update_topic_config(TopicConfig("TopicF", 4, 4))
    assert broker.remoting_server is not None
    codes = broker.remoting_server.request_codes
    caplog.set_level(logging.ERROR)
    rnd = random.Random(seed)
    problems = []
    for code in codes:
        for _ in range(40):
            if rnd.random() < 0.3:  # a few random fields
                names = rnd.sample(sorted(FIELDS), rnd.randrange(0, 10))
            else:  # every field, so that the processors get past their required-field checks
                names = list(FIELDS)
            ext = {f: rnd.choice(FIELDS[f]) for f in names}
            body = rnd.choice(BODIES) if rnd.random() < 0.8 else rnd.randbytes(rnd.randrange(1, 200))
            req = RemotingCommand.request(code, ext, body)
            if code == RequestCode.END_TRANSACTION and ext.get("commitOrRollback") == "0":
                # state unknown: answered by nothing (RocketMQ's EndTransactionProcessor returns null;
                # producers send END_TRANSACTION oneway)
                await client.invoke_oneway(broker.broker_addr, req)
                continue
            try:
                resp = await client.invoke(broker.broker_addr, req, 5.0)
            except Exception as e:  # noqa: BLE001 -- the broker did not answer
                problems.append(f"code {code}: {type(e).__name__}: {e}")
                continue
            if not resp.is_response:
                problems.append(f"code {code}: not a response")
    problems += [f"logged: {r.getMessage()}" for r in caplog.records if r.levelno >= logging.ERROR]
    assert not problems, "\n".join(sorted(set(problems))[:30])
