"""The official Python SDK (rocketmq-python-client 5.1.2, own venv) against mqproxy in each mode."""

from __future__ import annotations

import pytest

from tests.e2e.proxy_stack import EARLIEST, parse_result, stack
from tests.harness import run_sdk_script

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]

# the embedded default (mqproxy alone) is covered by test_sdk_message_types and test_proxy_cli; Local mode
# inside the broker (mqbroker --enable-proxy) by test_redelivery_after_invisible_time and test_types_*
MODES = ["local", "cluster"]


@pytest.fixture(params=MODES)
def proxy_stack(request, tmp_path):
    with stack(request.param, tmp_path) as st:
        yield st


@pytest.fixture
def broker_proxy_stack(tmp_path):
    with stack("broker-proxy", tmp_path) as st:
        yield st


def test_send_receive_ack_change_invisible(proxy_stack):
    st = proxy_stack
    st.create_topic("TopicBasic")
    st.create_group("GroupBasic", *EARLIEST)
    cp = run_sdk_script("basic.py", st.endpoint, "TopicBasic", "GroupBasic", timeout=150)
    r = parse_result(cp.stdout)
    assert not r["errors"], r["errors"]
    assert len(r["sent"]) == 3
    got = r["received"]
    assert sorted(m["id"] for m in got) == sorted(r["sent"])  # TagB filtered out
    for m in got:
        assert m["tag"] == "TagA" and m["attempt"] == 1 and m["props"]["color"] == "red"
        assert m["keys"] == [f"key-{m['props']['idx']}"] and m["body"] == f"body-A{m['props']['idx']}"
    assert len(r["redelivered"]) == 1 and r["redelivered"][0]["attempt"] == 2
    assert r["redelivered"][0]["id"] == got[2]["id"]
    assert r["after_ack"] == 0
    assert r["bad_prop_code"] == 40007
    assert r["bad_invisible_code"] == 40011
    assert "TBW102" in r["bad_topic_error"]  # the Python SDK hides QueryRoute's code (40002) here


def test_push_consumer_with_retry(proxy_stack):
    st = proxy_stack
    st.create_topic("TopicPush")
    st.create_group("GroupPush", *EARLIEST)
    cp = run_sdk_script("push.py", st.endpoint, "TopicPush", "GroupPush", "5", timeout=150)
    r = parse_result(cp.stdout)
    seen = r["seen"]
    assert {m["id"] for m in seen} == set(r["sent"]), st.logs()
    zero = [m["attempt"] for m in seen if m["body"] == "push-0"]
    assert zero[:2] == [1, 2]  # failed once, redelivered after the 1 s backoff with attempt 2


def test_redelivery_after_invisible_time(broker_proxy_stack):
    st = broker_proxy_stack
    st.create_topic("TopicRedeliver")
    st.create_group("GroupRedeliver", *EARLIEST)
    cp = run_sdk_script("redeliver.py", st.endpoint, "TopicRedeliver", "GroupRedeliver", timeout=120)
    r = parse_result(cp.stdout)
    assert [m["id"] for m in r["first"]] == [r["sent"]] and r["first"][0]["attempt"] == 1
    assert [m["id"] for m in r["second"]] == [r["sent"]] and r["second"][0]["attempt"] == 2
    assert r["after_s"] >= 5  # not before the 10 s invisible time ran out (minus the first long poll)
