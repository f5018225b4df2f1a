"""Client sessions: the Settings each client announced on its Telemetry stream, keyed by client id.

Nothing here must be needed by another proxy process: a session is rebuilt from the client's own
Telemetry stream (and Heartbeat) on whichever process the client reaches. Sessions without heartbeat
expire; NotifyClientTermination drops one at once.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field

from protos.apache.rocketmq.v2 import definition_pb2 as pb
from protos.apache.rocketmq.v2 import service_pb2 as spb

log = logging.getLogger("proxy")


@dataclass(slots=True, eq=False)
class ClientSession:
    client_id: str
    client_type: int = pb.ClientType.CLIENT_TYPE_UNSPECIFIED
    group: str = ""
    topics: tuple[str, ...] = ()
    settings: pb.Settings | None = None
    last_seen: float = field(default_factory=time.monotonic)
    # Outgoing queues of this client's open Telemetry streams (None closes a stream).
    streams: list[asyncio.Queue[spb.TelemetryCommand | None]] = field(default_factory=list)


class SessionManager:
    def __init__(self, expire_after_s: float = 120.0) -> None:
        self.expire_after_s = expire_after_s
        self.sessions: dict[str, ClientSession] = {}
        self._task: asyncio.Task[None] | None = None

    def get(self, client_id: str) -> ClientSession | None:
        return self.sessions.get(client_id)

    def touch(self, client_id: str) -> ClientSession:
        s = self.sessions.get(client_id)
        if s is None:
            s = self.sessions[client_id] = ClientSession(client_id)
        else:
            s.last_seen = time.monotonic()
        return s

    def update_settings(self, client_id: str, settings: pb.Settings) -> ClientSession:
        s = self.touch(client_id)
        s.settings = settings
        s.client_type = settings.client_type
        if settings.HasField("publishing"):
            s.topics = tuple(r.name for r in settings.publishing.topics)
        if settings.HasField("subscription"):
            s.group = settings.subscription.group.name
            s.topics = tuple(e.topic.name for e in settings.subscription.subscriptions)
        return s

    def attach(self, client_id: str, queue: asyncio.Queue[spb.TelemetryCommand | None]) -> ClientSession:
        s = self.touch(client_id)
        s.streams.append(queue)
        return s

    def detach(self, client_id: str, queue: asyncio.Queue[spb.TelemetryCommand | None]) -> None:
        s = self.sessions.get(client_id)
        if s is not None and queue in s.streams:
            s.streams.remove(queue)

    def remove(self, client_id: str) -> ClientSession | None:
        return self.sessions.pop(client_id, None)

    def producers_for(self, topic_or_group: str) -> list[ClientSession]:
        """Producers with an open Telemetry stream that publish to ``topic_or_group``."""
        out = []
        for s in self.sessions.values():
            if s.client_type == pb.ClientType.PRODUCER and s.streams and (
                topic_or_group in s.topics or not s.topics
            ):
                out.append(s)
        return out

    def expire(self, now: float | None = None) -> list[str]:
        now = time.monotonic() if now is None else now
        gone = [cid for cid, s in self.sessions.items()
                if not s.streams and now - s.last_seen > self.expire_after_s]
        for cid in gone:
            del self.sessions[cid]
            log.info("client session %s expired", cid)
        return gone

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(min(10.0, self.expire_after_s / 4))
            self.expire()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None
        for s in self.sessions.values():
            for q in s.streams:
                q.put_nowait(None)
