# -*- test-case-name: tests.unit.tls.test_listening -*-
"""One listening service for every listener of the gateway and the fleet.

Twisted's C{StreamServerEndpointService} keeps its port private and cannot
say when it listens; every door needs both (a test listening on port 0 must
learn the number; the gateway starts the front doors once the SCP81 port is
known).  L{ListeningService} listens with one factory on one endpoint while
it runs, tells L{when_listening} waiters the port (or why there is none)
and, when stopped, stops listening and then runs the door's own C{drain}
(let connections finish, close them, abort the ones that do not), so each
door composes it rather than writing its own service.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.application.service import Service
from twisted.internet.defer import Deferred, maybeDeferred, succeed
from twisted.internet.interfaces import IListeningPort, IProtocolFactory, IStreamServerEndpoint
from twisted.logger import Logger
from twisted.python.failure import Failure

__all__ = ["ListeningService"]

Drain = Callable[[], "Deferred[None] | None"]
"""Called once the port is closed: ends the door's connections; the stop
waits for the Deferred it returns."""


class ListeningService(Service):
    """Listens with C{factory} on C{endpoint} while running (module docstring).

    @ivar port: the listening port, while there is one.
    @ivar what: the door's name in log lines (C{"SCP81 admin server"}).
    """

    _log = Logger()

    def __init__(
        self,
        endpoint: IStreamServerEndpoint,
        factory: IProtocolFactory,
        what: str,
        *,
        drain: Drain | None = None,
        describe: Callable[[IListeningPort], str] | None = None,
    ) -> None:
        """
        @param endpoint: where to listen (from an endpoint string).
        @param factory: the door's protocol factory.
        @param what: the door's name, for log lines.
        @param drain: ends open connections after the port closed (see L{Drain}).
        @param describe: extra words for the "listening" log line.
        """
        self._endpoint: Any = endpoint
        self.factory = factory
        self.what = what
        self._drain = drain
        self._describe = describe
        self.port: IListeningPort | None = None
        self._failure: Failure | None = None
        self._waiters: list[Deferred[IListeningPort]] = []
        self._listening: Deferred[IListeningPort] | None = None

    def when_listening(self) -> Deferred[IListeningPort]:
        """Fire with the port once listening; fail if listening failed.

        Asked before L{startService}, it waits for the next start; a failed
        start answers every later call with the same failure until the
        service starts again.
        """
        waiter: Deferred[IListeningPort] = Deferred()
        if self.port is not None:
            waiter.callback(self.port)
        elif self._failure is not None:
            waiter.errback(self._failure)
        else:
            self._waiters.append(waiter)
        return waiter

    def startService(self) -> None:
        """Start listening; the outcome goes to L{when_listening}."""
        super().startService()
        self._failure = None
        listening: Deferred[IListeningPort] = self._endpoint.listen(self.factory)
        self._listening = listening
        listening.addCallbacks(self._listened, self._not_listening)

    def _listened(self, port: IListeningPort) -> None:
        self._listening = None
        self.port = port
        extra = f" ({self._describe(port)})" if self._describe is not None else ""
        self._log.info(
            "{what} listening on {address}{extra}",
            what=self.what,
            address=port.getHost(),
            extra=extra,
        )
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            waiter.callback(port)

    def _not_listening(self, failure: Failure) -> None:
        self._listening = None
        self._failure = failure
        self._log.failure("{what} cannot listen", failure, what=self.what)
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            waiter.errback(failure)

    def stopService(self) -> Deferred[None]:
        """Stop listening, then drain; fires when both are done."""
        super().stopService()
        listening, self._listening = self._listening, None
        if listening is not None and not listening.called:
            listening.cancel()
        port, self.port = self.port, None
        stopped: Deferred[Any] = maybeDeferred(port.stopListening) if port else succeed(None)
        stopped.addErrback(lambda f: self._log.failure("{what}: stop listening", f, what=self.what))
        if self._drain is not None:
            drain = self._drain
            stopped.addCallback(lambda _: drain())
        return stopped.addCallback(lambda _: None)
