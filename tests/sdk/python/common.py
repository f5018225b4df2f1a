"""Shared helpers for the SDK scripts (run with the official SDK's own venv)."""

from __future__ import annotations

import json
import sys


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
