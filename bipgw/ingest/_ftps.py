# -*- test-case-name: tests.unit.ingest.test_ftps,tests.integration.test_feeds_ftps -*-
"""Explicit FTPS (RFC 4217) on the partners' FTP door: C{AUTH TLS}, C{PBSZ}, C{PROT}.

Twisted's FTP server speaks no TLS; this is the small part of RFC 4217 a
partner's client needs, on top of L{PartnerFTP}:

  - C{AUTH TLS} (or C{TLS-C}, C{SSL}) before logging in: C{234}, then the
    control connection turns into TLS (Twisted's C{startTLS}, the reply
    going out in the clear first).  It is accepted only before C{USER}, so
    nothing of the session was said in clear; a second C{AUTH} is refused
    (C{503}).
  - C{PBSZ 0} (the only size TLS needs) then C{PROT P}: every later data
    connection is TLS too, the partner's client being its TLS client (the
    default of RFC 4217 section 9); C{PROT C} goes back to clear data.
    Data connections are passive only under C{PROT P} (C{PORT}/C{EPRT}
    answer C{534}): the gateway never dials out to a partner.
  - with C{require_tls}, C{USER} before C{AUTH TLS} is refused (C{530}),
    and so is a data connection without C{PROT P} (C{521}): nothing about
    a partner or its files crosses the network in clear.

A TLS data connection has one more virtue: its end is the partner's TLS
C{close_notify}, so an upload cut at a clean TCP close without it is not
taken as complete (plain FTP cannot tell, see L{bipgw.ingest._ftp}).

Twisted's own TLS (C{TLSMemoryBIOProtocol}) does the rest; two gaps are
filled here: a data connection closed before its handshake (an empty
listing: the partner's client starts TLS only after the C{150} reply) is
closed once the handshake is done instead of being aborted, and C{QUIT}
keeps reading for the partner's C{close_notify}, for 5 seconds at most.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred, fail
from twisted.internet.interfaces import (
    IHandshakeListener,
    IOpenSSLServerConnectionCreator,
    IReactorTime,
    ITLSTransport,
)
from twisted.internet.protocol import connectionDone
from twisted.protocols import ftp
from twisted.protocols.tls import TLSMemoryBIOFactory, TLSMemoryBIOProtocol
from twisted.python.failure import Failure
from zope.interface import alsoProvides

from bipgw.ingest._ftp import Intake, PartnerFTP, ftp_factory
from bipgw.store import IStore

#: Mechanisms of C{AUTH} that mean TLS (RFC 4217 section 4; C{SSL} and
#: C{TLS-C} are older clients' spellings of the same thing).
_TLS_MECHANISMS = frozenset({"TLS", "TLS-C", "SSL"})
#: Seconds a closing TLS session may take to answer its close_notify.
_CLOSE_TIMEOUT = 5.0
#: Commands that work before a partner logs in, besides Twisted's own.
_BEFORE_LOGIN = frozenset({"AUTH", "PBSZ", "PROT"})
#: Commands that open or announce a data connection.
_DATA_COMMANDS = frozenset({"PASV", "EPSV", "PORT", "EPRT"})


class TlsPartnerFTP(PartnerFTP):
    """L{PartnerFTP} with explicit TLS on the control and data connections.

    The factory (L{ftps_factory}) holds C{tls} (the server's TLS options)
    and C{require_tls}.
    """

    _secure = False
    _closing: Any = None
    _pbsz = False
    _private = False

    def processCommand(self, cmd: str, *params: str) -> Any:
        name = cmd.upper()
        if name in _BEFORE_LOGIN:
            return getattr(self, f"ftp_{name}")(*params)
        if self.factory.require_tls and not self._secure and name == "USER":
            return _refuse(530, "TLS is required here: send AUTH TLS first")
        if name in _DATA_COMMANDS and self.state == self.AUTHED:
            if self.factory.require_tls and not self._private:
                return _refuse(521, "data connections must be protected: send PROT P")
            if self._private and name in ("PORT", "EPRT"):
                return _refuse(534, "with PROT P only passive mode is offered: use PASV or EPSV")
        return super().processCommand(cmd, *params)

    def ftp_AUTH(self, mechanism: str = "") -> Deferred[Any] | None:
        if mechanism.upper() not in _TLS_MECHANISMS:
            return _refuse(504, f"AUTH {mechanism[:16]!r} is not offered; AUTH TLS is")
        if self._secure:
            return _refuse(503, "TLS is already on")
        if self.state != self.UNAUTH:
            return _refuse(503, "AUTH TLS comes before USER")
        self.sendLine("234 AUTH TLS: start the TLS handshake")
        ITLSTransport(self.transport).startTLS(self.factory.tls)
        self._secure = True
        return None

    def ftp_PBSZ(self, size: str = "") -> Deferred[Any] | None:
        if not self._secure:
            return _refuse(503, "PBSZ comes after AUTH TLS")
        if not (size.isascii() and size.isdigit()):
            return _refuse(501, "PBSZ takes a number (0 for TLS)")
        self._pbsz = True
        self.sendLine("200 PBSZ=0")
        return None

    def ftp_PROT(self, level: str = "") -> Deferred[Any] | None:
        if not self._secure or not self._pbsz:
            return _refuse(503, "PROT comes after AUTH TLS and PBSZ")
        level = level.upper()
        if level == "P":
            self._private = True
            self.sendLine("200 data connections are TLS")
            return None
        if level == "C":
            if self.factory.require_tls:
                return _refuse(534, "clear data connections are refused here")
            self._private = False
            self.sendLine("200 data connections are clear")
            return None
        return _refuse(504, f"PROT {level[:8]!r} is not offered: P or C")

    def ftp_FEAT(self) -> None:
        self.sendLine("211-Features:")
        for feature in (*self.FEATURES, "AUTH TLS", "PBSZ", "PROT"):
            self.sendLine(f" {feature}")
        self.sendLine("211 End")

    def ftp_QUIT(self) -> None:
        self.reply(ftp.GOODBYE_MSG)
        if not self._secure:
            self.transport.loseConnection()  # type: ignore[union-attr]
            return
        # Closing TLS sends close_notify and waits for the partner's, or its
        # TCP close: so keep reading (Twisted's FTP paused the connection
        # while it runs a command), and do not wait for ever.
        self.transport.resumeProducing()  # type: ignore[union-attr]
        self.transport.loseConnection()  # type: ignore[union-attr]
        self._closing = self.factory.clock.callLater(_CLOSE_TIMEOUT, self._abort)

    def _abort(self) -> None:
        self._closing = None
        if self.transport is not None:
            self.transport.abortConnection()  # type: ignore[attr-defined]

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        if self._closing is not None and self._closing.active():
            self._closing.cancel()
        self._closing = None
        super().connectionLost(reason)

    def getDTPPort(self, factory: Any, interface: str = "") -> Any:
        if self._private:
            factory = _TlsDtpFactory(self.factory.tls, factory)
        return super().getDTPPort(factory, interface)


class _TlsDtpFactory(TLSMemoryBIOFactory):
    """TLS (the gateway as TLS server) around Twisted's passive data connection factory."""

    def __init__(self, tls: IOpenSSLServerConnectionCreator, dtp: Any) -> None:
        super().__init__(tls, False, dtp)

    def buildProtocol(self, addr: Any) -> Any:
        # Twisted's DTPFactory refuses a second connection, or one from
        # another host, by building nothing: then there is nothing to wrap.
        inner = self.wrappedFactory.buildProtocol(addr)
        if inner is None:
            return None
        tls = _DataTls(self, inner)
        # Told when the handshake is done (IHandshakeListener), to close then.
        alsoProvides(inner, IHandshakeListener)
        inner.handshakeCompleted = tls.handshake_done
        return tls


class _DataTls(TLSMemoryBIOProtocol):
    """A TLS data connection that closes only once its handshake is done.

    Twisted's FTP writes a listing (or a small file) and closes the data
    connection as soon as TCP is connected, but the partner's client starts
    the TLS handshake only after the C{150} reply: closing TLS before its
    handshake would drop the data.  So the close waits for the handshake.
    """

    _close_after_handshake = False
    _handshake_done = False

    def handshake_done(self) -> None:
        self._handshake_done = True
        if self._close_after_handshake:
            self._close_after_handshake = False
            super().loseConnection()

    def loseConnection(self) -> None:
        if not self._handshake_done:
            self._close_after_handshake = True
            return
        super().loseConnection()


class _Reply(ftp.FTPCmdError):
    """A reply of this module's own (Twisted's table has none of RFC 4217's)."""

    def __init__(self, code: int, text: str) -> None:
        super().__init__(text)
        self.code = code

    def response(self) -> bytes:
        return f"{self.code} {self.errorMessage}".encode()


def _refuse(code: int, text: str) -> Deferred[Any]:
    return fail(_Reply(code, text))


def ftps_factory(
    store: IStore,
    intake: Intake,
    tls: IOpenSSLServerConnectionCreator,
    *,
    clock: IReactorTime,
    require_tls: bool = False,
    timeout: int = 600,
) -> ftp.FTPFactory:
    """L{ftp_factory} offering C{AUTH TLS} with C{tls}; C{require_tls}: only over TLS.

    @param clock: times a closing TLS session out.
    """
    factory = ftp_factory(store, intake, timeout=timeout)
    factory.protocol = TlsPartnerFTP
    factory.tls = tls  # type: ignore[attr-defined]
    factory.require_tls = require_tls  # type: ignore[attr-defined]
    factory.clock = clock  # type: ignore[attr-defined]
    return factory
