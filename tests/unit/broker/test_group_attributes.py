"""Subscription group attributes are altered, not replaced, by an update (+k=v sets, -k removes)."""

from __future__ import annotations

from backends.broker.subscription_group_manager import alter_attributes


def test_alter_attributes() -> None:
    cur = {"consumeFromWhere": "TIMESTAMP", "consumeTimestamp": "5"}
    assert alter_attributes(cur, {}) == cur
    assert alter_attributes(cur, {"+consumeFromWhere": "EARLIEST", "-consumeTimestamp": ""}) == {
        "consumeFromWhere": "EARLIEST"}
    assert alter_attributes({}, {"k": "v"}) == {"k": "v"}
    assert alter_attributes(cur, {"-missing": ""}) == cur
