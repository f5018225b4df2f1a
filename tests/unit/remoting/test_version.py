"""backends.remoting.version: RocketMQ's MQVersion ordinals and names."""

from backends.remoting.command import VERSION
from backends.remoting.version import version_desc, version_ordinal


def test_version_names_and_ordinals_as_rocketmq_numbers_them() -> None:
    # ordinals RocketMQ clients send: the C++ 4.x client (V3_1_8), 4.9.4 and 5.x Java clients, ours
    assert [version_desc(n) for n in (0, 15, 63, 401, 437, VERSION)] == [
        "V3_0_0_SNAPSHOT", "V3_0_0_FINAL", "V3_1_8", "V4_9_4", "V5_1_2", "V5_3_1"]
    assert version_desc(10**6) == "HIGHER_VERSION" and version_desc(-1) == "V3_0_0_SNAPSHOT"
    assert version_ordinal("5.1.2") == 437 and version_ordinal("v4.9.4") == 401
    assert version_ordinal("5.1.2-rc1") == 0 and version_ordinal("") == 0
    assert version_desc(version_ordinal("3.3.1")) == "V3_3_1" and version_ordinal("3.3.0") == 0  # 3.3 starts at .1
