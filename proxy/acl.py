"""Access control for the gRPC proxy: RocketMQ 5.0's ACL 1.0 (``enableACL`` in rmq-proxy.json and the
accounts of ``plain_acl.yml``).

The official SDKs sign every call: header ``x-mq-date-time`` (``20221110T104405Z``) and
``authorization: MQv2-HMAC-SHA1 Credential=<accessKey>, SignedHeaders=x-mq-date-time, Signature=<hex>``
where the signature is HMAC-SHA1 of the date-time with the account's secret key. A call is accepted when

1. the client's address matches ``globalWhiteRemoteAddresses``; or
2. the access key names an account, and the address matches the account's ``whiteRemoteAddress``; or
3. the signature checks out, and the account is ``admin`` or holds the permission the call needs on
   each resource it names (``topicPerms`` / ``groupPerms``, else ``defaultTopicPerm`` /
   ``defaultGroupPerm``; ``DENY``, ``PUB``, ``SUB``, ``PUB|SUB``).

A call that fails 2 answers UNAUTHORIZED (40100); one that fails 3 on a permission FORBIDDEN (40300).
The resources of each RPC follow RocketMQ's PlainAccessValidator: a send or EndTransaction needs PUB on
the topic; receive, ack, change of invisible time, DLQ forward and the pull/offset calls need SUB on the
topic and the group; a heartbeat SUB on its group; the others only a valid signature.

Address patterns: ``*``; an IPv4 address whose octets are each a number, ``*``, a range ``1-200`` or a
set ``{1,2,3}``; several patterns separated by commas. The file is read when the proxy starts.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from protos.apache.rocketmq.v2 import definition_pb2 as pb

DENY, PUB, SUB = 1, 2, 4
_PERMS = {"DENY": DENY, "PUB": PUB, "SUB": SUB, "PUB|SUB": PUB | SUB, "SUB|PUB": PUB | SUB}
_AUTH = re.compile(r"^MQv2-HMAC-SHA1 Credential=([^,]*), SignedHeaders=([^,]*), Signature=([0-9a-fA-F]*)$")


class AclError(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    def status(self) -> pb.Status:
        return pb.Status(code=self.code, message=self.message)  # type: ignore[arg-type]


class AclConfigError(ValueError):
    """plain_acl.yml cannot be used; the message names the file and the entry."""


def default_acl_path() -> Path:
    """``$ROCKETMQ_HOME/conf/plain_acl.yml``, or ``conf/plain_acl.yml`` without ROCKETMQ_HOME."""
    home = os.environ.get("ROCKETMQ_HOME")
    return Path(home, "conf", "plain_acl.yml") if home else Path("conf", "plain_acl.yml")


def parse_perm(text: Any, where: str) -> int:
    perm = _PERMS.get(str(text).replace(" ", "").upper())
    if perm is None:
        raise AclConfigError(f"{where}: permission {text!r} is not DENY, PUB, SUB or PUB|SUB")
    return perm


@dataclass
class Account:
    access_key: str
    secret_key: str
    white_remote_address: str = ""
    admin: bool = False
    default_topic_perm: int = DENY
    default_group_perm: int = DENY
    topic_perms: dict[str, int] = field(default_factory=dict)
    group_perms: dict[str, int] = field(default_factory=dict)


@dataclass
class PlainAclConfig:
    global_white_remote_addresses: list[str] = field(default_factory=list)
    accounts: dict[str, Account] = field(default_factory=dict)


def load_plain_acl(path: Path) -> PlainAclConfig:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except OSError as e:
        raise AclConfigError(f"cannot read {path}: {e.strerror or e}") from e
    except yaml.YAMLError as e:
        raise AclConfigError(f"{path}: not YAML: {e}".replace("\n", " ")) from e
    return parse_plain_acl(data, str(path))


def parse_plain_acl(data: Any, where: str = "plain_acl.yml") -> PlainAclConfig:
    if not isinstance(data, dict):
        raise AclConfigError(f"{where}: expected a mapping with 'accounts'")
    cfg = PlainAclConfig()
    for pattern in data.get("globalWhiteRemoteAddresses") or []:
        check_address_pattern(str(pattern), f"{where}: globalWhiteRemoteAddresses")
        cfg.global_white_remote_addresses.append(str(pattern))
    for i, a in enumerate(data.get("accounts") or []):
        at = f"{where}: accounts[{i}]"
        if not isinstance(a, dict) or not a.get("accessKey") or a.get("secretKey") in (None, ""):
            raise AclConfigError(f"{at}: needs accessKey and secretKey")
        acc = Account(str(a["accessKey"]), str(a["secretKey"]),
                      white_remote_address=str(a.get("whiteRemoteAddress") or ""),
                      admin=str(a.get("admin", False)).lower() == "true",
                      default_topic_perm=parse_perm(a.get("defaultTopicPerm", "DENY"), f"{at}.defaultTopicPerm"),
                      default_group_perm=parse_perm(a.get("defaultGroupPerm", "DENY"), f"{at}.defaultGroupPerm"))
        if acc.white_remote_address:
            check_address_pattern(acc.white_remote_address, f"{at}.whiteRemoteAddress")
        for key, table in (("topicPerms", acc.topic_perms), ("groupPerms", acc.group_perms)):
            for entry in a.get(key) or []:
                name, sep, perm = str(entry).partition("=")
                if not sep or not name.strip():
                    raise AclConfigError(f"{at}.{key}: {entry!r} is not name=PERM")
                table[name.strip()] = parse_perm(perm, f"{at}.{key}")
        if acc.access_key in cfg.accounts:
            raise AclConfigError(f"{at}: accessKey {acc.access_key!r} appears twice")
        cfg.accounts[acc.access_key] = acc
    return cfg


_OCTET = re.compile(r"^(\*|\d{1,3}|\d{1,3}-\d{1,3}|\{\d{1,3}(,\d{1,3})*\})$")


def _split_patterns(text: str) -> list[str]:
    # commas separate patterns, except inside {...}
    out, depth, cur = [], 0, ""
    for ch in text:
        if ch == "," and depth == 0:
            out.append(cur.strip())
            cur = ""
            continue
        depth += (ch == "{") - (ch == "}")
        cur += ch
    out.append(cur.strip())
    return [p for p in out if p]


def check_address_pattern(text: str, where: str) -> None:
    for p in _split_patterns(text):
        if p == "*":
            continue
        parts = p.split(".")
        if len(parts) != 4 or not all(_OCTET.match(o) for o in parts):
            raise AclConfigError(f"{where}: {p!r} is not an address pattern (e.g. 192.168.1.*, 10.0.0.1-99)")


def _octet_matches(pattern: str, value: int) -> bool:
    if pattern == "*":
        return True
    if pattern.startswith("{"):
        return value in {int(x) for x in pattern[1:-1].split(",")}
    lo, sep, hi = pattern.partition("-")
    return int(lo) <= value <= int(hi) if sep else value == int(lo)


def address_matches(text: str, ip: str) -> bool:
    octets = ip.split(".")
    if len(octets) != 4 or not all(o.isdigit() for o in octets):
        return "*" in _split_patterns(text)  # IPv6 peers match only the catch-all
    values = [int(o) for o in octets]
    for p in _split_patterns(text):
        if p == "*":
            return True
        parts = p.split(".")
        if len(parts) == 4 and all(_octet_matches(o, v) for o, v in zip(parts, values, strict=True)):
            return True
    return False


def sign(secret_key: str, date_time: str) -> str:
    return hmac.new(secret_key.encode(), date_time.encode(), hashlib.sha1).hexdigest()


# (resource name, is a group, permission needed)
Resource = tuple[str, bool, int]


def resources_of(method: str, request: Any) -> list[Resource]:
    """What a call needs, after RocketMQ's PlainAccessValidator.parse for gRPC."""
    if method in ("SendMessage",):
        return [(m.topic.name, False, PUB) for m in request.messages[:1]]
    if method in ("EndTransaction", "RecallMessage"):
        return [(request.topic.name, False, PUB)]
    if method == "Heartbeat":
        return [(request.group.name, True, SUB)] if request.HasField("group") else []
    if method in ("ReceiveMessage", "PullMessage", "UpdateOffset", "GetOffset", "QueryOffset"):
        return [(request.group.name, True, SUB), (request.message_queue.topic.name, False, SUB)]
    if method in ("AckMessage", "ChangeInvisibleDuration", "ForwardMessageToDeadLetterQueue"):
        return [(request.group.name, True, SUB), (request.topic.name, False, SUB)]
    return []


