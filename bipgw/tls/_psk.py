# -*- test-case-name: tests.unit.tls.test_psk -*-
"""TLS-PSK (RFC 4279) connection creators for Twisted's TLS layer.

A SIM card's security domain speaks TLS with a pre-shared key (GlobalPlatform
Amendment B, SCP81), never with certificates.  pyOpenSSL has no PSK API, but
the OpenSSL binding it is built on exposes C{SSL_CTX_set_psk_server_callback},
C{SSL_CTX_set_psk_client_callback} and C{SSL_CTX_use_psk_identity_hint}, and
those work on the C{SSL_CTX} behind an L{OpenSSL.SSL.Context}.  This is the
only bipgw module that touches that binding, so when a dependency upgrade
drops the symbols the failure is in one place and says so (L{check_binding}).

The creators plug into L{twisted.protocols.tls.TLSMemoryBIOFactory}, and so
into any endpoint, like Twisted's own C{CertificateOptions}.
"""

from __future__ import annotations

import functools
import re
import weakref
from collections.abc import Callable
from typing import Any

import attrs
from constantly import NamedConstant
from OpenSSL import SSL
from OpenSSL._util import ffi as _ffi
from OpenSSL._util import lib as _lib
from twisted.internet.interfaces import (
    IOpenSSLClientConnectionCreator,
    IOpenSSLServerConnectionCreator,
)
from twisted.internet.ssl import TLSVersion
from twisted.logger import Logger
from zope.interface import implementer

from bipgw.errors import BipGwError

DEFAULT_CIPHERS = (
    "PSK-AES128-CBC-SHA256:PSK-AES128-CBC-SHA:PSK-AES256-CBC-SHA384:PSK-AES128-GCM-SHA256"
)
"""The Amendment B suites (plus SGP.02's GCM suite) without NULL and 3DES,
in the server's order of preference: a real UICC offers C{00AE} first."""

MAX_IDENTITY_LENGTH = 128
"""Longest identity or identity hint we send.  RFC 4279 section 5.3 obliges
peers to accept 128 bytes and no more, and every OpenSSL version fits it."""

MAX_KEY_LENGTH = 256
"""Longest client key: OpenSSL's C{PSK_MAX_PSK_LEN} is at least this."""

_REQUIRED_SYMBOLS = (
    "SSL_CTX_set_psk_server_callback",
    "SSL_CTX_set_psk_client_callback",
    "SSL_CTX_use_psk_identity_hint",
)
_SERVER_CB = "unsigned int(SSL *, char *, unsigned char *, unsigned int)"
_CLIENT_CB = "unsigned int(SSL *, char *, char *, unsigned int, unsigned char *, unsigned int)"

_PROTOCOLS = {
    TLSVersion.TLSv1_0: SSL.TLS1_VERSION,
    TLSVersion.TLSv1_1: SSL.TLS1_1_VERSION,
    TLSVersion.TLSv1_2: SSL.TLS1_2_VERSION,
}
_WEAK = re.compile(r"NULL|3DES|DES-CBC|RC4|EXP", re.IGNORECASE)
_SEPARATORS = re.compile(r"[:, ;]+")
_ALERT_FATAL = 2
_KEY_MISMATCH_ALERTS = frozenset({20, 51})  # bad_record_mac, decrypt_error
_POLICY_CACHE_SIZE = 32
_binding_checked = False


class PskUnavailableError(BipGwError, RuntimeError):
    """The installed OpenSSL binding lacks what TLS-PSK needs."""


class TlsConfigError(BipGwError, ValueError):
    """A TLS-PSK setting that cannot be honoured; the message names it."""


def check_binding(lib: object = _lib) -> None:
    """Fail loudly if TLS-PSK cannot work with the installed libraries.

    Called when options are built, and by a test, so an upgrade of
    C{cryptography} or C{pyOpenSSL} that removes the private hooks we rely
    on breaks the build with this message rather than with an
    C{AttributeError} deep inside a handshake.

    The installed binding cannot change while the process runs, so once it
    has passed it is not probed again: every card session builds options,
    and the probe costs an C{SSL_CTX}.

    @param lib: the binding to inspect (a stand-in in tests).
    @raise PskUnavailableError: naming every missing piece and the versions.
    """
    global _binding_checked
    if lib is _lib and _binding_checked:
        return
    missing = [name for name in _REQUIRED_SYMBOLS if not hasattr(lib, name)]
    ctx = SSL.Context(SSL.TLS_METHOD)
    if not hasattr(ctx, "_context"):
        missing.append("OpenSSL.SSL.Context._context")
    elif not hasattr(SSL.Connection(ctx, None), "_ssl"):
        missing.append("OpenSSL.SSL.Connection._ssl")
    if missing:
        import cryptography
        import OpenSSL

        raise PskUnavailableError(
            "TLS-PSK needs "
            + ", ".join(missing)
            + f", absent with pyOpenSSL {OpenSSL.__version__}, cryptography "
            f"{cryptography.__version__} ({SSL.OpenSSL_version(SSL.OPENSSL_VERSION).decode()}); "
            "pin the previous versions or port bipgw.tls._psk"
        )
    if lib is _lib:
        _binding_checked = True


