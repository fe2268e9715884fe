# -*- test-case-name: tests.unit.scp81.test_service -*-
"""The SCP81 admin server as a service: a TLS-PSK listener for cards.

Cards triggered by a push open TCP to the gateway, run TLS 1.2 with their
pre-shared key (L{bipgw.tls}) and POST per GlobalPlatform Amendment B
(L{bipgw.scp81.AdminProtocol}).  The listening itself is the one listening
service every door uses (L{bipgw.tls.ListeningService}, held here as
L{AdminServer.listener}); what this door adds is the TLS-PSK layer on its
endpoint, the handshake and HTTP counters, and the drain it hands the
listener: once the port is closed, the sessions in progress may finish for
a grace period before what is left is dropped.

Keys never pass through here: the PSK lookup is a callable the gateway
wires to its key store (synchronous and fast: it runs inside the
handshake), and so is the identity → ICCID resolver.
"""

from __future__ import annotations

import resource
from collections.abc import Callable
from typing import Any, Final

from constantly import NamedConstant
from twisted.application.service import Service
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IListeningPort, IStreamServerEndpoint
from twisted.internet.ssl import TLSVersion
from twisted.logger import Logger

from bipgw.codec.admin_http import DEFAULT_MAX_BODY
from bipgw.scp81._protocol import AdminFactory, AdminStats, ICardGateway
from bipgw.tls import (
    DEFAULT_CIPHERS,
    ListeningService,
    PskServerEndpoint,
    PskServerOptions,
    PskServerStats,
    psk_server_endpoint,
)

__all__ = ["AdminServer"]

FILE_HEADROOM: Final = 256
"""Open files left for the rest of the gateway (database, log, SMPP, platform
connections) when C{max_connections} cards are connected."""


def open_files_limit() -> int | None:
    """The process's soft open-file limit (C{ulimit -n}), or C{None} if unlimited."""
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    return None if soft == resource.RLIM_INFINITY else soft


