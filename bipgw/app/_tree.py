# -*- test-case-name: tests.unit.app.test_tree -*-
"""A service tree that starts its children one after another and stops them backwards.

Twisted's C{MultiService} starts every child at once and stops them all at
once.  The gateway's parts depend on each other's readiness: the card
listener must know its port before the first push names it, the store
must be open before anything reads it, and on the way down the front
doors must close before the card listener's grace period starts, which
must end before the SMPP client unbinds and the store closes.  So the tree
is built whole when the gateway is made (every part exists from the
start, nothing is patched on later), and L{OrderedService} walks it: each
child is started when the one before it is ready (its C{ready} callable's
Deferred fired), and stopped after the one after it has stopped.  As
buildbot's C{AsyncMultiService}, without polling.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.application.service import IService, MultiService, Service
from twisted.internet.defer import Deferred, maybeDeferred, succeed
from twisted.logger import Logger
from twisted.python.failure import Failure

__all__ = ["OrderedService", "Ready", "Step"]

Ready = Callable[[], "Deferred[Any] | None"]
"""Called right after a child started: the next child starts when its
Deferred fires (at once when it returns C{None})."""


class OrderedService(MultiService):
    """Start children in order, each once the previous is ready; stop backwards.

    @ivar started: fires once every child is ready (a new Deferred per
        start; fails with the first child's failure, and the children
        started so far are stopped again).
    """

    _log = Logger()

    def __init__(self) -> None:
        super().__init__()
        self._ready: dict[int, Ready] = {}
        self._waiters: list[Deferred[None]] = []
        self._outcome: Failure | bool | None = None
        self._stopping: Deferred[None] | None = None

    def add(self, child: IService, name: str | None = None, ready: Ready | None = None) -> IService:
        """Add C{child}, after every child already added.

        @param name: its name in the tree (C{getServiceNamed}); C{None} keeps
            the name it has.
        @param ready: what says the child is ready (its listening port, its
            open database); C{None}: ready once started.
        @return: C{child}.
        """
        if name is not None:
            child.setName(name)
        child.setServiceParent(self)
        if ready is not None:
            self._ready[id(child)] = ready
        return child

    @property
    def started(self) -> bool:
        """Whether every child is ready (since the last start)."""
        return self._outcome is True

    def when_ready(self) -> Deferred[None]:
        """Fire once every child is ready; fail if one could not start."""
        waiter: Deferred[None] = Deferred()
        if self._outcome is True:
            waiter.callback(None)
        elif isinstance(self._outcome, Failure):
            waiter.errback(self._outcome)
        else:
            self._waiters.append(waiter)
        return waiter

    def startService(self) -> None:
        """Start the first child; the rest follow as each becomes ready."""
        Service.startService(self)
        self._outcome = None
        chain: Deferred[Any] = succeed(None)
        for child in list(self):
            chain.addCallback(self._start_child, child)
        chain.addCallbacks(self._all_ready, self._failed)

    def _start_child(self, _: object, child: IService) -> Deferred[Any] | None:
        if not self.running:
            return None
        child.startService()
        ready = self._ready.get(id(child))
        return maybeDeferred(ready) if ready is not None else None

    def _all_ready(self, _: object) -> None:
        if not self.running:
            return
        self._settle(True)

    def _failed(self, failure: Failure) -> None:
        self._settle(failure)

    def _settle(self, outcome: Failure | bool) -> None:
        self._outcome = outcome
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if isinstance(outcome, Failure):
                waiter.errback(outcome)
            else:
                waiter.callback(None)

    def stopService(self) -> Deferred[None]:
        """Stop the running children from the last to the first, each after
        the one after it has stopped; a child that fails to stop is logged
        and the others still stop."""
        if self._stopping is not None:
            return self._stopping
        Service.stopService(self)
        if self._outcome is None:
            self._settle(Failure(RuntimeError("stopped before every part was ready")))
        chain: Deferred[Any] = succeed(None)
        for child in reversed(list(self)):
            chain.addCallback(self._stop_child, child)
        done: Deferred[None] = Deferred()
        self._stopping = done

        def stopped(_: object) -> None:
            self._stopping = None
            done.callback(None)

        chain.addBoth(stopped)
        return done

    def _stop_child(self, _: object, child: IService) -> Deferred[Any] | None:
        if not child.running:
            return None
        stopping: Deferred[Any] = maybeDeferred(child.stopService)
        stopping.addErrback(
            lambda f: self._log.failure("stopping {name} failed", f, name=child.name)
        )
        return stopping


class Step(Service):
    """A part that is not a service of its own: what to do when the tree
    starts it and when it stops it (open the store, load the key cache,
    fail the sessions left, flush the history).

    @ivar ready: what L{OrderedService} waits for: the Deferred of the last
        C{start}.
    """

    def __init__(
        self,
        start: Callable[[], Deferred[Any] | None] | None = None,
        stop: Callable[[], Deferred[Any] | None] | None = None,
    ) -> None:
        self._start = start
        self._stop = stop
        self._started: Deferred[Any] = succeed(None)

    def ready(self) -> Deferred[Any]:
        """The outcome of the last start."""
        return self._started

    def startService(self) -> None:
        """Run C{start}; its outcome is L{ready}."""
        super().startService()
        if self._start is not None:
            self._started = maybeDeferred(self._start)

    def stopService(self) -> Deferred[None]:
        """Run C{stop}; fires when its Deferred does."""
        super().stopService()
        if self._stop is None:
            return succeed(None)
        stopping: Deferred[Any] = maybeDeferred(self._stop)
        return stopping.addCallback(lambda _: None)
