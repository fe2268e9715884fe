"""Tests for a cluster node's open: answered once the session is in the registry too.

L{SessionRegistry} holds each opening (L{SessionEngine.hold_openings}) until
the Redis call carrying its entry returns, so that a platform is never given
a session its node's set does not list (the node may die the next instant).
Here the registry's Redis is a stand-in whose calls the test answers, on a
L{Clock}; tests.integration.test_cluster_redis runs it on a real Redis.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from bipgw.cluster import SessionRegistry
from bipgw.cluster._registry import FLUSH_EVERY, decode_timeouts, encode_timeouts
from bipgw.codec.platform import Accepted, ErrorMessage, Open, Timeouts
from bipgw.core import (
    FailureReason,
    MemoryTenantDirectory,
    SessionEngine,
    SessionId,
    SessionRelay,
    Tenancy,
)
from tests.unit.core.test_relay import GRANT, RecordingHost
from tests.unit.platform import POLICY, Fleet, iccid


class _Redis:
    """The calls a registry makes, answered by the test."""

    def __init__(self) -> None:
        self.scripts: list[tuple[list[str], Deferred[Any]]] = []
        self.args: list[list[object]] = []

    def script(self, body: str, keys: Sequence[str], args: Sequence[object]) -> Deferred[Any]:
        d: Deferred[Any] = Deferred()
        self.scripts.append((list(keys), d))
        self.args.append(list(args))
        return d


class RegisteredOpenTests(SynchronousTestCase):
    """C{accepted} waits for the registry batch holding the session's entry."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.fleet = Fleet(self.clock, 3)
        ids = (SessionId(f"s{n}") for n in itertools.count(1))
        self.engine = SessionEngine(
            self.clock, self.fleet, self.fleet, policy=POLICY, new_id=lambda: next(ids)
        )
        self.fleet.engine = self.engine
        self.redis = _Redis()
        self.registry = SessionRegistry(self.redis, "gw-a", self.engine, self.clock)  # type: ignore[arg-type]
        self.registry.start()
        self.tenancy = Tenancy(self.engine, MemoryTenantDirectory(), self.clock)
        self.host = RecordingHost()
        self.relay = SessionRelay(self.tenancy, self.host)

    def tearDown(self) -> None:
        self.registry.stop()
        for _, d in self.redis.scripts:
            if not d.called:
                d.callback(1)
        self.engine.stop()

    def test_acceptedAfterRegistryBatch(self) -> None:
        """A burst of opens waits for its one registry call, and is answered when it returns."""
        opens = [
            self.relay.open(Open(id=f"o{n}", service="demo", iccid=iccid(n + 1)), GRANT)
            for n in range(2)
        ]
        self.clock.advance(FLUSH_EVERY / 2)
        self.assertEqual((self.redis.scripts, self.host.take()), ([], []))
        self.clock.advance(FLUSH_EVERY / 2)
        ((keys, call),) = self.redis.scripts
        self.assertEqual(keys[0], "bipgw:node:gw-a:sessions")
        self.assertIn("bipgw:session:s1", keys)
        self.assertIn("bipgw:session:s2", keys)
        self.assertEqual(self.host.take(), [])
        for done in opens:
            self.assertNoResult(done)
        call.callback(1)
        for done in opens:
            self.successResultOf(done)
        self.assertEqual([type(m) for m in self.host.take()], [Accepted, Accepted])

    def test_registryUnreachable(self) -> None:
        """If the registry call fails, the open is answered C{unavailable}, naming
        the registry, and the session ends."""
        done = self.relay.open(Open(id="o", service="demo", iccid=iccid(1)), GRANT)
        self.clock.advance(FLUSH_EVERY)
        ((_, call),) = self.redis.scripts
        call.errback(ConnectionError("connection refused"))
        self.successResultOf(done)
        (error,) = self.host.take()
        assert isinstance(error, ErrorMessage)
        self.assertEqual((error.code, error.id), ("unavailable", "o"))
        self.assertIn("registry (Redis) is unreachable: connection refused", error.message)
        self.clock.advance(1)
        self.assertEqual(self.engine.sessions(), [])
        self.assertEqual(self.relay.sessions, [])
        status = self.engine.status("s1")
        assert status is not None
        self.assertTrue(status.state.terminal)
        # Not "cancelled" / "closed by the platform": the platform never held it.
        self.assertIs(status.reason, FailureReason.DIRECTORY_ERROR)
        self.assertIn("the open was refused (unavailable)", status.detail)
        self.assertIn("registry (Redis) is unreachable: connection refused", status.detail)
        self.assertNotIn("platform closed", " ".join(e.detail for e in self.engine.recorder.events))
        self.flushLoggedErrors()

    def test_stoppedRegistryHoldsNothing(self) -> None:
        """Once the registry stops, opens are answered without it."""
        self.registry.stop()
        done = self.relay.open(Open(id="o", service="demo", iccid=iccid(1)), GRANT)
        self.successResultOf(done)
        self.assertEqual([type(m) for m in self.host.take()], [Accepted])


class TimeoutsEntryTests(SynchronousTestCase):
    """The platform's timeouts of an open, as the registry keeps them for a take-over."""

    def test_roundTrip(self) -> None:
        """Either or both timeouts come back as written; none is written as nothing."""
        for timeouts in (
            Timeouts(ready=30.0),
            Timeouts(command=2.5),
            Timeouts(ready=1.0, command=300.0),
        ):
            self.assertEqual(decode_timeouts(encode_timeouts(timeouts)), timeouts)
        self.assertEqual(encode_timeouts(None), "")
        self.assertEqual(encode_timeouts(Timeouts()), "")
        self.assertIsNone(decode_timeouts(""))

    def test_hostileEntryDropped(self) -> None:
        """An entry that is not two bounded numbers gives no timeouts, or
        drops the value out of the platform's bounds."""
        for text in ("x", "1:2:3", "a:b", ":", "9" * 70 + ":"):
            self.assertIsNone(decode_timeouts(text), text)
        self.assertEqual(decode_timeouts("nan:5"), Timeouts(command=5.0))
        self.assertEqual(decode_timeouts("-1:1e9"), None)

    def test_contextWritesTimeouts(self) -> None:
        """The context write of a session carries its timeouts to Redis."""
        clock = Clock()
        engine = SessionEngine(clock, Fleet(clock, 1), Fleet(clock, 1), policy=POLICY)
        redis = _Redis()
        registry = SessionRegistry(redis, "gw-a", engine, clock)  # type: ignore[arg-type]
        registry.context("s1", "acme", None, b"\xa0\x01", Timeouts(ready=30.0))
        clock.advance(FLUSH_EVERY)
        ((keys, call),) = redis.scripts
        self.assertEqual(keys, ["bipgw:node:gw-a:sessions", "bipgw:session:s1"])
        self.assertEqual(redis.args[0][2:], ["s1", "", "", "", "0", "acme", "", "a001", "30.0:"])
        call.callback(1)