class AdminServer(Service):
    """Listens for cards' SCP81 connections and hands them to the session engine.

    @ivar tls_options: the TLS-PSK settings (suites, versions, key lookup).
    @ivar factory: the protocol factory, which tracks open connections.
    @ivar listener: the listening service, started and stopped with this
        one; its drain is the grace period (L{_drain}).
    """

    _log = Logger()

    def __init__(
        self,
        reactor: Any,
        gateway: ICardGateway,
        *,
        psk_lookup: Callable[[bytes], bytes | None],
        identity_to_iccid: Callable[[bytes], str | None],
        listen: str | IStreamServerEndpoint = "tcp:8443",
        ciphers: str = DEFAULT_CIPHERS,
        allow_weak: bool = False,
        min_version: NamedConstant = TLSVersion.TLSv1_2,
        max_version: NamedConstant = TLSVersion.TLSv1_2,
        identity_hint: bytes | None = None,
        grace_period: float = 30.0,
        request_timeout: float = 30.0,
        max_connections: int = 1000,
        max_body: int = DEFAULT_MAX_BODY,
        files_limit: Callable[[], int | None] = open_files_limit,
    ) -> None:
        """
        @param reactor: the reactor to listen with; also the clock.
        @param gateway: the session engine (anything with C{card_arrived}).
        @param psk_lookup: PSK identity -> key, or C{None} if unknown.
        @param identity_to_iccid: PSK identity -> the card's ICCID, or C{None}.
        @param listen: a server endpoint string (C{"tcp:8443:interface=..."})
            or an endpoint; TLS-PSK is added on top.
        @param ciphers: the OpenSSL cipher string of PSK suites to offer.
        @param allow_weak: permit NULL/3DES suites; an explicit operator choice.
        @param min_version: the lowest TLS version (1.2 by default).
        @param max_version: the highest TLS version (at most 1.2).
        @param identity_hint: sent to cards in ServerKeyExchange, if given.
        @param grace_period: seconds a stop waits for open connections.
        @param request_timeout: seconds a new connection has to send its
            first request.
        @param max_connections: connections served at once.
        @param max_body: the largest request body accepted.
        @param files_limit: the open-file limit C{max_connections} is
            checked against when the service starts (a warning if it leaves
            less than L{FILE_HEADROOM}); the process's by default.
        @raise bipgw.tls.TlsConfigError: for TLS settings that cannot work.
        """
        if not grace_period >= 0:
            raise ValueError(f"grace_period {grace_period!r} must be >= 0")
        self._reactor = reactor
        self._grace = grace_period
        self._files_limit = files_limit
        self.tls_options = PskServerOptions(
            psk_lookup,
            ciphers=ciphers,
            allow_weak=allow_weak,
            min_version=min_version,
            max_version=max_version,
            identity_hint=identity_hint,
            clock=reactor,
        )
        self.factory = AdminFactory(
            gateway,
            identity_to_iccid,
            clock=reactor,
            request_timeout=request_timeout,
            max_connections=max_connections,
            max_body=max_body,
        )
        endpoint: IStreamServerEndpoint
        if isinstance(listen, str):
            endpoint = psk_server_endpoint(reactor, listen, self.tls_options)
        else:
            endpoint = PskServerEndpoint(listen, self.tls_options, reactor)
        self.listener = ListeningService(
            endpoint,
            self.factory,
            "SCP81 admin server",
            drain=self._drain,
            describe=lambda _: f"TLS-PSK suites {':'.join(self.tls_options.suites)}",
        )

    @property
    def tls_stats(self) -> PskServerStats:
        """Handshake outcomes: completed, unknown identity, wrong key ..."""
        return self.tls_options.stats

    @property
    def stats(self) -> AdminStats:
        """Connection and request counters."""
        return self.factory.stats

    @property
    def port(self) -> IListeningPort | None:
        """The listening port, while listening."""
        return self.listener.port

    def when_listening(self) -> Deferred[IListeningPort]:
        """Fire with the port once listening (fails if listening failed)."""
        return self.listener.when_listening()

    def startService(self) -> None:
        """Start listening; a failure to listen is logged and reported to
        L{when_listening}."""
        super().startService()
        self._check_files()
        self.listener.startService()

    def _check_files(self) -> None:
        """Warn when C{max_connections} cards would take the last open files.

        At the limit a new card is accepted on Twisted's reserve descriptor
        and closed before TLS (it retries), while anything else needing a
        descriptor (an SMPP reconnection, a platform connection) fails: the
        admin server's own refusal, below the limit, harms nothing else.
        """
        limit = self._files_limit()
        wanted = self.factory.max_connections + FILE_HEADROOM
        if limit is not None and wanted > limit:
            self._log.warn(
                "[admin] max_connections = {n} leaves fewer than {headroom} of the process's"
                " {limit} open files (ulimit -n) to the rest of the gateway: at the limit new"
                " cards are closed before TLS and SMPP or platform connections fail; lower"
                " max_connections to {fit} or raise the limit",
                n=self.factory.max_connections,
                headroom=FILE_HEADROOM,
                limit=limit,
                fit=max(limit - FILE_HEADROOM, 1),
            )

    def stopService(self) -> Deferred[None]:
        """Stop listening, let open connections finish for the grace period,
        then drop the rest; fires when every connection is gone."""
        super().stopService()

        def flush(result: object) -> object:
            self.factory.ratelog.flush()
            self.tls_options.ratelog.flush()
            return result

        return self.listener.stopService().addBoth(flush)

    def _drain(self) -> Deferred[None]:
        """The listener's drain: wait for the open connections, up to the grace
        period, then drop what is left."""
        drained = self.factory.drained()
        if drained.called:
            return drained
        self._log.info(
            "SCP81 admin server stopping: waiting up to {grace:g} s for {n} connection(s)",
            grace=self._grace,
            n=len(self.factory.connections),
        )
        timer = self._reactor.callLater(self._grace, self._grace_over)

        def done(result: None) -> None:
            if timer.active():
                timer.cancel()
            return result

        return drained.addBoth(done)

    def _grace_over(self) -> None:
        self._log.warn(
            "SCP81 admin server: grace period over, dropping {n} connection(s)",
            n=len(self.factory.connections),
        )
        self.factory.abort_all("the gateway is stopping")
