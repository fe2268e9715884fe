"""The loop when things go wrong, on real 127.0.0.1 sockets.

Each test starts the simulated fleet and the gateway (L{start_loop}), makes
one thing fail the way it fails in the field - a card that ignores its
push, a card with the wrong PSK, a card that hangs up in the middle of a
script, an SMSC that is down, a platform asking twice for one card - and
checks what the gateway does: how often it pushes, how long it waits, which
reason the session ends with, and that the card is usable again afterwards.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from twisted.internet.defer import Deferred
from twisted.trial.unittest import TestCase

from bipgw.core import CommandError, FailureReason, SessionError, SessionState
from tests.integration.gateway_loop import (
    FAST_SESSIONS,
    ISD_SCRIPT,
    NO_CARD_SESSIONS,
    WAIT,
    Loop,
    start_loop,
    stop_loop,
)

pytestmark = pytest.mark.integration


def _sleep(seconds: float) -> Deferred[None]:
    from twisted.internet import reactor
    from twisted.internet.task import deferLater

    return deferLater(reactor, seconds, lambda: None)


class GatewayFailureTests(TestCase):
    """What the gateway does when the card, the SMSC or the platform misbehaves."""

    timeout = WAIT

    async def _loop(self, **kwargs: Any) -> Loop:
        loop = await start_loop(Path(self.mktemp()), **kwargs)
        self.addCleanup(stop_loop, loop)
        return loop

    async def _failure(self, d: Deferred[Any]) -> SessionError:
        try:
            await d
        except SessionError as e:
            return e
        self.fail("the session did not fail")

    async def test_cardIgnoresPush(self) -> None:
        """A card that never connects gets every push attempt, with growing
        waits, and the session then fails with card-timeout."""
        loop = await self._loop(sessions=NO_CARD_SESSIONS)
        iccid = loop.iccids[0]
        loop.fleet.faults.set_card(iccid, {"ignore_push": True})
        session = loop.gateway.open_session(iccid)
        error = await self._failure(session.ready)

        self.assertEqual(error.reason, FailureReason.CARD_TIMEOUT)
        status = session.status()
        self.assertEqual((status.state, status.push_attempts), (SessionState.FAILED, 3))
        self.assertEqual(loop.fleet.router.stats.sms_ignored, 3)
        self.assertEqual(loop.fleet.router.stats.sessions_requested, 0)
        # The waits grew by push_backoff: 1, 1.5, 2.25 s after the pushes.
        self.assertGreaterEqual(status.updated_at - status.opened_at, 1 + 1.5 + 2.25)
        await loop.gateway.recorder.flush()
        events = await loop.gateway.store.session_events(session.id.value)
        pushes = [e for e in events if e.transition and e.state == "pushing"]
        self.assertEqual(len(pushes), 3)
        self.assertEqual(events[-1].reason, FailureReason.CARD_TIMEOUT.value)
        # Every push spent (and persisted) its own counter.
        card = await loop.gateway.store.get_card(iccid)
        assert card is not None
        self.assertEqual(card.ota_counter, 3)

    async def test_cardWithWrongPsk(self) -> None:
        """A card presenting the wrong PSK fails the TLS handshake on every
        push; the server counts the key mismatch and the session times out."""
        loop = await self._loop(sessions=NO_CARD_SESSIONS)
        iccid = loop.iccids[1]
        loop.fleet.faults.set_card(iccid, {"wrong_psk": True})
        session = loop.gateway.open_session(iccid)
        error = await self._failure(session.ready)

        self.assertEqual(error.reason, FailureReason.CARD_TIMEOUT)
        self.assertEqual(session.status().push_attempts, 3)
        tls = loop.gateway.admin.tls_stats
        self.assertEqual((tls.key_mismatch, tls.completed), (3, 0))
        self.assertEqual(loop.fleet.router.stats.sessions_failed, 3)
        self.assertEqual(set(loop.fleet.router.stats.failures), {"tls"})

    async def test_cardDropsMidScript(self) -> None:
        """A card that hangs up instead of answering a script fails the command
        and the session with card-dropped; its next session works."""
        loop = await self._loop()
        iccid = loop.iccids[2]
        loop.fleet.faults.set_card(iccid, {"drop_after_scripts": 1})
        session = loop.gateway.open_session(iccid)
        await session.ready
        error = await self._failure(session.execute(ISD_SCRIPT))

        self.assertEqual(error.reason, FailureReason.CARD_DROPPED)
        self.assertNotIsInstance(error, CommandError)
        status = session.status()
        self.assertEqual((status.state, status.reason), (SessionState.FAILED, error.reason))
        await loop.gateway.recorder.flush()
        traces = await loop.gateway.store.apdu_traces(session.id.value)
        self.assertEqual([t.rapdu for t in traces], [None, None, None])
        self.assertEqual({t.outcome for t in traces}, {FailureReason.CARD_DROPPED.value})

        loop.fleet.faults.clear_card(iccid)
        again = loop.gateway.open_session(iccid)
        await again.ready
        result = await again.execute(ISD_SCRIPT)
        self.assertEqual(result.status_words, (0x9000, 0x9000, 0x9000))
        self.assertEqual((await again.close()).state, SessionState.CLOSED)

    async def test_smscDownThenUp(self) -> None:
        """A push ordered while the SMSC is down waits in the queue and is
        delivered once the SMSC is back and the gateway has bound again; the
        session then runs normally."""
        loop = await self._loop()
        await loop.fleet_down()
        while loop.gateway.smpp.bound:
            await _sleep(0.05)
        session = loop.gateway.open_session(loop.iccids[0])
        await _sleep(1.0)
        self.assertEqual(session.status().state, SessionState.PUSHING)
        self.assertFalse(loop.gateway.smpp.bound)

        await loop.fleet_up()
        ready = await session.ready
        self.assertEqual(ready.push_attempts, 1)
        result = await session.execute(ISD_SCRIPT)
        self.assertEqual(result.status_words, (0x9000, 0x9000, 0x9000))
        self.assertEqual((await session.close()).state, SessionState.CLOSED)
        self.assertEqual(loop.fleet.router.stats.sms_received, 1)
        self.assertGreaterEqual(loop.gateway.smpp.binds, 2)

    async def test_busyCardQueued(self) -> None:
        """With busy_policy "queue", a second session for a card waits for the
        first to end, then gets the card."""
        loop = await self._loop()
        iccid = loop.iccids[0]
        first = loop.gateway.open_session(iccid)
        second = loop.gateway.open_session(iccid)
        order: list[str] = []
        second.ready.addCallback(lambda s: order.append("second ready") or s)
        await first.ready
        await _sleep(0.2)
        self.assertEqual(second.status().state, SessionState.REQUESTED)
        await first.execute(ISD_SCRIPT)
        await first.close()
        order.append("first closed")
        ready = await second.ready
        self.assertEqual(order, ["first closed", "second ready"])
        self.assertEqual(ready.iccid, iccid)
        await second.execute(ISD_SCRIPT)
        self.assertEqual((await second.close()).state, SessionState.CLOSED)
        self.assertEqual(loop.fleet.router.stats.sessions_completed, 2)

    async def test_busyCardRefused(self) -> None:
        """With busy_policy "refuse", a second session for a busy card fails at
        once with card-busy, and the first is not disturbed."""
        sessions = dict(FAST_SESSIONS, busy_policy="refuse")
        loop = await self._loop(sessions=sessions)
        iccid = loop.iccids[0]
        first = loop.gateway.open_session(iccid)
        second = loop.gateway.open_session(iccid)
        error = await self._failure(second.ready)
        self.assertEqual(error.reason, FailureReason.CARD_BUSY)
        await first.ready
        await first.execute(ISD_SCRIPT)
        self.assertEqual((await first.close()).state, SessionState.CLOSED)
        self.assertEqual(loop.fleet.router.stats.sms_received, 1)

    async def test_shutdownFailsOpenSessions(self) -> None:
        """Stopping the gateway with a card connected and another session
        waiting lets the grace period pass, then ends both with a failure and
        leaves no connection behind."""
        loop = await self._loop(sessions=NO_CARD_SESSIONS)
        connected = loop.gateway.open_session(loop.iccids[0])
        await connected.ready
        loop.fleet.faults.set_card(loop.iccids[1], {"ignore_push": True})
        waiting = loop.gateway.open_session(loop.iccids[1])
        connected.ready.addErrback(lambda _: None)
        waiting.ready.addErrback(lambda _: None)
        await _sleep(0.2)
        await loop.gateway.stopService()

        self.assertEqual(connected.status().state, SessionState.FAILED)
        self.assertEqual(waiting.status().reason, FailureReason.SHUTDOWN)
        self.assertEqual(loop.gateway.admin.factory.connections, set())
