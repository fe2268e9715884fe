# -*- test-case-name: tests.unit.config -*-
"""What every listening table declares alike: C{listen}, C{backlog} and TLS server files.

C{[admin]}, C{[platform]}, C{[http_api]} and C{[portal]} each listen on an
endpoint string with a listen backlog beside it, and C{[platform]} and
C{[ingest]} each read a PEM certificate and key for a TLS server.  The
fields and the reading are written once here, so the tables cannot drift
apart in their checks, their defaults or the keys their errors name.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import attrs

from bipgw.config._kinds import Integer
from bipgw.config._netkinds import DEFAULT_BACKLOG, ServerEndpoint
from bipgw.config._schema import REQUIRED, ConfigError, keyword_setting, setting

#: The C{backlog} key's sentence for tables whose C{listen} may be any endpoint type.
BACKLOG_DOC = (
    "The listen backlog: connections the kernel queues before they are accepted"
    " (tcp, tcp6, ssl and unix endpoints; capped by net.core.somaxconn)."
)


def listen_field(doc: str, default: object = REQUIRED, *, plain: bool = False) -> Any:
    """The C{listen} key of a table: a Twisted server endpoint string.

    @param doc: what listens there, for the documentation.
    @param default: the raw default (required unless given).
    @param plain: refuse endpoint types that bring their own TLS (see
        L{ServerEndpoint.plain}).
    """
    return attrs.field(metadata=setting(ServerEndpoint(plain=plain), default, doc))


def backlog_field(doc: str = BACKLOG_DOC) -> Any:
    """The C{backlog} key that goes with a table's C{listen}: keyword-only, default 1024."""
    return keyword_setting(Integer(1, 65535), DEFAULT_BACKLOG, doc)


_PEM_BEGIN = b"-----BEGIN CERTIFICATE-----"
_MAX_PEM = 1024 * 1024


def read_pem_file(path: Path, key: str) -> bytes:
    """The bytes of a PEM file, at most 1 MiB.

    @param key: the dotted key that names the file, for the error.
    @raise ConfigError: naming C{key}, if it cannot be read or is larger.
    """
    try:
        with open(path, "rb") as f:
            data = f.read(_MAX_PEM + 1)
    except OSError as e:
        raise ConfigError(f"cannot read {path}: {e.strerror or e}", key=key) from None
    if len(data) > _MAX_PEM:
        raise ConfigError(f"{path} is larger than {_MAX_PEM} bytes", key=key)
    return data


def pem_certificates(path: Path, key: str) -> list[Any]:
    """The certificates of a PEM file, in order (pyOpenSSL X509 objects).

    @raise ConfigError: naming C{key}, if there is none or one does not parse.
    """
    from OpenSSL import crypto
    from twisted.internet import ssl

    blocks = read_pem_file(path, key).split(_PEM_BEGIN)[1:]
    try:
        certificates = [ssl.Certificate.loadPEM(_PEM_BEGIN + b).original for b in blocks]
    except (crypto.Error, ValueError):
        certificates = []
    if not certificates:
        raise ConfigError(f"{path} holds no readable PEM certificate", key=key)
    return certificates


@attrs.frozen
class PemFile:
    """A file a table names, and the dotted key that names it (for errors)."""

    path: Path
    key: str


def server_tls_options(certificate: PemFile, private_key: PemFile, ca: PemFile | None) -> Any:
    """TLS server options (TLS 1.2 or later) from a certificate chain and its key.

    The files are read here, when the gateway is built (not when the
    configuration is checked, which reads no key), so a missing file, a
    file that is not PEM or a key that does not match the certificate stops
    the gateway before it listens.

    @param ca: when given, client certificates signed by these CAs are
        verified and required.
    @return: a L{twisted.internet.ssl.CertificateOptions}.
    @raise ConfigError: naming the key whose file is unusable.
    """
    from OpenSSL import SSL, crypto
    from twisted.internet import ssl

    chain = pem_certificates(certificate.path, certificate.key)
    data = read_pem_file(private_key.path, private_key.key)
    try:
        key = ssl.KeyPair.load(data, crypto.FILETYPE_PEM)
    except (crypto.Error, ValueError):
        raise ConfigError(
            f"{private_key.path} holds no PEM private key", key=private_key.key
        ) from None
    options: dict[str, Any] = {}
    if ca is not None:
        options = {
            "verify": True,
            "caCerts": pem_certificates(ca.path, ca.key),
            "requireCertificate": True,
        }
    made = ssl.CertificateOptions(
        privateKey=key.original,
        certificate=chain[0],
        extraCertChain=chain[1:],
        raiseMinimumTo=ssl.TLSVersion.TLSv1_2,
        **options,
    )
    try:
        made.getContext()  # checks the key against the certificate
    except SSL.Error:
        raise ConfigError(
            f"the key in {private_key.path} does not match the certificate in {certificate.path}",
            key=private_key.key,
        ) from None
    return made
