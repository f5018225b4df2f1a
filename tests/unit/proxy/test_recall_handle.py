"""The proxy finds a recall handle's broker in the handle the broker's timer builds."""

from __future__ import annotations

from backends.broker.timer.recall_handle import build_handle
from proxy.service import _broker_of_recall_handle


def test_broker_of_recall_handle_reads_the_brokers_format() -> None:
    h = build_handle("TopicT", "broker-b", "1700000000000", "0102ABCD")
    assert _broker_of_recall_handle(h) == "broker-b"
    assert _broker_of_recall_handle(h.rstrip("=")) == "broker-b"
    assert _broker_of_recall_handle("v1 abc") is None
    assert _broker_of_recall_handle("not base64 !!") is None
