"""ACL through the proxy: an account's allowed topic, a denied topic, a wrong secret key.

usage: acl.py ENDPOINT ACCESS_KEY SECRET_KEY TOPIC_OK TOPIC_DENIED GROUP
Prints RESULT {"sent": id, "received": [ids], "denied_code": n, "bad_secret_code": n, "errors": [...]}.
"""

from __future__ import annotations

import sys

from common import emit, err_code, receive_until
from rocketmq import ClientConfiguration, Credentials, FilterExpression, Message, Producer, SimpleConsumer


def message(topic: str) -> Message:
    m = Message()
    m.topic, m.body, m.tag = topic, b"acl", "a"
    return m


def main() -> None:
    endpoint, ak, sk, topic_ok, topic_denied, group = sys.argv[1:7]
    cfg = ClientConfiguration(endpoint, Credentials(ak, sk), request_timeout=5)
    out: dict = {"errors": []}
    producer = Producer(cfg, (topic_ok, topic_denied))
    producer.startup()
    out["sent"] = producer.send(message(topic_ok)).message_id
    try:
        producer.send(message(topic_denied))
        out["denied_code"] = None
    except Exception as e:  # noqa: BLE001
        out["denied_code"] = err_code(e)
        out["denied_error"] = str(e)[:300]
    producer.shutdown()

    bad = Producer(ClientConfiguration(endpoint, Credentials(ak, sk + "x"), request_timeout=5), (topic_ok,))
    try:
        bad.startup()
        bad.send(message(topic_ok))
        out["bad_secret_code"] = None
    except Exception as e:  # noqa: BLE001
        out["bad_secret_code"] = err_code(e)
        out["bad_secret_error"] = str(e)[:300]
    finally:
        try:
            bad.shutdown()
        except Exception:  # noqa: BLE001
            pass

    consumer = SimpleConsumer(cfg, group, {topic_ok: FilterExpression("*")}, await_duration=5)
    consumer.startup()
    out["received"] = [m.message_id for m in receive_until(consumer, {out["sent"]}, 30, out["errors"])]
    consumer.shutdown()
    emit(out)


if __name__ == "__main__":
    main()