class PlainAccessValidator:
    def __init__(self, config: PlainAclConfig) -> None:
        self.config = config

    def validate(self, remote_ip: str, metadata: dict[str, str], resources: list[Resource]) -> None:
        """Raise AclError for a call that may not go on."""
        cfg = self.config
        if any(address_matches(p, remote_ip) for p in cfg.global_white_remote_addresses):
            return
        m = _AUTH.match(metadata.get("authorization", ""))
        if m is None:
            raise AclError(pb.Code.UNAUTHORIZED, "ACL is enabled: the call carries no MQv2-HMAC-SHA1 authorization "
                                                 "(configure credentials in the client)")
        access_key, signature = m.group(1), m.group(3)
        account = cfg.accounts.get(access_key)
        if account is None:
            raise AclError(pb.Code.UNAUTHORIZED, f"no ACL account for accessKey {access_key!r}")
        if account.white_remote_address and address_matches(account.white_remote_address, remote_ip):
            return
        expected = sign(account.secret_key, metadata.get("x-mq-date-time", ""))
        if not hmac.compare_digest(signature.lower(), expected):
            raise AclError(pb.Code.UNAUTHORIZED, f"signature check failed for accessKey {access_key!r}")
        if account.admin:
            return
        for name, is_group, need in resources:
            table, default = ((account.group_perms, account.default_group_perm) if is_group
                              else (account.topic_perms, account.default_topic_perm))
            owned = table.get(name, default)
            if owned == DENY or not owned & need:
                kind = "group" if is_group else "topic"
                raise AclError(pb.Code.FORBIDDEN, f"accessKey {access_key!r} has no {'PUB' if need == PUB else 'SUB'} "
                                                  f"permission on {kind} {name}")
