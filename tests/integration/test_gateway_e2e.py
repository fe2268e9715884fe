"""The whole loop, end to end, on real 127.0.0.1 sockets.

A session opened through the session engine's Python API goes all the way:
the gateway allocates the card's OTA counter in SQLite, secures the push
with the card's imported keys, submits it over SMPP to the simulated SMSC,
the simulated card verifies it, answers its PoR, opens TCP + TLS-PSK to the
gateway's SCP81 server and runs the command scripts the platform sends.  The
R-APDUs that come back are compared with what the same card (a copy of its
file taken before the test) answers to the same C-APDUs directly, so the
test checks the relay, not a guess of what the card says.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from twisted.internet.defer import gatherResults
from twisted.trial.unittest import TestCase

from bipgw.core import CardTarget, ScriptResult, SessionState, SessionStatus
from tests.integration.gateway_loop import (
    ISD_SCRIPT,
    SERVICE_SCRIPT,
    WAIT,
    Loop,
    start_loop,
    stop_loop,
)

pytestmark = pytest.mark.integration


class GatewayLoopTests(TestCase):
    """One gateway and one simulated fleet, connected on loopback."""

    timeout = WAIT

    async def _loop(self, cards: int = 3) -> Loop:
        loop = await start_loop(Path(self.mktemp()), cards=cards)
        self.addCleanup(stop_loop, loop)
        return loop

    async def test_sessionRunsScriptsAndCloses(self) -> None:
        """A session reaches the card, relays SELECT, GET STATUS, GET DATA CPLC
        and a service-applet command with the card's own answers, and ends
        closed on both sides."""
        loop = await self._loop()
        iccid = loop.iccids[1]
        session = loop.gateway.open_session(CardTarget.by_iccid(iccid), "isd")
        ready = await session.ready
        self.assertEqual(ready.state, SessionState.CONNECTED)
        self.assertEqual(ready.iccid, iccid)
        self.assertEqual(ready.agent_id, iccid)

        first: ScriptResult = await session.execute(ISD_SCRIPT)
        second: ScriptResult = await session.execute(SERVICE_SCRIPT)
        final: SessionStatus = await session.close()

        card = loop.reference_card(iccid)
        expected = [card.transmit(c) for c in ISD_SCRIPT + SERVICE_SCRIPT]
        self.assertEqual(list(first.responses + second.responses), expected)
        self.assertEqual(first.status_words, (0x9000, 0x9000, 0x9000))
        self.assertEqual(second.status_words, (0x9000, 0x9000))
        # GET DATA CPLC answers its 9F7F template; the applet its DF20 state.
        self.assertEqual(first.responses[2][:2], b"\x9f\x7f")
        self.assertEqual(second.responses[1][:2], b"\xdf\x20")

        self.assertEqual(final.state, SessionState.CLOSED)
        self.assertIsNone(final.reason)
        self.assertEqual(final.scripts, 2)
        self.assertEqual(final.push_attempts, 1)
        # The card's side: one admin session, ended by the gateway's 204.
        stats = loop.fleet.router.stats
        self.assertEqual(stats.sessions_completed, 1)
        self.assertEqual(stats.sessions_failed, 0)
        (record,) = loop.fleet.router.recent
        self.assertEqual((record.iccid, record.failure, record.scripts), (iccid, None, 2))
        self.assertEqual(record.commands, 5)

    async def test_sessionIsRecordedInTheDatabase(self) -> None:
        """The session's snapshot, history and APDU trace are in the store,
        and the OTA counter the push used is persisted."""
        loop = await self._loop()
        iccid = loop.iccids[0]
        session = loop.gateway.open_session(iccid)
        await session.ready
        result = await session.execute(ISD_SCRIPT)
        await session.close()
        await loop.gateway.recorder.flush()
        store = loop.gateway.store

        record = await store.get_session(session.id.value)
        assert record is not None
        self.assertEqual((record.state, record.iccid, record.scripts), ("closed", iccid, 1))
        states = [e.state for e in await store.session_events(session.id.value) if e.transition]
        self.assertEqual(
            states,
            [
                "requested",
                "pushing",
                "awaiting-card",
                "connected",
                "relaying",
                "connected",
                "closing",
                "closed",
            ],
        )
        traces = await store.apdu_traces(session.id.value)
        self.assertEqual([t.capdu for t in traces], list(ISD_SCRIPT))
        self.assertEqual([t.rapdu for t in traces], list(result.responses))
        card = await store.get_card(iccid)
        assert card is not None
        self.assertEqual(card.ota_counter, 1)

    async def test_sessionByMsisdn(self) -> None:
        """A platform that knows the card by its number reaches the same card."""
        loop = await self._loop()
        msisdn = loop.msisdn(2)
        session = loop.gateway.open_session(CardTarget.by_msisdn("+" + msisdn))
        ready = await session.ready
        self.assertEqual((ready.iccid, ready.msisdn), (loop.iccids[2], msisdn))
        await session.close()

    async def test_concurrentSessions(self) -> None:
        """Sessions for every card of the fleet run at once, each with its card's answers."""
        loop = await self._loop(cards=8)
        sessions = [loop.gateway.open_session(iccid) for iccid in loop.iccids]
        await gatherResults([s.ready for s in sessions])
        results = await gatherResults([s.execute(ISD_SCRIPT) for s in sessions])
        finals = await gatherResults([s.close() for s in sessions])
        for iccid, result in zip(loop.iccids, results, strict=True):
            card = loop.reference_card(iccid)
            self.assertEqual(list(result.responses), [card.transmit(c) for c in ISD_SCRIPT])
        self.assertEqual({f.state for f in finals}, {SessionState.CLOSED})
        self.assertEqual(loop.fleet.router.stats.sessions_completed, 8)
        # Each card got its own PSK identity and ICCID: no session served another card.
        self.assertEqual(sorted(r.iccid for r in loop.fleet.router.recent), sorted(loop.iccids))
        self.assertEqual(loop.gateway.admin.tls_stats.completed, 8)

    async def test_secondSessionUsesNextCounter(self) -> None:
        """A card's second session is pushed with the next OTA counter, which
        the card accepts (counter mode "higher")."""
        loop = await self._loop()
        iccid = loop.iccids[0]
        for expected in (1, 2):
            session = loop.gateway.open_session(iccid)
            await session.ready
            await session.close()
            card = await loop.gateway.store.get_card(iccid)
            assert card is not None
            self.assertEqual(card.ota_counter, expected)
        self.assertEqual(loop.fleet.router.stats.sms_refused, 0)
        self.assertEqual(loop.fleet.router.stats.sessions_completed, 2)

    async def test_definiteScriptsOnTheWire(self) -> None:
        """A service with definite_scripts = true sends AA scripts to the card
        (seen in the 200s the SCP81 server answers the card's POSTs with), the
        isd service AE 80 ones; the card runs both alike."""
        loop = await start_loop(
            Path(self.mktemp()), cards=1, extra_config="[services.aa]\ndefinite_scripts = true\n"
        )
        self.addCleanup(stop_loop, loop)
        engine = loop.gateway.engine
        bodies: list[bytes] = []
        arrived = engine.card_arrived

        def watch(*args: Any, **kwargs: Any) -> Any:
            link = arrived(*args, **kwargs)
            if link is not None:
                post = link.post

                def watched(request: Any) -> Any:
                    return post(request).addCallback(lambda r: bodies.append(r.body) or r)

                link.post = watched
            return link

        engine.card_arrived = watch
        iccid = loop.iccids[0]
        card = loop.reference_card(iccid)
        expected = [card.transmit(c) for c in ISD_SCRIPT]
        for service in ("aa", "isd"):
            session = loop.gateway.open_session(CardTarget.by_iccid(iccid), service)
            await session.ready
            result: ScriptResult = await session.execute(ISD_SCRIPT)
            self.assertEqual(list(result.responses), expected)
            await session.close()
        definite, indefinite = (body for body in bodies if body)
        self.assertEqual(definite[0], 0xAA)
        self.assertEqual(indefinite[:2], b"\xae\x80")
