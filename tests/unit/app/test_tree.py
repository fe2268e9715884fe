"""Tests for L{bipgw.app.OrderedService}: start in order on readiness, stop backwards."""

from __future__ import annotations

from twisted.application.service import Service
from twisted.internet.defer import Deferred, fail, succeed
from twisted.trial.unittest import SynchronousTestCase

from bipgw.app import OrderedService


class _Part(Service):
    """A child that records its start and stop, and stops when told."""

    def __init__(self, events: list[str], name: str) -> None:
        self.events = events
        self.label = name
        self.stopping: Deferred[None] | None = None

    def startService(self) -> None:
        super().startService()
        self.events.append(f"start {self.label}")

    def stopService(self) -> Deferred[None]:
        super().stopService()
        self.events.append(f"stop {self.label}")
        return self.stopping if self.stopping is not None else succeed(None)


class OrderedServiceTests(SynchronousTestCase):
    """The gateway's tree walks its parts in order, without polling."""

    def setUp(self) -> None:
        self.events: list[str] = []
        self.tree = OrderedService()

    def test_next_child_waits_for_readiness(self) -> None:
        """A child starts only once the previous child's ready Deferred fired;
        when_ready fires after the last."""
        store_open: Deferred[None] = Deferred()
        self.tree.add(_Part(self.events, "store"), "store", lambda: store_open)
        self.tree.add(_Part(self.events, "listener"), "listener")
        ready = self.tree.when_ready()
        self.tree.startService()
        self.assertEqual(self.events, ["start store"])
        self.assertNoResult(ready)
        store_open.callback(None)
        self.assertEqual(self.events, ["start store", "start listener"])
        self.successResultOf(ready)
        self.successResultOf(self.tree.when_ready())

    def test_failure_stops_the_walk(self) -> None:
        """A child that cannot become ready fails when_ready; the children
        after it are never started."""
        self.tree.add(_Part(self.events, "store"), "store", lambda: fail(OSError("no db")))
        self.tree.add(_Part(self.events, "listener"), "listener")
        self.tree.startService()
        self.failureResultOf(self.tree.when_ready(), OSError)
        self.assertEqual(self.events, ["start store"])

    def test_stop_backwards_one_after_another(self) -> None:
        """Stopping stops the last child first and the next only once that
        stop has finished."""
        first = _Part(self.events, "store")
        second = _Part(self.events, "doors")
        second.stopping = Deferred()
        self.tree.add(first, "store")
        self.tree.add(second, "doors")
        self.tree.startService()
        del self.events[:]
        stopping = self.tree.stopService()
        self.assertEqual(self.events, ["stop doors"])
        self.assertNoResult(stopping)
        second.stopping.callback(None)
        self.assertEqual(self.events, ["stop doors", "stop store"])
        self.successResultOf(stopping)

    def test_stop_before_ready(self) -> None:
        """Stopping while a child is not ready yet fails the readiness waiters,
        never starts the later children, and stops the started ones."""
        pending: Deferred[None] = Deferred()
        self.tree.add(_Part(self.events, "store"), "store", lambda: pending)
        self.tree.add(_Part(self.events, "listener"), "listener")
        self.tree.startService()
        ready = self.tree.when_ready()
        self.successResultOf(self.tree.stopService())
        self.failureResultOf(ready, RuntimeError)
        pending.callback(None)
        self.assertEqual(self.events, ["start store", "stop store"])
