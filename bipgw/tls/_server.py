# -*- test-case-name: tests.unit.tls.test_psk -*-
"""The server side of TLS-PSK: the gateway's SCP81 listener.

L{PskServerOptions} plugs into L{twisted.protocols.tls.TLSMemoryBIOFactory}
(and so into any endpoint) like Twisted's own C{CertificateOptions}: it
looks each card's key up by the identity the card presents, inside the
handshake, and counts how every handshake ended (L{PskServerStats}).
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import Any

import attrs
from constantly import NamedConstant
from OpenSSL import SSL
from twisted.internet.interfaces import IOpenSSLServerConnectionCreator, IReactorTime
from twisted.internet.ssl import TLSVersion
from twisted.logger import Logger
from zope.interface import implementer

from bipgw.core import RateLimitedLog
from bipgw.tls._binding import (
    PskContext,
    PskState,
    c_string,
    connection_address,
    copy_into,
    state_of,
)
from bipgw.tls._policy import DEFAULT_CIPHERS, check_identity

__all__ = ["PskServerOptions", "PskServerStats"]

_ALERT_FATAL = 2
_KEY_MISMATCH_ALERTS = frozenset({20, 51})  # bad_record_mac, decrypt_error
# The info callback's events that end a handshake; it ignores all others.
_ENDINGS = SSL.SSL_CB_HANDSHAKE_DONE | SSL.SSL_CB_ALERT


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


@implementer(IOpenSSLServerConnectionCreator)
class PskServerOptions:
    """Server-side TLS-PSK, for the gateway's SCP81 listener.

    @ivar stats: the handshake counters of every connection made from these
        options.
    """

    _log = Logger()

    def __init__(
        self,
        lookup: Callable[[bytes], bytes | None],
        *,
        ciphers: str = DEFAULT_CIPHERS,
        allow_weak: bool = False,
        min_version: NamedConstant = TLSVersion.TLSv1_2,
        max_version: NamedConstant = TLSVersion.TLSv1_2,
        identity_hint: bytes | None = None,
        clock: IReactorTime | None = None,
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
        @param clock: times the rate limit of the lines a client can trigger
            (unknown identities, key mismatches); the reactor by default.
        @raise TlsConfigError: on any setting that cannot be honoured.
        """
        self._tls = PskContext(ciphers, allow_weak, min_version, max_version)
        self._lookup = lookup
        self.stats = PskServerStats()
        # Anyone can start handshakes: what they trigger is logged at a bounded
        # rate.  Made on first use: checking a configuration builds these
        # options and must not install a reactor.
        self._clock = clock
        self._ratelog: RateLimitedLog | None = None
        self._by_address: weakref.WeakValueDictionary[int, SSL.Connection] = (
            weakref.WeakValueDictionary()
        )
        self._tls.context.set_options(SSL.OP_CIPHER_SERVER_PREFERENCE)
        if identity_hint is not None:
            self._tls.use_identity_hint(check_identity("identity_hint", identity_hint))
        self._tls.install_server(self._on_psk, self._on_info)

    @property
    def ratelog(self) -> RateLimitedLog:
        """The rate limit of the lines a client can trigger (made on first use)."""
        if self._ratelog is None:
            clock = self._clock
            if clock is None:
                from twisted.internet import reactor

                clock = reactor
            assert clock is not None
            self._ratelog = RateLimitedLog(self._log, clock)
        return self._ratelog

    @property
    def suites(self) -> tuple[str, ...]:
        """The suites offered, in order of preference."""
        return self._tls.suites

    def __repr__(self) -> str:
        return f"<PskServerOptions suites={':'.join(self.suites)} stats={self.stats}>"

    def serverConnectionForTLS(self, tlsProtocol: object) -> SSL.Connection:
        """Make the connection for one accepted client (Twisted's interface)."""
        connection = self._tls.connection(PskState())
        self._by_address[connection_address(connection._ssl)] = connection
        return connection

    def _on_psk(self, ssl: Any, identity: Any, psk: Any, max_psk_len: int) -> int:
        """OpenSSL asks for the key of the identity in the ClientKeyExchange.

        Returns the key length, or 0 to refuse (OpenSSL then sends the
        unknown_psk_identity alert).  Never raises: an exception escaping
        into C would be printed and the key lookup silently skipped.
        """
        try:
            connection = self._by_address.get(connection_address(ssl))
            state = None if connection is None else state_of(connection)
            if state is None:
                self._log.error("PSK request for a connection these options did not make")
                return 0
            state.refused = True
            name = c_string(identity)
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
                self.ratelog.info(
                    "tls-unknown-identity",
                    "unknown PSK identity {identity!r}; handshake refused",
                    identity=name,
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
            copy_into(psk, key)
            state.refused = False
            state.claimed = name
            return len(key)
        except Exception:
            self._log.failure("TLS-PSK server callback failed; handshake refused")
            return 0

    def _on_info(self, connection: SSL.Connection, where: int, ret: int) -> None:
        """Count how each handshake ended, and publish the identity on success."""
        if not where & _ENDINGS:
            return  # one of the ≈ 15 other state changes of every handshake
        state = state_of(connection)
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
                self.ratelog.info(
                    "tls-key-mismatch",
                    "TLS-PSK key mismatch for identity {identity!r}",
                    identity=state.claimed,
                )
            else:
                self.stats.other_failure += 1
