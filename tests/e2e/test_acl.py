"""ACL 1.0 on the gRPC proxy (enableACL + plain_acl.yml) with the official Python SDK's credentials."""

from __future__ import annotations

import pytest

from tests.e2e.proxy_stack import EARLIEST, parse_result, stack
from tests.harness import run_sdk_script

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]

ACL = """\
accounts:
  - accessKey: app1
    secretKey: s3cret-app1
    admin: false
    defaultTopicPerm: DENY
    defaultGroupPerm: DENY
    topicPerms:
      - TopicAclOk=PUB|SUB
      - TopicAclDenied=SUB
    groupPerms:
      - GroupAcl=SUB
"""


@pytest.mark.parametrize("mode", ["broker-proxy"])  # the check is in the gRPC layer, the same in every mode
def test_acl_allows_the_account_and_refuses_the_rest(tmp_path, mode):
    (tmp_path / "conf").mkdir()
    (tmp_path / "conf" / "plain_acl.yml").write_text(ACL)
    with stack(mode, tmp_path, env={"ROCKETMQ_HOME": str(tmp_path)}, enableACL=True) as st:
        st.create_topic("TopicAclOk")
        st.create_topic("TopicAclDenied")
        st.create_group("GroupAcl", *EARLIEST)
        r = parse_result(run_sdk_script("acl.py", st.endpoint, "app1", "s3cret-app1", "TopicAclOk",
                                        "TopicAclDenied", "GroupAcl", timeout=150).stdout)
        assert r["sent"] and r["received"] == [r["sent"]], r
        assert r["denied_code"] == 40300, r  # FORBIDDEN: SUB only on that topic
        # a wrong secret key: the proxy answers the SDK's first call (QueryRoute) UNAUTHORIZED; the SDK
        # reports "failed to fetch topic route" without the code (tests/unit/proxy/test_acl.py checks codes)
        assert r["bad_secret_code"] in (None, 40100) and "route" in r["bad_secret_error"], r
        # the proxy's log: broker.log with --enable-proxy, proxy.log for mqproxy
        log = "".join(p.read_text() for p in (tmp_path / "logs" / "rocketmqlogs").glob("*.log"))
        assert "refused: accessKey 'app1' has no PUB permission on topic TopicAclDenied" in log
        assert "QueryRoute from" in log and "refused: signature check failed for accessKey 'app1'" in log
