"""PullMessage, QueryOffset, UpdateOffset, GetOffset, ForwardMessageToDeadLetterQueue and RecallMessage
through mqproxy (embedded and Cluster mode) with our own stubs."""

from __future__ import annotations

import asyncio

import grpc
import pytest

from protos.apache.rocketmq.v2 import definition_pb2 as pb
from protos.apache.rocketmq.v2 import service_pb2 as spb
from protos.apache.rocketmq.v2 import service_pb2_grpc
from tests.e2e.proxy_stack import EARLIEST, stack

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]
C = pb.Code
MD = (("x-mq-client-id", "pull-test"),)


async def _drive(endpoint: str) -> dict:
    out: dict = {}
    async with grpc.aio.insecure_channel(endpoint) as ch:
        stub = service_pb2_grpc.MessagingServiceStub(ch)
        req = spb.QueryRouteRequest()
        req.topic.name = "TopicPull"
        route = await stub.QueryRoute(req, metadata=MD, timeout=10)
        assert route.status.code == C.OK
        for i in range(3):
            m = pb.Message(body=f"pull-{i}".encode())
            m.topic.name = "TopicPull"
            m.system_properties.message_id = f"PULL{i:04d}"
            m.system_properties.tag = "TagP"
            r = await stub.SendMessage(spb.SendMessageRequest(messages=[m]), metadata=MD, timeout=10)
            assert r.status.code == C.OK, r.status
        # find the queues holding them
        pulled = []
        for mq in route.message_queues:
            qo = spb.QueryOffsetRequest(message_queue=mq, query_offset_policy=pb.QueryOffsetPolicy.END)
            end = await stub.QueryOffset(qo, metadata=MD, timeout=10)
            assert end.status.code == C.OK, end.status
            if end.offset == 0:
                continue
            qo.query_offset_policy = pb.QueryOffsetPolicy.BEGINNING
            begin = await stub.QueryOffset(qo, metadata=MD, timeout=10)
            pr = spb.PullMessageRequest(message_queue=mq, offset=begin.offset, batch_size=16)
            pr.group.name = "GroupPull"
            pr.filter_expression.expression = "*"
            pr.long_polling_timeout.seconds = 1
            next_offset = None
            async for resp in stub.PullMessage(pr, metadata=MD, timeout=10):
                if resp.HasField("message"):
                    pulled.append(resp.message.body.decode())
                elif resp.HasField("next_offset"):
                    next_offset = resp.next_offset
            assert next_offset == end.offset
            uo = spb.UpdateOffsetRequest(message_queue=mq, offset=next_offset)
            uo.group.name = "GroupPull"
            assert (await stub.UpdateOffset(uo, metadata=MD, timeout=10)).status.code == C.OK
            go = spb.GetOffsetRequest(message_queue=mq)
            go.group.name = "GroupPull"
            got = await stub.GetOffset(go, metadata=MD, timeout=10)
            assert (got.status.code, got.offset) == (C.OK, next_offset)
        out["pulled"] = sorted(pulled)
        # POP one and send it to the DLQ at once
        rr = spb.ReceiveMessageRequest(batch_size=1)
        rr.group.name = "GroupPop"  # (GroupPull's offsets were moved to the end above)
        rr.filter_expression.expression = "*"
        rr.invisible_duration.seconds = 30
        rr.long_polling_timeout.seconds = 5
        handle = None
        for mq in {q.broker.name: q for q in route.message_queues}.values():
            rr.message_queue.CopyFrom(mq)
            async for resp in stub.ReceiveMessage(rr, metadata=MD, timeout=10):
                if resp.HasField("message"):
                    handle = resp.message.system_properties.receipt_handle
                    mid = resp.message.system_properties.message_id
            if handle:
                break
        assert handle
        dl = spb.ForwardMessageToDeadLetterQueueRequest(receipt_handle=handle, message_id=mid,
                                                        delivery_attempt=1, max_delivery_attempts=16)
        dl.group.name, dl.topic.name = "GroupPop", "TopicPull"
        out["dlq"] = (await stub.ForwardMessageToDeadLetterQueue(dl, metadata=MD, timeout=10)).status.code
        rc = spb.RecallMessageRequest(recall_handle="v1 bm90LWEtaGFuZGxl")
        rc.topic.name = "TopicPull"
        out["recall"] = (await stub.RecallMessage(rc, metadata=MD, timeout=10)).status.code
    return out


@pytest.mark.parametrize("mode", ["embedded", "cluster"])
def test_pull_offsets_dlq_recall(mode, tmp_path):
    with stack(mode, tmp_path) as st:
        st.create_topic("TopicPull")
        st.create_group("GroupPull", *EARLIEST)
        st.create_group("GroupPop", *EARLIEST)
        out = asyncio.run(_drive(st.endpoint))
        assert out["pulled"] == ["pull-0", "pull-1", "pull-2"]
        assert out["dlq"] == C.OK
        assert out["recall"] != C.OK and out["recall"] != C.INTERNAL_SERVER_ERROR, out
