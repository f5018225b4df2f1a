"""Every NameServer request code answers any header/body with a response (never an unexpected exception)."""

from __future__ import annotations

import asyncio

from hypothesis import given, settings
from hypothesis import strategies as st

from backends.namesrv.config import NamesrvConfig
from backends.namesrv.kvconfig_manager import KVConfigManager
from backends.namesrv.processor import DefaultRequestProcessor
from backends.namesrv.route_info_manager import RouteInfoManager
from backends.remoting.command import RemotingCommand
from backends.remoting.header import RemotingCommandException

FIELDS = ["topic", "brokerName", "brokerAddr", "clusterName", "brokerId", "namespace", "key", "value",
          "cluster", "heartbeatTimeoutMillis", "bodyCrc32", "compressed", "haServerAddr"]
values = st.one_of(st.sampled_from(["0", "1", "-1", "x", "", "true", "127.0.0.1:1", "99999999999999999999"]),
                   st.text(max_size=8))
bodies = st.one_of(
    st.binary(max_size=64),
    st.sampled_from([
        b"", b"{}", b"[]", b"null", b'{"topicConfigSerializeWrapper":[]}',
        b'{"topicConfigSerializeWrapper":{"topicConfigTable":{"T":{"readQueueNums":"x"}}}}',
        b'{"topicConfigSerializeWrapper":{"topicConfigTable":{"T":{}},"dataVersion":{"counter":"q"}}}',
        b'{"queueDatas":[{"brokerName":"b"}]}', b'{"queueDatas":[1]}', b'{"counter":{"value":3}}',
    ]),
)


class _Server:
    def __init__(self) -> None:
        self.processors: dict[int, object] = {}

    def register_processor(self, code: int, p: object) -> None:
        self.processors[code] = p

    def add_close_listener(self, listener: object) -> None:
        pass


class _Conn:
    remote_addr = "127.0.0.1:1"


def _make(tmp: str) -> dict[int, object]:
    cfg = NamesrvConfig(kvConfigPath=tmp + "/kv.json")
    proc = DefaultRequestProcessor(cfg, RouteInfoManager(), KVConfigManager(cfg.kvConfigPath))
    srv = _Server()
    proc.register(srv)  # type: ignore[arg-type]
    return srv.processors


@settings(max_examples=120, deadline=None)
@given(st.data())
def test_any_request_gets_a_response(tmp_path_factory, data: st.DataObject) -> None:  # type: ignore[no-untyped-def]
    processors = _make(str(tmp_path_factory.mktemp("kv")))
    for _ in range(3):
        code = data.draw(st.sampled_from(sorted(processors)))
        ext = data.draw(st.dictionaries(st.sampled_from(FIELDS), values, max_size=8))
        req = RemotingCommand.request(code, ext, data.draw(bodies))
        try:
            resp = asyncio.run(processors[code](req, _Conn()))  # type: ignore[operator]
        except RemotingCommandException:
            continue  # answered with SYSTEM_ERROR by the server
        assert isinstance(resp, RemotingCommand) and resp.is_response

