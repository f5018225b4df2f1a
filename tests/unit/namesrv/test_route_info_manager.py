from __future__ import annotations

from backends.model import Perm, TopicConfig
from backends.namesrv.route_info_manager import DataVersion, RouteInfoManager


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def topics(**queues: int) -> dict[str, TopicConfig]:
    return {t: TopicConfig(t, n, n) for t, n in queues.items()}


def test_register_route_and_data_version() -> None:
    clock = Clock()
    rim = RouteInfoManager(120_000, clock)
    rim.register_broker("C", "h:1", "b1", 0, "h:2", topics(T=4), DataVersion(1, 1))
    route = rim.pickup_topic_route_data("T")
    assert route is not None and route.queue_datas[0].read_queue_nums == 4
    assert route.broker_datas[0].broker_addrs == {0: "h:1"}
    # same data version: topic configs are not re-read
    rim.register_broker("C", "h:1", "b1", 0, "h:2", topics(T=8), DataVersion(1, 1))
    assert rim.pickup_topic_route_data("T").queue_datas[0].read_queue_nums == 4  # type: ignore[union-attr]
    rim.register_broker("C", "h:1", "b1", 0, "h:2", topics(T=8), DataVersion(1, 2))
    assert rim.pickup_topic_route_data("T").queue_datas[0].read_queue_nums == 8  # type: ignore[union-attr]
    # slaves don't change queue data but learn the master
    res = rim.register_broker("C", "h:3", "b1", 1, "h:4", topics(T=2, S=2), DataVersion(5, 5))
    assert res.master_addr == "h:1" and res.ha_server_addr == "h:2"
    assert rim.pickup_topic_route_data("S") is None
    assert rim.get_all_cluster_info()["brokerAddrTable"]["b1"]["brokerAddrs"] == {"0": "h:1", "1": "h:3"}
    # a slave promoted: its address moves to id 0
    rim.unregister_broker("C", "h:1", "b1", 0)
    rim.register_broker("C", "h:3", "b1", 0, "h:4", topics(T=2), DataVersion(6, 6))
    assert rim.get_all_cluster_info()["brokerAddrTable"]["b1"]["brokerAddrs"] == {"0": "h:3"}


def test_expiry_and_channel_destroy() -> None:
    clock = Clock()
    rim = RouteInfoManager(120_000, clock)
    ch = object()
    rim.register_broker("C", "h:1", "b1", 0, "", topics(T=1), DataVersion(1, 1), channel=None,
                        heartbeat_timeout_ms=1000)
    rim.register_broker("C", "h:5", "b2", 0, "", topics(T=1, U=1), DataVersion(1, 1), channel=ch)
    clock.t += 0.9
    assert rim.scan_not_active_broker() == []
    clock.t += 0.2
    assert [i.broker_addr for i in rim.scan_not_active_broker()] == ["h:1"]
    route = rim.pickup_topic_route_data("T")
    assert route is not None and [q.broker_name for q in route.queue_datas] == ["b2"]
    rim.on_channel_destroy(ch)
    assert rim.pickup_topic_route_data("T") is None and rim.get_all_topic_list() == []
    assert rim.get_all_cluster_info() == {"brokerAddrTable": {}, "clusterAddrTable": {}}


def test_topics_by_cluster_delete_and_wipe() -> None:
    rim = RouteInfoManager()
    rim.register_broker("C1", "h:1", "b1", 0, "", topics(T=1, A=1), DataVersion(1, 1))
    rim.register_broker("C2", "h:2", "b2", 0, "", topics(T=1, B=1), DataVersion(1, 1))
    assert rim.get_topics_by_cluster("C1") == ["A", "T"]
    rim.delete_topic("T", "C1")
    assert [q.broker_name for q in rim.pickup_topic_route_data("T").queue_datas] == ["b2"]  # type: ignore[union-attr]
    assert rim.wipe_write_perm_of_broker("b2") == 2
    assert rim.pickup_topic_route_data("B").queue_datas[0].perm == Perm.READ  # type: ignore[union-attr]
    rim.delete_topic("T")
    assert rim.pickup_topic_route_data("T") is None
