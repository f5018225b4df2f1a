"""Send until killed, recording each acknowledged message id.

usage: crash_send.py ENDPOINT TOPIC ACKED_FILE [THREADS]
THREADS producer threads send 256-byte messages one by one; after each send the SDK reports as OK the
message id is appended to ACKED_FILE (one line, flushed), so the file holds exactly what the proxy
acknowledged before the test kills the broker (and then this script).
"""

from __future__ import annotations

import sys
import threading
import time

from rocketmq import ClientConfiguration, Credentials, Message, Producer


def main() -> None:
    endpoint, topic, acked_path = sys.argv[1:4]
    threads = int(sys.argv[4]) if len(sys.argv) > 4 else 4
    cfg = ClientConfiguration(endpoint, Credentials(), request_timeout=5)
    producer = Producer(cfg, (topic,))
    producer.startup()
    lock = threading.Lock()
    out = open(acked_path, "a", buffering=1)

    def send_loop(t: int) -> None:
        i = 0
        while True:
            m = Message()
            m.topic = topic
            m.body = f"crash-{t}-{i}-".encode().ljust(256, b"x")
            m.keys = f"crash-{t}-{i}"
            try:
                mid = producer.send(m).message_id
            except Exception:  # noqa: BLE001 -- the broker is gone: not acknowledged, not recorded
                time.sleep(0.05)
                continue
            with lock:
                out.write(mid + "\n")
                out.flush()
            i += 1

    for t in range(threads):
        threading.Thread(target=send_loop, args=(t,), daemon=True).start()
    while True:
        time.sleep(1)


if __name__ == "__main__":
    main()
