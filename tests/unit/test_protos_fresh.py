"""The committed generated modules must match what protos/generate.py produces from the .proto files."""

import subprocess
import sys

from tests.harness import REPO


def test_generated_modules_are_fresh() -> None:
    cp = subprocess.run([sys.executable, "-m", "protos.generate", "--check"], cwd=REPO,
                        capture_output=True, text=True, timeout=60)
    assert cp.returncode == 0, cp.stderr


def test_wire_names_and_numbers() -> None:
    from protos.apache.rocketmq.v2 import definition_pb2 as d
    from protos.apache.rocketmq.v2 import service_pb2 as s

    assert d.DESCRIPTOR.package == "apache.rocketmq.v2"
    assert d.Code.Value("MESSAGE_NOT_FOUND") == 40401
    assert s.ReceiveMessageRequest.DESCRIPTOR.fields_by_name["long_polling_timeout"].number == 7
    assert d.SystemProperties.DESCRIPTOR.fields_by_name["delivery_attempt"].number == 16
    assert s.DESCRIPTOR.services_by_name["MessagingService"].full_name == "apache.rocketmq.v2.MessagingService"