@attrs.frozen
class _TlsPolicy:
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
def _make_policy(
    ciphers: str, allow_weak: bool, min_version: NamedConstant, max_version: NamedConstant
) -> _TlsPolicy:
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
    return _TlsPolicy(ciphers, tuple(suites), min_version, max_version)


def _new_context(policy: _TlsPolicy) -> SSL.Context:
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


def _check_identity(field: str, value: object) -> bytes:
    if not isinstance(value, bytes):
        raise TlsConfigError(f"{field}: must be bytes, not {type(value).__name__}")
    if not 0 < len(value) <= MAX_IDENTITY_LENGTH or b"\0" in value:
        raise TlsConfigError(
            f"{field}: {value!r} must be 1 to {MAX_IDENTITY_LENGTH} bytes without NUL"
        )
    return value


@attrs.define
class _PskState:
    """What one connection's handshake established."""

    claimed: bytes | None = None
    identity: bytes | None = None
    refused: bool = False
    done: bool = False


_STATES: weakref.WeakKeyDictionary[SSL.Connection, _PskState] = weakref.WeakKeyDictionary()


def _address(ssl: Any) -> int:
    return int(_ffi.cast("uintptr_t", ssl))


def psk_identity(connection: object) -> bytes | None:
    """The PSK identity a completed handshake authenticated, or C{None}.

    The SCP81 server calls this from C{handshakeCompleted} to find which card
    is on the line; SSL_get_psk_identity is not bound, so the identity is the
    one captured in the PSK callback.  It is reported only once the handshake
    has finished, i.e. once the peer has proven it holds the key.

    @param connection: an L{OpenSSL.SSL.Connection}, or a TLS transport
        (a L{twisted.protocols.tls.TLSMemoryBIOProtocol}, which is what a
        protocol sees as C{self.transport}) whose C{getHandle} returns one.
    """
    if not isinstance(connection, SSL.Connection):
        connection = getattr(connection, "getHandle", lambda: None)()
    state = _STATES.get(connection) if isinstance(connection, SSL.Connection) else None
    return None if state is None else state.identity


@attrs.define
class PskServerStats:
    """Handshake outcomes on one listener, for metrics and the portal.

    @ivar completed: handshakes that finished.
    @ivar unknown_identity: refused because the lookup did not know the identity.
    @ivar lookup_error: refused because the lookup raised or returned something
        that is not a usable key.
    @ivar key_mismatch: failed after the identity was accepted because the
        peer's Finished did not verify: almost always the wrong key.
    @ivar other_failure: other handshakes ended by a fatal alert (no common
        suite or version, malformed messages, peer aborts).
    """

    completed: int = 0
    unknown_identity: int = 0
    lookup_error: int = 0
    key_mismatch: int = 0
    other_failure: int = 0


class _PskOptions:
    """What both sides share: the validated policy, the context, the callbacks."""

    _log = Logger()

    def __init__(
        self, ciphers: str, allow_weak: bool, min_version: NamedConstant, max_version: NamedConstant
    ) -> None:
        check_binding()
        self._policy = _make_policy(ciphers, allow_weak, min_version, max_version)
        self._context = _new_context(self._policy)

    @property
    def suites(self) -> tuple[str, ...]:
        """The suites offered, in order of preference."""
        return self._policy.suites

    def _install(self, setter: Any, signature: str, on_psk: Any, on_info: Any) -> None:
        """Hand OpenSSL our PSK callback; watch handshakes through the info callback.

        A collected cffi callback would leave OpenSSL calling freed memory,
        so both these options and the context (which every connection keeps
        alive) hold it.
        """
        self._psk_callback = _ffi.callback(signature, on_psk, error=0)
        setter(self._context._context, self._psk_callback)
        self._context._bipgw_psk_callback = self._psk_callback  # type: ignore[attr-defined]
        self._context.set_info_callback(on_info)


