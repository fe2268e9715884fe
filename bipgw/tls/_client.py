# -*- test-case-name: tests.unit.tls.test_psk -*-
"""The client side of TLS-PSK: a simulated card's BIP channel.

L{PskClientOptions} presents one identity and key, and plugs into
L{twisted.protocols.tls.TLSMemoryBIOFactory} or C{wrapClientTLS}.

A simulated fleet makes one options object per card session, thousands a
minute; a fresh OpenSSL context each time was the largest part of a
session's TLS cost (issue 14).  So every options object with the same
policy shares one context (L{_SharedClient}), whose PSK callback finds the
identity and key of the connection it is asked about, as the server side
does.
"""

from __future__ import annotations

import weakref
from typing import Any, Final

from constantly import NamedConstant
from OpenSSL import SSL
from twisted.internet.interfaces import IOpenSSLClientConnectionCreator
from twisted.internet.ssl import TLSVersion
from twisted.logger import Logger
from zope.interface import implementer

from bipgw.tls._binding import PskContext, PskState, connection_address, copy_into, state_of
from bipgw.tls._policy import DEFAULT_CIPHERS, TlsConfigError, check_identity

__all__ = ["MAX_KEY_LENGTH", "PskClientOptions"]

MAX_KEY_LENGTH = 256
"""Longest client key: OpenSSL's C{PSK_MAX_PSK_LEN} is at least this."""


_MAX_SHARED: Final = 16
"""Distinct client policies given a shared context; more get one each."""


class _SharedClient:
    """One client context for every options object with the same policy."""

    _log = Logger()

    def __init__(self, tls: PskContext) -> None:
        self.tls = tls
        self._by_address: weakref.WeakValueDictionary[int, SSL.Connection] = (
            weakref.WeakValueDictionary()
        )
        tls.install_client(self._on_psk, self._on_info)

    def connection(self, identity: bytes, key: bytes) -> SSL.Connection:
        connection = self.tls.connection(PskState(claimed=identity, key=key))
        self._by_address[connection_address(connection._ssl)] = connection
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
            connection = self._by_address.get(connection_address(ssl))
            state = None if connection is None else state_of(connection)
            if state is None or state.claimed is None or state.key is None:
                self._log.error("PSK request for a connection these options did not make")
                return 0
            name, key = state.claimed, state.key
            # max_identity_len counts the terminating NUL (SSL_CTX_set_psk_client_callback(3)).
            if len(name) >= max_identity_len or len(key) > max_psk_len:
                self._log.error(
                    "TLS-PSK identity or key longer than OpenSSL allows "
                    "({max_identity_len}/{max_psk_len} bytes); handshake aborted",
                    max_identity_len=max_identity_len,
                    max_psk_len=max_psk_len,
                )
                return 0
            copy_into(identity, name + b"\0")
            copy_into(psk, key)
            return len(key)
        except Exception:
            self._log.failure("TLS-PSK client callback failed; handshake aborted")
            return 0

    def _on_info(self, connection: SSL.Connection, where: int, ret: int) -> None:
        """Publish the identity once the server has accepted our key."""
        if not where & SSL.SSL_CB_HANDSHAKE_DONE:
            return  # one of the ≈ 15 other state changes of every handshake
        state = state_of(connection)
        if state is not None:
            state.done = True
            state.identity = state.claimed


_SHARED: dict[tuple[object, ...], _SharedClient] = {}


def _shared(
    ciphers: str, allow_weak: bool, min_version: NamedConstant, max_version: NamedConstant
) -> _SharedClient:
    """The shared context for this policy (made, and checked, on first use)."""
    policy = (ciphers, allow_weak, min_version, max_version)
    found = _SHARED.get(policy)
    if found is None:
        found = _SharedClient(PskContext(ciphers, allow_weak, min_version, max_version))
        if len(_SHARED) < _MAX_SHARED:
            _SHARED[policy] = found
    return found


@implementer(IOpenSSLClientConnectionCreator)
class PskClientOptions:
    """Client-side TLS-PSK, for a simulated card's BIP channel."""

    _log = Logger()

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
        self._identity = check_identity("identity", identity)
        if not isinstance(key, bytes) or not 0 < len(key) <= MAX_KEY_LENGTH:
            raise TlsConfigError(f"key: must be 1 to {MAX_KEY_LENGTH} bytes")
        self._key = key
        self._shared = _shared(ciphers, allow_weak, min_version, max_version)

    @property
    def suites(self) -> tuple[str, ...]:
        """The suites offered, in order of preference."""
        return self._shared.tls.suites

    @property
    def identity(self) -> bytes:
        """The identity this client presents."""
        return self._identity

    def __repr__(self) -> str:
        return f"<PskClientOptions identity={self._identity!r} suites={':'.join(self.suites)}>"

    def clientConnectionForTLS(self, tlsProtocol: object) -> SSL.Connection:
        """Make the connection for one outgoing channel (Twisted's interface)."""
        return self._shared.connection(self._identity, self._key)
