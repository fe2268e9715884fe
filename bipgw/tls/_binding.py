# -*- test-case-name: tests.unit.tls.test_psk -*-
"""The OpenSSL binding TLS-PSK needs, and nothing else touches.

pyOpenSSL has no PSK API, but the OpenSSL binding it is built on exposes
C{SSL_CTX_set_psk_server_callback}, C{SSL_CTX_set_psk_client_callback} and
C{SSL_CTX_use_psk_identity_hint}, and those work on the C{SSL_CTX} behind an
L{OpenSSL.SSL.Context}.  This is the only bipgw module that touches that
binding (the cffi C{ffi} and C{lib}), so when a dependency upgrade drops
the symbols the failure is in one place and says so (L{check_binding}).

L{PskContext} is what each side's options hold: the checked policy, the
one context made from it and the C{PSK callback} installed in it; the
callbacks themselves (L{bipgw.tls._server}, L{bipgw.tls._client}) read and
write C memory only through the helpers here.  What a handshake
established per connection is kept here too (L{psk_identity}).
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import Any

import attrs
from constantly import NamedConstant
from OpenSSL import SSL
from OpenSSL._util import ffi as _ffi
from OpenSSL._util import lib as _lib

from bipgw.errors import BipGwError
from bipgw.tls._policy import TlsConfigError, TlsPolicy, make_policy, new_context

__all__ = ["PskContext", "PskUnavailableError", "check_binding", "psk_identity"]

_REQUIRED_SYMBOLS = (
    "SSL_CTX_set_psk_server_callback",
    "SSL_CTX_set_psk_client_callback",
    "SSL_CTX_use_psk_identity_hint",
)
_SERVER_CB = "unsigned int(SSL *, char *, unsigned char *, unsigned int)"
_CLIENT_CB = "unsigned int(SSL *, char *, char *, unsigned int, unsigned char *, unsigned int)"
_binding_checked = False


class PskUnavailableError(BipGwError, RuntimeError):
    """The installed OpenSSL binding lacks what TLS-PSK needs."""


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
            "pin the previous versions or port bipgw.tls._binding"
        )
    if lib is _lib:
        _binding_checked = True


@attrs.define
class PskState:
    """What one connection's handshake established."""

    claimed: bytes | None = None
    identity: bytes | None = None
    refused: bool = False
    done: bool = False
    key: bytes | None = attrs.field(default=None, repr=False)
    """The key a client presents (clients sharing one context keep it per connection)."""


_STATES: weakref.WeakKeyDictionary[SSL.Connection, PskState] = weakref.WeakKeyDictionary()


def state_of(connection: SSL.Connection) -> PskState | None:
    """The handshake state of a connection a L{PskContext} made, else C{None}."""
    return _STATES.get(connection)


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


def connection_address(ssl: Any) -> int:
    """The address of the C{SSL *} a callback receives, or of a connection's C{_ssl}."""
    return int(_ffi.cast("uintptr_t", ssl))


def c_string(pointer: Any) -> bytes:
    """The NUL-terminated bytes at C{pointer} (empty for NULL)."""
    return b"" if pointer == _ffi.NULL else bytes(_ffi.string(pointer))


def copy_into(pointer: Any, data: bytes) -> None:
    """Write C{data} to the C buffer at C{pointer} (the caller checked its size)."""
    _ffi.memmove(pointer, data, len(data))


class PskContext:
    """One side's checked policy and the OpenSSL context that carries its PSK callback.

    Each options object holds one (composition: the server and client
    options differ only in their callbacks); every connection is made from
    its context, so the policy is probed once per setting, not per session.
    """

    def __init__(
        self, ciphers: str, allow_weak: bool, min_version: NamedConstant, max_version: NamedConstant
    ) -> None:
        """
        @raise PskUnavailableError: the binding lacks the PSK calls.
        @raise TlsConfigError: on any setting that cannot be honoured.
        """
        check_binding()
        self.policy: TlsPolicy = make_policy(ciphers, allow_weak, min_version, max_version)
        self.context = new_context(self.policy)
        self._psk_callback: Any = None

    @property
    def suites(self) -> tuple[str, ...]:
        """The suites offered, in order of preference."""
        return self.policy.suites

    def use_identity_hint(self, hint: bytes) -> None:
        """Send C{hint} in ServerKeyExchange (the caller checked it).

        @raise TlsConfigError: OpenSSL refused it.
        """
        if _lib.SSL_CTX_use_psk_identity_hint(self.context._context, hint) != 1:
            raise TlsConfigError(f"identity_hint: {hint!r} refused by OpenSSL")

    def install_server(self, on_psk: Callable[..., int], on_info: Any) -> None:
        """Install the server's PSK callback (see L{_install})."""
        self._install(_lib.SSL_CTX_set_psk_server_callback, _SERVER_CB, on_psk, on_info)

    def install_client(self, on_psk: Callable[..., int], on_info: Any) -> None:
        """Install the client's PSK callback (see L{_install})."""
        self._install(_lib.SSL_CTX_set_psk_client_callback, _CLIENT_CB, on_psk, on_info)

    def _install(self, setter: Any, signature: str, on_psk: Any, on_info: Any) -> None:
        """Hand OpenSSL our PSK callback; watch handshakes through the info callback.

        A collected cffi callback would leave OpenSSL calling freed memory,
        so both this object and the context (which every connection keeps
        alive) hold it.
        """
        self._psk_callback = _ffi.callback(signature, on_psk, error=0)
        setter(self.context._context, self._psk_callback)
        self.context._bipgw_psk_callback = self._psk_callback  # type: ignore[attr-defined]
        self.context.set_info_callback(on_info)

    def connection(self, state: PskState) -> SSL.Connection:
        """A new connection from this context, with C{state} for its handshake."""
        connection = SSL.Connection(self.context, None)
        _STATES[connection] = state
        return connection