@implementer(IOpenSSLServerConnectionCreator)
class PskServerOptions(_PskOptions):
    """Server-side TLS-PSK, for the gateway's SCP81 listener.

    @ivar stats: the handshake counters of every connection made from these
        options.
    """

    def __init__(
        self,
        lookup: Callable[[bytes], bytes | None],
        *,
        ciphers: str = DEFAULT_CIPHERS,
        allow_weak: bool = False,
        min_version: NamedConstant = TLSVersion.TLSv1_2,
        max_version: NamedConstant = TLSVersion.TLSv1_2,
        identity_hint: bytes | None = None,
    ) -> None:
        """
        @param lookup: identity -> key, or C{None} for an unknown identity.
            It runs inside the handshake on the reactor thread, so it must be
            synchronous and fast (keys preloaded or cached).  If it raises,
            the failure is logged and the handshake refused.
        @param ciphers: an OpenSSL cipher string of plain PSK suites, in the
            server's order of preference (which wins over the client's).
        @param allow_weak: permit NULL and 3DES suites (and security level 0):
            some deployed cards offer nothing better, but it must be an
            explicit operator choice.
        @param min_version: lowest protocol version; below TLS 1.2 sets
            security level 0, which OpenSSL 3 needs for TLS 1.0/1.1.
        @param max_version: highest protocol version, at most TLS 1.2.
        @param identity_hint: sent in ServerKeyExchange when given.
        @raise TlsConfigError: on any setting that cannot be honoured.
        """
        super().__init__(ciphers, allow_weak, min_version, max_version)
        self._lookup = lookup
        self.stats = PskServerStats()
        self._by_address: weakref.WeakValueDictionary[int, SSL.Connection] = (
            weakref.WeakValueDictionary()
        )
        self._context.set_options(SSL.OP_CIPHER_SERVER_PREFERENCE)
        if identity_hint is not None:
            hint = _check_identity("identity_hint", identity_hint)
            if _lib.SSL_CTX_use_psk_identity_hint(self._context._context, hint) != 1:
                raise TlsConfigError(f"identity_hint: {hint!r} refused by OpenSSL")
        self._install(_lib.SSL_CTX_set_psk_server_callback, _SERVER_CB, self._on_psk, self._on_info)

    def __repr__(self) -> str:
        return f"<PskServerOptions suites={':'.join(self.suites)} stats={self.stats}>"

    def serverConnectionForTLS(self, tlsProtocol: object) -> SSL.Connection:
        """Make the connection for one accepted client (Twisted's interface)."""
        connection = SSL.Connection(self._context, None)
        _STATES[connection] = _PskState()
        self._by_address[_address(connection._ssl)] = connection
        return connection

    def _on_psk(self, ssl: Any, identity: Any, psk: Any, max_psk_len: int) -> int:
        """OpenSSL asks for the key of the identity in the ClientKeyExchange.

        Returns the key length, or 0 to refuse (OpenSSL then sends the
        unknown_psk_identity alert).  Never raises: an exception escaping
        into C would be printed and the key lookup silently skipped.
        """
        try:
            connection = self._by_address.get(_address(ssl))
            state = None if connection is None else _STATES.get(connection)
            if state is None:
                self._log.error("PSK request for a connection these options did not make")
                return 0
            state.refused = True
            name = b"" if identity == _ffi.NULL else _ffi.string(identity)
            try:
                key = self._lookup(name)
            except Exception:
                self.stats.lookup_error += 1
                self._log.failure(
                    "PSK key lookup failed for identity {identity!r}; handshake refused",
                    identity=name,
                )
                return 0
            if key is None:
                self.stats.unknown_identity += 1
                self._log.info(
                    "unknown PSK identity {identity!r}; handshake refused", identity=name
                )
                return 0
            if not isinstance(key, bytes) or not 0 < len(key) <= max_psk_len:
                self.stats.lookup_error += 1
                what = f"{len(key)} bytes" if isinstance(key, bytes) else type(key).__name__
                self._log.error(
                    "PSK key lookup for identity {identity!r} returned {what}, not 1 to {limit}"
                    " bytes; handshake refused",
                    identity=name,
                    what=what,
                    limit=max_psk_len,
                )
                return 0
            _ffi.memmove(psk, key, len(key))
            state.refused = False
            state.claimed = name
            return len(key)
        except Exception:
            self._log.failure("TLS-PSK server callback failed; handshake refused")
            return 0

    def _on_info(self, connection: SSL.Connection, where: int, ret: int) -> None:
        """Count how each handshake ended, and publish the identity on success."""
        state = _STATES.get(connection)
        if state is None or state.done:
            return
        if where & SSL.SSL_CB_HANDSHAKE_DONE:
            state.done = True
            state.identity = state.claimed
            self.stats.completed += 1
        elif where & SSL.SSL_CB_ALERT and ret >> 8 == _ALERT_FATAL:
            state.done = True
            if state.refused:
                return  # counted by the PSK callback
            if state.claimed is not None and ret & 0xFF in _KEY_MISMATCH_ALERTS:
                self.stats.key_mismatch += 1
                self._log.info(
                    "TLS-PSK key mismatch for identity {identity!r}", identity=state.claimed
                )
            else:
                self.stats.other_failure += 1


