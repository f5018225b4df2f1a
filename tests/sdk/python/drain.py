"""Receive and ack everything of a topic until every expected id has been seen (or a deadline).

usage: drain.py ENDPOINT TOPIC GROUP EXPECTED_FILE SECONDS
Prints RESULT {"received": n, "attempt1_dups": [...], "missing": [...first 20], "missing_count": n}.
"""

from __future__ import annotations

import sys
import time

from common import emit
from rocketmq import ClientConfiguration, Credentials, FilterExpression, SimpleConsumer


def main() -> None:
    endpoint, topic, group, expected_path, seconds = sys.argv[1:6]
    expected = {line.strip() for line in open(expected_path) if line.strip()}
    cfg = ClientConfiguration(endpoint, Credentials(), request_timeout=10)
    consumer = SimpleConsumer(cfg, group, {topic: FilterExpression("*")}, await_duration=5)
    consumer.startup()
    seen: set[str] = set()
    dups: list[str] = []
    errors: list[str] = []
    deadline = time.monotonic() + float(seconds)
    while time.monotonic() < deadline and not expected <= seen:
        try:
            msgs = consumer.receive(32, 60) or []
        except Exception as e:  # noqa: BLE001
            errors.append(str(e))
            time.sleep(0.2)
            continue
        for m in msgs:
            if m.message_id in seen and m.delivery_attempt == 1:
                dups.append(m.message_id)
            seen.add(m.message_id)
            consumer.ack(m)
    missing = sorted(expected - seen)
    consumer.shutdown()
    emit({"received": len(seen), "attempt1_dups": dups[:20], "missing": missing[:20],
          "missing_count": len(missing), "errors": errors[:5]})


if __name__ == "__main__":
    main()
