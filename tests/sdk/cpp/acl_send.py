"""The 4.x C++ client (rocketmq 0.4.4) with ACL session credentials: send COUNT messages.

    acl_send.py NAMESRV_ADDR TOPIC ACCESS_KEY SECRET_KEY COUNT

Prints one JSON line: {"ok": n, "errors": [first messages]}.
"""

from __future__ import annotations

import json
import sys

from rocketmq.client import Message, Producer, SendStatus


def main() -> int:
    ns, topic, ak, sk, count = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5])
    producer = Producer("AclProducerGroup")
    producer.set_namesrv_addr(ns)
    producer.set_session_credentials(ak, sk, "LOCAL")
    producer.start()
    ok, errors = 0, []
    for i in range(count):
        msg = Message(topic)
        msg.set_body(f"acl-{i}")
        try:
            r = producer.send_sync(msg)
            if r.status == SendStatus.OK:
                ok += 1
            else:
                errors.append(str(r.status))
        except Exception as e:  # noqa: BLE001
            errors.append(str(e)[:300])
    producer.shutdown()
    print(json.dumps({"ok": ok, "errors": errors[:3]}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
