"""TLS on the proxy's gRPC port, as RocketMQ's proxy serves it.

``tls.server.mode`` (RocketMQ's TlsSystemConfig property; here a key of rmq-proxy.json):

- ``disabled``: plaintext only (a TLS handshake is closed by the HTTP/2 server);
- ``permissive`` (RocketMQ's default): plaintext and TLS on the same port -- the first byte of each
  connection says which (a TLS record starts with 0x16, an HTTP/2 connection with ``PRI *``), see
  :mod:`proxy.tls_relay`. The Java and Go SDKs use TLS unless told otherwise, the Python and Node.js
  SDKs plaintext, so this is the mode in which every SDK connects with its defaults;
- ``enforcing``: TLS only.

The certificate: with ``tlsTestModeEnable`` (default true) a self-signed one made at start (the Java and
Go SDKs trust any certificate by default); otherwise ``tlsCertPath`` / ``tlsKeyPath`` (PEM), by default
``$ROCKETMQ_HOME/conf/tls/rocketmq.crt`` / ``rocketmq.key``.
"""

from __future__ import annotations

import datetime
import enum
import ipaddress
import os
import socket
import ssl
from pathlib import Path

import grpc


class TlsMode(enum.Enum):
    DISABLED = "disabled"
    PERMISSIVE = "permissive"
    ENFORCING = "enforcing"

    @classmethod
    def parse(cls, text: str) -> TlsMode:
        try:
            return cls(text.strip().lower())
        except ValueError:
            raise ValueError(f"tls.server.mode must be disabled, permissive or enforcing, not {text!r}") from None


def default_cert_paths() -> tuple[str, str]:
    """RocketMQ's defaults: (``$ROCKETMQ_HOME/conf/tls/rocketmq.crt``, ``.../rocketmq.key``)."""
    home = os.environ.get("ROCKETMQ_HOME", ".")
    return (os.path.join(home, "conf", "tls", "rocketmq.crt"), os.path.join(home, "conf", "tls", "rocketmq.key"))


def load_key_pair(cert_path: str, key_path: str) -> tuple[bytes, bytes]:
    """(certificate chain PEM, private key PEM) read from the files; a clear error when one is missing."""
    out = []
    for what, path in (("tlsCertPath", cert_path), ("tlsKeyPath", key_path)):
        try:
            out.append(Path(path).read_bytes())
        except OSError as e:
            raise ValueError(f"{what} {path}: {e.strerror or e} (or set tlsTestModeEnable to true)") from None
        if b"-----BEGIN" not in out[-1]:
            raise ValueError(f"{what} {path}: not a PEM file")
    try:  # the pair checked now, not at the first client's handshake
        ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_cert_chain(cert_path, key_path, password=lambda: b"")
    except ssl.SSLError as e:
        raise ValueError(f"tlsCertPath {cert_path} / tlsKeyPath {key_path}: {e.reason or e} "
                         "(a certificate and its unencrypted private key, PEM)") from None
    return out[0], out[1]


def self_signed(hostnames: tuple[str, ...] = ("localhost",), days: int = 3650) -> tuple[bytes, bytes]:
    """A new EC P-256 key and a self-signed certificate for it, naming ``hostnames`` (DNS names or IP
    addresses) and this host's name; returns (certificate PEM, private key PEM)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    names: list[x509.GeneralName] = []
    for h in dict.fromkeys((*hostnames, socket.gethostname(), "127.0.0.1")):
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(h)))
        except ValueError:
            names.append(x509.DNSName(h))
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostnames[0])])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + datetime.timedelta(days=days))
            .add_extension(x509.SubjectAlternativeName(names), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


def server_credentials(test_mode: bool, cert_path: str, key_path: str) -> tuple[grpc.ServerCredentials, str]:
    """The gRPC server's TLS credentials -- self-signed in test mode, else the PEM files -- and where the
    certificate came from, for the log. No client certificate is asked for (RocketMQ's ClientAuth.NONE)."""
    if test_mode:
        cert, key = self_signed()
        source = "a self-signed certificate made at start (tlsTestModeEnable)"
    else:
        defaults = default_cert_paths()
        source = cert_path or defaults[0]
        cert, key = load_key_pair(source, key_path or defaults[1])
    return grpc.ssl_server_credentials([(key, cert)]), source
