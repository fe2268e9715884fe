# -*- test-case-name: tests.unit.tls.test_psk -*-
"""What both TLS-PSK sides agree to speak: suites, versions, identities.

The settings are checked once (weak suites refused unless allowed, TLS 1.3
refused, only plain PSK key exchange) into a frozen L{TlsPolicy}, and each
options object makes its one OpenSSL context from it (L{new_context}).
This is plain pyOpenSSL; the private binding PSK needs is L{bipgw.tls._binding}.
"""

from __future__ import annotations

import functools
import re

import attrs
from constantly import NamedConstant
from OpenSSL import SSL
from twisted.internet.ssl import TLSVersion

from bipgw.errors import BipGwError

__all__ = ["DEFAULT_CIPHERS", "MAX_IDENTITY_LENGTH", "TlsConfigError"]

DEFAULT_CIPHERS = (
    "PSK-AES128-CBC-SHA256:PSK-AES128-CBC-SHA:PSK-AES256-CBC-SHA384:PSK-AES128-GCM-SHA256"
)
"""The Amendment B suites (plus SGP.02's GCM suite) without NULL and 3DES,
in the server's order of preference: a real UICC offers C{00AE} first."""

MAX_IDENTITY_LENGTH = 128
"""Longest identity or identity hint we send.  RFC 4279 section 5.3 obliges
peers to accept 128 bytes and no more, and every OpenSSL version fits it."""

_PROTOCOLS = {
    TLSVersion.TLSv1_0: SSL.TLS1_VERSION,
    TLSVersion.TLSv1_1: SSL.TLS1_1_VERSION,
    TLSVersion.TLSv1_2: SSL.TLS1_2_VERSION,
}
_WEAK = re.compile(r"NULL|3DES|DES-CBC|RC4|EXP", re.IGNORECASE)
_SEPARATORS = re.compile(r"[:, ;]+")
_POLICY_CACHE_SIZE = 32


class TlsConfigError(BipGwError, ValueError):
    """A TLS-PSK setting that cannot be honoured; the message names it."""


@attrs.frozen
class TlsPolicy:
    """Validated cipher and version settings shared by both sides."""

    cipher_string: str
    suites: tuple[str, ...]
    min_version: NamedConstant
    max_version: NamedConstant


def _suites_for(cipher_string: str) -> list[str]:
    """The TLS <= 1.2 suites OpenSSL selects for C{cipher_string}."""
    probe = SSL.Context(SSL.TLS_METHOD)
    probe.set_cipher_list(cipher_string.encode("ascii"))
    names = SSL.Connection(probe, None).get_cipher_list()
    return [n for n in names if not n.startswith("TLS_")]


@functools.lru_cache(maxsize=_POLICY_CACHE_SIZE)
def make_policy(
    ciphers: str, allow_weak: bool, min_version: NamedConstant, max_version: NamedConstant
) -> TlsPolicy:
    """Check the settings; refuse weak suites unless explicitly allowed.

    Weakness is judged on the suites OpenSSL actually selects, so an alias
    such as C{PSK} that drags in the NULL suites is caught as well as a
    suite named outright.

    Cached: a card builds options for every admin session and the answer
    depends only on these arguments and the OpenSSL build, so a fleet pays
    for the probing once.  The policy is frozen and holds no key; refusals
    are not cached (they raise); the bound keeps hostile config reloads from
    growing memory.
    """
    for name, version in (("min_version", min_version), ("max_version", max_version)):
        if version not in _PROTOCOLS:
            raise TlsConfigError(
                f"{name}: {version!r} is not supported; TLS-PSK here means TLS 1.0 to 1.2 "
                "(TLS 1.3 uses a different PSK mechanism)"
            )
    if _PROTOCOLS[min_version] > _PROTOCOLS[max_version]:
        raise TlsConfigError(f"min_version {min_version!r} is above max_version {max_version!r}")
    if not ciphers.isascii() or not ciphers.strip():
        raise TlsConfigError(f"ciphers: {ciphers!r} is not an OpenSSL cipher string")
    for token in _SEPARATORS.split(ciphers.strip()):
        if token.upper().startswith("@SECLEVEL"):
            raise TlsConfigError(
                f"ciphers: {token!r} not allowed; the security level follows "
                "allow_weak and min_version"
            )
        if token[:1] in ("!", "-", "+", "@"):
            continue
        if not allow_weak and _WEAK.search(token):
            raise TlsConfigError(
                f"ciphers: {token!r} is a weak (NULL/3DES) suite; pass allow_weak=True "
                "to configure it"
            )
        try:
            _suites_for(token)
        except SSL.Error:
            raise TlsConfigError(
                f"ciphers: {token!r} matches no suite in "
                f"{SSL.OpenSSL_version(SSL.OPENSSL_VERSION).decode()}"
            ) from None
    try:
        suites = _suites_for(ciphers)
    except SSL.Error:
        raise TlsConfigError(f"ciphers: {ciphers!r} selects no suite") from None
    weak = [s for s in suites if _WEAK.search(s)]
    if weak and not allow_weak:
        raise TlsConfigError(
            f"ciphers: {ciphers!r} selects weak suites {', '.join(weak)}; "
            "pass allow_weak=True or exclude them"
        )
    foreign = [s for s in suites if not s.startswith("PSK-")]
    if foreign or not suites:
        raise TlsConfigError(
            f"ciphers: {ciphers!r} selects {', '.join(foreign) or 'no suite'}; only plain "
            "PSK key exchange suites (RFC 4279 section 2) are allowed"
        )
    if weak or _PROTOCOLS[min_version] < SSL.TLS1_2_VERSION:
        # OpenSSL 3 refuses NULL/3DES and TLS < 1.2 above security level 0.
        ciphers = f"{ciphers}:@SECLEVEL=0"
    return TlsPolicy(ciphers, tuple(suites), min_version, max_version)


def new_context(policy: TlsPolicy) -> SSL.Context:
    """A context with the policy applied and session resumption off.

    Resumption is off so that every connection runs the PSK callback: a
    resumed session would skip the key lookup (and a key rotation) and leave
    no identity to report.  Idle connections give their read and write
    buffers back (C{SSL_MODE_RELEASE_BUFFERS}): an admin session waits most
    of its life for the platform, and the gateway holds thousands of them.
    """
    ctx = SSL.Context(SSL.TLS_METHOD)
    ctx.set_mode(SSL.MODE_RELEASE_BUFFERS)
    ctx.set_min_proto_version(_PROTOCOLS[policy.min_version])
    ctx.set_max_proto_version(_PROTOCOLS[policy.max_version])
    ctx.set_cipher_list(policy.cipher_string.encode("ascii"))
    ctx.set_options(SSL.OP_NO_TICKET | SSL.OP_NO_RENEGOTIATION | SSL.OP_NO_COMPRESSION)
    ctx.set_session_cache_mode(SSL.SESS_CACHE_OFF)
    return ctx


def check_identity(field: str, value: object) -> bytes:
    if not isinstance(value, bytes):
        raise TlsConfigError(f"{field}: must be bytes, not {type(value).__name__}")
    if not 0 < len(value) <= MAX_IDENTITY_LENGTH or b"\0" in value:
        raise TlsConfigError(
            f"{field}: {value!r} must be 1 to {MAX_IDENTITY_LENGTH} bytes without NUL"
        )
    return value
