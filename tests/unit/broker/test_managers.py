"""Topic / subscription group / consumer offset managers: system topics, persistence, retry and DLQ."""

from __future__ import annotations

import json
from pathlib import Path

from backends.broker.broker_config import BrokerConfig
from backends.broker.consumer_offset_manager import ConsumerOffsetManager
from backends.broker.controller import BrokerController
from backends.broker.subscription_group_manager import SubscriptionGroupManager
from backends.broker.topic_config_manager import TopicConfigManager, parse_attributes, validate_topic_name
from backends.model import Message, Perm, TopicConfig
from backends.store.record import decode_records


def test_system_topics_and_persistence(tmp_path: Path) -> None:
    cfg = BrokerConfig(store_path_root_dir=str(tmp_path))
    tcm = TopicConfigManager(cfg)
    t = tcm.topic_config_table
    assert t["TBW102"].perm == Perm.INHERIT | Perm.READ_WRITE and t["TBW102"].write_queue_nums == 8
    assert "DefaultCluster" in t and "broker-a" in t and "SCHEDULE_TOPIC_XXXX" in t
    assert "RMQ_SYS_TRANS_HALF_TOPIC" in t and "rmq_sys_wheel_timer" in t
    tcm.update_topic_config(TopicConfig("Fifo", 4, 4, attributes={"message.type": "FIFO"}))
    data = json.loads((tmp_path / "config" / "topics.json").read_text())
    assert data["topicConfigTable"]["Fifo"]["attributes"] == {"message.type": "FIFO"}
    assert data["dataVersion"]["counter"] >= 1
    again = TopicConfigManager(cfg)
    again.load()
    assert again.select_topic_config("Fifo") == tcm.select_topic_config("Fifo")
    assert again.select_topic_config("Fifo").message_type.value == "FIFO"  # type: ignore[union-attr]
    assert again.data_version.counter == tcm.data_version.counter


def test_attributes_and_names() -> None:
    assert parse_attributes("+message.type=FIFO,-x") == ({"message.type": "FIFO"}, {"x"})
    assert validate_topic_name("ok_Topic-1%|") is None
    assert validate_topic_name("a" * 128) and validate_topic_name("sp ace") and validate_topic_name("")


def test_groups_and_offsets(tmp_path: Path) -> None:
    cfg = BrokerConfig(store_path_root_dir=str(tmp_path))
    sgm = SubscriptionGroupManager(cfg)
    assert sgm.find_subscription_group_config("G") is not None
    cfg.auto_create_subscription_group = False
    assert sgm.find_subscription_group_config("H") is None
    again = SubscriptionGroupManager(cfg)
    again.load()
    assert again.get("G") is not None
    com = ConsumerOffsetManager(cfg)
    com.commit_offset("h", "G", "T", 3, 42)
    com.persist()
    again2 = ConsumerOffsetManager(cfg)
    again2.load()
    assert again2.query_offset("G", "T", 3) == 42 and again2.query_offset("G", "T", 0) == -1


async def test_send_back_retry_then_dlq(broker: BrokerController) -> None:
    r = await broker.send_messages([Message("RT", b"body", {"UNIQ_KEY": "R1"}, queue_id=0)])
    off = r.results[0].commitlog_offset
    r2 = await broker.consumer_send_msg_back("RG", off, 0, "R1", "RT")
    assert r2.ok
    retry = broker.topic_config_manager.select_topic_config("%RETRY%RG")
    assert retry is not None and retry.read_queue_nums == 1
    # the retry message is delayed (level 3) by the timer service when present
    r3 = await broker.consumer_send_msg_back("RG", off, -1, "R1", "RT")
    assert r3.ok
    dlq = broker.topic_config_manager.select_topic_config("%DLQ%RG")
    assert dlq is not None and dlq.read_queue_nums == 1
    got = broker.message_store.get_messages("%DLQ%RG", 0, 0, 10)
    msgs = decode_records(b"".join(got.records))
    assert msgs[0].body == b"body" and msgs[0].properties["RETRY_TOPIC"] == "RT"
    assert msgs[0].reconsume_times == 1 and msgs[0].properties["ORIGIN_MESSAGE_ID"] == "R1"


