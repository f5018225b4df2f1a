"""Shared helpers for the SDK scripts (run with the official SDK's own venv)."""

from __future__ import annotations

import json
import sys
import time


def emit(obj) -> None:
    """The last stdout line of every script is one JSON object the e2e test parses."""
    sys.stdout.write("\nRESULT " + json.dumps(obj) + "\n")
    sys.stdout.flush()


def msg_dict(m) -> dict:
    return {
        "id": m.message_id,
        "tag": m.tag,
        "keys": list(m.keys or []),
        "props": dict(m.properties or {}),
        "body": m.body.decode(errors="replace") if m.body else "",
        "attempt": m.delivery_attempt,
        "group": m.message_group,
        "topic": m.topic,
    }


def err_code(e) -> int | None:
    code = getattr(e, "code", None)
    try:
        return int(code) if code is not None else None
    except (TypeError, ValueError):
        return None


def receive_until(consumer, want: set[str], seconds: float, errors: list[str], batch: int = 16) -> list:
    """Receive (invisible 30 s) and ack until every id of ``want`` has come or ``seconds`` pass; every
    message received, in order. A failed receive is noted in ``errors`` and tried again."""
    got: list = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and not want <= {m.message_id for m in got}:
        try:
            msgs = consumer.receive(batch, 30) or []
        except Exception as e:  # noqa: BLE001
            errors.append(str(e)[:300])
            time.sleep(0.2)
            continue
        for m in msgs:
            got.append(m)
            consumer.ack(m)
    return got
