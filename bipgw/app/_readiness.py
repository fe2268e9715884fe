# -*- test-case-name: tests.unit.app.test_gateway_metrics -*-
"""What C{/readyz} reports of the running gateway (L{bipgw.web.IReadiness}).

Three checks, each C{None} when it passes, else why not: the database
answers in time, the SMPP client is bound, and every part has started with
its listeners listening.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from twisted.internet.defer import CancelledError, Deferred, TimeoutError
from twisted.python.failure import Failure

from bipgw.app._tree import OrderedService
from bipgw.smpp import SmppClientService
from bipgw.store import IStore, probe_store

__all__ = ["READY_STORE_TIMEOUT", "GatewayReadiness"]

#: Seconds C{/readyz} waits for the database's answer.
READY_STORE_TIMEOUT = 2.0


class GatewayReadiness:
    """The gateway's readiness checks.

    @param tree: the gateway's service tree (running, and every part started).
    @param smpp: the SMPP client (bound or not).
    @param store: the application database, probed.
    @param reactor: times the probe out.
    @param listeners: each listener's name and port, C{None} while it does
        not listen.
    """

    def __init__(
        self,
        tree: OrderedService,
        smpp: SmppClientService,
        store: IStore,
        reactor: Any,
        listeners: Callable[[], list[tuple[str, int | None]]],
    ) -> None:
        self._tree = tree
        self._smpp = smpp
        self._store = store
        self._reactor = reactor
        self._listeners = listeners

    def readiness(self) -> Deferred[Mapping[str, str | None]]:
        """Each check, C{None} when it passes, else why not.

        - C{store}: the database answers C{SELECT 1} within
          L{READY_STORE_TIMEOUT} seconds;
        - C{smpp}: the SMPP client is bound to the SMSC;
        - C{listeners}: every part has started, and the admin server and
          the front doors listen.
        """
        checks: dict[str, str | None] = {"store": None, "smpp": None, "listeners": None}
        if not self._smpp.bound:
            checks["smpp"] = "not bound to the SMSC"
        down = [name for name, port in self._listeners() if port is None]
        if not self._tree.running:
            checks["listeners"] = "the gateway is not running"
        elif not self._tree.started:
            checks["listeners"] = "the gateway is still starting"
        elif down:
            checks["listeners"] = "not listening: " + ", ".join(down)
        probe = probe_store(self._store).addTimeout(READY_STORE_TIMEOUT, self._reactor)

        def unreachable(failure: Failure) -> None:
            why = "" if failure.check(CancelledError, TimeoutError) else failure.getErrorMessage()
            checks["store"] = f"unreachable: {why or f'no answer in {READY_STORE_TIMEOUT:g} s'}"

        probe.addErrback(unreachable)
        return probe.addCallback(lambda _: checks)