def test_consumer_expiry_without_heartbeat() -> None:
    import time

    from backends.broker.client_manager import ClientChannelInfo, ConsumerManager, SubscriptionData

    cm = ConsumerManager()
    conn = object()
    info = ClientChannelInfo("c1", "1.2.3.4:5", "JAVA", 1, conn)
    assert cm.register_consumer("G", info, "CONSUME_PASSIVELY", "CLUSTERING", "CONSUME_FROM_LAST_OFFSET",
                                [SubscriptionData("T")])
    assert not cm.register_consumer("G", ClientChannelInfo("c1", "1.2.3.4:5", "JAVA", 1, conn),
                                    "CONSUME_PASSIVELY", "CLUSTERING", "CONSUME_FROM_LAST_OFFSET", [])
    assert cm.scan_not_active(120) == []
    info.last_update = time.time() - 200
    assert cm.scan_not_active(120) == ["G"] and cm.get("G") is None


def test_allocate_average() -> None:
    from backends.broker.processor.client_processor import allocate_average

    q = list(range(8))
    assert allocate_average(q, ["a", "b", "c"], "a") == [0, 1, 2]
    assert allocate_average(q, ["a", "b", "c"], "b") == [3, 4, 5]
    assert allocate_average(q, ["a", "b", "c"], "c") == [6, 7]
    assert allocate_average([0, 1], ["a", "b", "c"], "c") == []
    assert allocate_average(q, ["a"], "z") == []


async def test_restart_keeps_topics_groups_offsets_messages(tmp_path: Path) -> None:
    from backends.model import SubscriptionGroupConfig

    def make() -> BrokerController:
        return BrokerController(BrokerConfig(store_path_root_dir=str(tmp_path), listen_port=0,
                                             mapped_file_size_commit_log=4 * 1024 * 1024))

    b = make()
    await b.start()
    b.create_topic(TopicConfig("KeepT", 2, 2, attributes={"message.type": "DELAY"}))
    b.update_subscription_group(SubscriptionGroupConfig("KeepG", retry_max_times=5))
    await b.send_messages([Message("KeepT", b"kept", {"UNIQ_KEY": "K"}, queue_id=1)])
    b.update_consumer_offset("KeepG", "KeepT", 1, 1)
    await b.shutdown()

    b = make()
    await b.start()
    try:
        tc = b.topic_config_manager.select_topic_config("KeepT")
        assert tc is not None and tc.read_queue_nums == 2 and tc.attributes == {"message.type": "DELAY"}
        sg = b.subscription_group_manager.get("KeepG")
        assert sg is not None and sg.retry_max_times == 5
        assert b.query_consumer_offset("KeepG", "KeepT", 1) == 1
        assert b.get_max_offset("KeepT", 1) == 1
        out = await b.pull_message("KeepG", "KeepT", 1, 0, 32)
        assert [m.body for m in decode_records(b"".join(out.records))] == [b"kept"]
    finally:
        await b.shutdown()


def test_subscription_data_of_an_expression() -> None:
    from backends.broker.client_manager import SubscriptionData
    from backends.broker.filter.message_filter import tags_hash

    tag = SubscriptionData.of("T", "TAG", " a || b ||")
    assert (tag.sub_string, tag.tags_set, tag.code_set) == ("a || b ||", ["a", "b"], [tags_hash("a"), tags_hash("b")])
    every = SubscriptionData.of("T", "", "")
    assert (every.expression_type, every.sub_string, every.tags_set, every.code_set) == ("TAG", "*", [], [])
    sql = SubscriptionData.of("T", "sql92", "a > 1")
    assert (sql.expression_type, sql.sub_string, sql.tags_set) == ("SQL92", "a > 1", [])