@implementer(IOpenSSLClientConnectionCreator)
class PskClientOptions(_PskOptions):
    """Client-side TLS-PSK, for a simulated card's BIP channel."""

    def __init__(
        self,
        identity: bytes,
        key: bytes,
        *,
        ciphers: str = DEFAULT_CIPHERS,
        allow_weak: bool = False,
        min_version: NamedConstant = TLSVersion.TLSv1_2,
        max_version: NamedConstant = TLSVersion.TLSv1_2,
    ) -> None:
        """
        @param identity: the PSK identity to present (1 to 128 bytes, no NUL).
        @param key: the pre-shared key; never logged or shown in a repr.
        @param ciphers: an OpenSSL cipher string of plain PSK suites, offered
            in this order.
        @param allow_weak: permit NULL and 3DES suites (security level 0).
        @param min_version: lowest protocol version (see L{PskServerOptions}).
        @param max_version: highest protocol version, at most TLS 1.2.
        @raise TlsConfigError: on any setting that cannot be honoured.
        """
        self._identity = _check_identity("identity", identity)
        if not isinstance(key, bytes) or not 0 < len(key) <= MAX_KEY_LENGTH:
            raise TlsConfigError(f"key: must be 1 to {MAX_KEY_LENGTH} bytes")
        self._key = key
        super().__init__(ciphers, allow_weak, min_version, max_version)
        self._install(_lib.SSL_CTX_set_psk_client_callback, _CLIENT_CB, self._on_psk, self._on_info)

    @property
    def identity(self) -> bytes:
        """The identity this client presents."""
        return self._identity

    def __repr__(self) -> str:
        return f"<PskClientOptions identity={self._identity!r} suites={':'.join(self.suites)}>"

    def clientConnectionForTLS(self, tlsProtocol: object) -> SSL.Connection:
        """Make the connection for one outgoing channel (Twisted's interface)."""
        connection = SSL.Connection(self._context, None)
        _STATES[connection] = _PskState(claimed=self._identity)
        return connection

    def _on_psk(
        self,
        ssl: Any,
        hint: Any,
        identity: Any,
        max_identity_len: int,
        psk: Any,
        max_psk_len: int,
    ) -> int:
        """OpenSSL asks for our identity (NUL-terminated) and key."""
        try:
            # max_identity_len counts the terminating NUL (SSL_CTX_set_psk_client_callback(3)).
            if len(self._identity) >= max_identity_len or len(self._key) > max_psk_len:
                self._log.error(
                    "TLS-PSK identity or key longer than OpenSSL allows "
                    "({max_identity_len}/{max_psk_len} bytes); handshake aborted",
                    max_identity_len=max_identity_len,
                    max_psk_len=max_psk_len,
                )
                return 0
            _ffi.memmove(identity, self._identity + b"\0", len(self._identity) + 1)
            _ffi.memmove(psk, self._key, len(self._key))
            return len(self._key)
        except Exception:
            self._log.failure("TLS-PSK client callback failed; handshake aborted")
            return 0

    def _on_info(self, connection: SSL.Connection, where: int, ret: int) -> None:
        """Publish the identity once the server has accepted our key."""
        state = _STATES.get(connection)
        if state is not None and where & SSL.SSL_CB_HANDSHAKE_DONE:
            state.done = True
            state.identity = state.claimed
