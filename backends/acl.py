"""ACL 1.0 of RocketMQ 5.0 (``plain_acl.yml``), shared by the gRPC proxy (``enableACL``, see
:mod:`proxy.acl`) and the broker's remoting port (``aclEnable``, see :mod:`backends.broker.acl`).

A call is accepted when

1. the client's address matches ``globalWhiteRemoteAddresses``; or
2. its access key names an account, and the address matches the account's ``whiteRemoteAddress``; or
3. its signature checks out with the account's secret key, and the account is ``admin`` or holds the
   permission the call needs on each resource it names (``topicPerms`` / ``groupPerms``, else
   ``defaultTopicPerm`` / ``defaultGroupPerm``; ``DENY``, ``PUB``, ``SUB``, ``PUB|SUB``).

Address patterns: ``*``; an IPv4 address whose octets are each a number, ``*``, a range ``1-200`` or a
set ``{1,2,3}``; several patterns separated by commas.

Clients sign with :func:`sign_request` (remoting: ``AccessKey`` and ``Signature`` ext fields, the
signature being Base64 HMAC-SHA1 over the values of the other ext fields in key order and the body) or
the gRPC ``authorization`` header (:mod:`proxy.acl`). Tools and Cluster-mode proxies take their keys from
``$ROCKETMQ_HOME/conf/tools.yml`` (``accessKey``, ``secretKey``), as RocketMQ's do.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import logging
import os
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

log = logging.getLogger("rocketmq.acl")
DENY, PUB, SUB = 1, 2, 4
_PERMS = {"DENY": DENY, "PUB": PUB, "SUB": SUB, "PUB|SUB": PUB | SUB, "SUB|PUB": PUB | SUB}


class AclConfigError(ValueError):
    """plain_acl.yml cannot be used; the message names the file and the entry."""


def default_acl_path() -> Path:
    """``$ROCKETMQ_HOME/conf/plain_acl.yml``, or ``conf/plain_acl.yml`` without ROCKETMQ_HOME."""
    return _conf_path("plain_acl.yml")


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

    def current(self) -> PlainAclConfig:
        """A fixed set of accounts (see :class:`PlainAclFile` for the file that is watched)."""
        return self


class PlainAclFile:
    """``plain_acl.yml``, re-read when it changes (looked at no more than once per ``check_interval``
    seconds, when a call is checked), as RocketMQ watches it: accounts can be added or changed without a
    restart. An edit that cannot be read keeps the accounts loaded before and logs why."""

    def __init__(self, path: Path, check_interval: float = 1.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.path = path
        self._interval = check_interval
        self._clock = clock
        self._stamp = self._stat()
        self._config = load_plain_acl(path)
        self._next = clock() + check_interval

    def _stat(self) -> tuple[int, int] | None:
        try:
            st = os.stat(self.path)
        except OSError:
            return None
        return st.st_mtime_ns, st.st_size

    def current(self) -> PlainAclConfig:
        now = self._clock()
        if now >= self._next:
            self._next = now + self._interval
            stamp = self._stat()
            if stamp != self._stamp:
                self._stamp = stamp
                try:
                    self._config = load_plain_acl(self.path)
                    log.info("ACL: reloaded %d account(s) from %s", len(self._config.accounts), self.path)
                except AclConfigError as e:
                    log.error("ACL: %s; the %d account(s) loaded before stay in force", e,
                              len(self._config.accounts))
        return self._config


AclSource = PlainAclConfig | PlainAclFile


def open_plain_acl() -> PlainAclFile:
    """The watched ``$ROCKETMQ_HOME/conf/plain_acl.yml`` of a proxy with enableACL or a broker with
    aclEnable; AclConfigError when it cannot be used."""
    path = default_acl_path()
    acl = PlainAclFile(path)
    log.info("ACL enabled: %d account(s) from %s", len(acl.current().accounts), path)
    return acl


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


# an address pattern, parsed: per octet the set of values it allows (a range as range)
_Octets = tuple[range | frozenset[int], ...]


def _octets(pattern: str) -> _Octets | None:
    """One pattern other than ``*``, parsed; None when it is not four octet patterns."""
    parts = pattern.split(".")
    if len(parts) != 4 or not all(_OCTET.match(o) for o in parts):
        return None
    out: list[range | frozenset[int]] = []
    for o in parts:
        if o == "*":
            out.append(range(0, 256))
        elif o.startswith("{"):
            out.append(frozenset(int(x) for x in o[1:-1].split(",")))
        else:
            lo, sep, hi = o.partition("-")
            out.append(range(int(lo), int(hi if sep else lo) + 1))
    return tuple(out)


def check_address_pattern(text: str, where: str) -> None:
    for p in _split_patterns(text):
        if p != "*" and _octets(p) is None:
            raise AclConfigError(f"{where}: {p!r} is not an address pattern (e.g. 192.168.1.*, 10.0.0.1-99)")


@functools.lru_cache(maxsize=1024)
def _parsed(text: str) -> tuple[_Octets | None, ...]:
    """The patterns of a (checked) white-address text, parsed once: checks run on every call. None
    stands for ``*``; a pattern that is no address pattern matches nothing."""
    out: list[_Octets | None] = []
    for p in _split_patterns(text):
        octets = None if p == "*" else _octets(p)
        if p == "*" or octets is not None:
            out.append(octets)
    return tuple(out)


def address_matches(text: str, ip: str) -> bool:
    patterns = _parsed(text)
    octets = ip.split(".")
    if len(octets) != 4 or not all(o.isdigit() for o in octets):
        return None in patterns  # IPv6 peers match only the catch-all
    values = [int(o) for o in octets]
    return any(p is None or all(v in allowed for allowed, v in zip(p, values, strict=True)) for p in patterns)


def sign_hex(secret_key: str, text: str) -> str:
    """Hex HMAC-SHA1 (the gRPC SDKs' signature of the date-time header)."""
    return hmac.new(secret_key.encode(), text.encode(), hashlib.sha1).hexdigest()


class AclDenied(Exception):
    """A refused call: ``authentication`` (no or a wrong key or signature) or a missing permission."""

    def __init__(self, message: str, authentication: bool) -> None:
        super().__init__(message)
        self.message = message
        self.authentication = authentication


# (resource name, is a group, permission needed)
Resource = tuple[str, bool, int]


def check_access(config: PlainAclConfig, remote_ip: str, access_key: str | None,
                 signature_ok: Callable[[str], bool], resources: Iterable[Resource], admin_only: str = "") -> None:
    """Raise AclDenied unless the call may go on. ``signature_ok(secret_key)`` checks the call's
    signature; ``admin_only``: the name of an operation only an admin account may run."""
    if any(address_matches(p, remote_ip) for p in config.global_white_remote_addresses):
        return
    if not access_key:
        raise AclDenied("ACL is enabled: the call carries no access key (configure credentials in the client)",
                        authentication=True)
    account = config.accounts.get(access_key)
    if account is None:
        raise AclDenied(f"no ACL account for accessKey {access_key!r}", authentication=True)
    if account.white_remote_address and address_matches(account.white_remote_address, remote_ip):
        return
    if not signature_ok(account.secret_key):
        raise AclDenied(f"signature check failed for accessKey {access_key!r}", authentication=True)
    if account.admin:
        return
    if admin_only:
        raise AclDenied(f"accessKey {access_key!r} is no admin: {admin_only} needs an admin account",
                        authentication=False)
    for name, is_group, need in resources:
        table, default = ((account.group_perms, account.default_group_perm) if is_group
                          else (account.topic_perms, account.default_topic_perm))
        owned = table.get(name, default)
        if owned == DENY or not owned & need:
            kind = "group" if is_group else "topic"
            raise AclDenied(f"accessKey {access_key!r} has no {'PUB' if need == PUB else 'SUB'} permission on "
                            f"{kind} {name}", authentication=False)


# -- remoting signatures (RocketMQ's AclClientRPCHook) ----------------------------------------------
ACCESS_KEY, SECURITY_TOKEN, SIGNATURE = "AccessKey", "SecurityToken", "Signature"


def remoting_content(ext_fields: dict[str, str], body: bytes) -> bytes:
    """What a remoting signature covers: the ext field values in key order (without Signature and
    the unique-key query flag), then the body."""
    text = "".join(v for k, v in sorted(ext_fields.items()) if k not in (SIGNATURE, "UNIQUE_MSG_QUERY_FLAG"))
    return text.encode() + (body or b"")


def sign_remoting(secret_key: str, content: bytes) -> str:
    return base64.b64encode(hmac.new(secret_key.encode(), content, hashlib.sha1).digest()).decode()


@dataclass(frozen=True)
class SessionCredentials:
    access_key: str
    secret_key: str


def sign_request(ext_fields: dict[str, str], body: bytes, creds: SessionCredentials) -> None:
    """Add AccessKey and Signature to a remoting request's ext fields."""
    ext_fields.pop(SIGNATURE, None)
    ext_fields[ACCESS_KEY] = creds.access_key
    ext_fields[SIGNATURE] = sign_remoting(creds.secret_key, remoting_content(ext_fields, body))


def tools_credentials(path: Path | None = None) -> SessionCredentials | None:
    """The keys of ``$ROCKETMQ_HOME/conf/tools.yml`` (None when the file is absent)."""
    path = path or _conf_path("tools.yml")
    if not path.exists():
        return None
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as e:
        raise AclConfigError(f"cannot read {path}: {e}".replace("\n", " ")) from e
    if not isinstance(data, dict) or not data.get("accessKey") or not data.get("secretKey"):
        raise AclConfigError(f"{path}: needs accessKey and secretKey")
    return SessionCredentials(str(data["accessKey"]), str(data["secretKey"]))


def _conf_path(name: str) -> Path:
    home = os.environ.get("ROCKETMQ_HOME")
    return Path(home, "conf", name) if home else Path("conf", name)
