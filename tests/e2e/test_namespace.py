"""Namespaces (ClientConfiguration.namespace) with the official Python SDK through the proxy."""

from __future__ import annotations

import pytest

from tests.e2e.proxy_stack import EARLIEST, parse_result, stack
from tests.harness import run_sdk_script

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]


def test_namespace_maps_to_stored_names(tmp_path):
    with stack("broker-proxy", tmp_path) as st:
        st.create_topic("ns1%TopicNs")
        st.create_group("ns1%GroupNs", *EARLIEST)
        st.create_group("ns1%GroupRaw", *EARLIEST)
        r = parse_result(run_sdk_script("namespace.py", st.endpoint, "ns1", "TopicNs", "GroupNs", "GroupRaw",
                                        timeout=150).stdout)
        assert not r["errors"], r
        # the namespaced client sees its short topic name ...
        assert sorted(m["id"] for m in r["received"]) == sorted(r["sent"]), r
        assert {m["topic"] for m in r["received"]} == {"TopicNs"}, r
        # ... and the messages are stored under ns1%TopicNs, where a client without a namespace finds them
        assert sorted(m["id"] for m in r["raw"]) == sorted(r["sent"]), r
        assert {m["topic"] for m in r["raw"]} == {"ns1%TopicNs"}, r
