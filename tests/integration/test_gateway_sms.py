"""The SMS-PP transport end to end, on real 127.0.0.1 sockets.

A real gateway (SQLite, SMPP client, its configuration file) and the
simulated fleet (its SMSC over SMPP, cards with GP ISDs): a service with
C{transport = "sms"} sends each script as secured command packets over the
SMSC, the simulated card verifies them with its own keys and counter, runs
the APDUs on its ISD and answers with a PoR by SMS-SUBMIT (an MO
C{deliver_sm} for the gateway), which carries the R-APDUs back.  The
R-APDUs are compared with what the same card (a copy of its file taken
before the test) answers directly, so the test checks the transport, not a
guess of what the card says.  Then the faults: a card without a data
bearer reached by the fallback, a lost PoR, a refused counter.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from twisted.trial.unittest import TestCase

from bipgw.client import connect
from bipgw.core import (
    CardTarget,
    CommandError,
    FailureReason,
    ScriptResult,
    SessionError,
    SessionState,
)
from tests.integration.gateway_loop import (
    ISD_AID,
    ISD_SCRIPT,
    NO_CARD_SESSIONS,
    WAIT,
    Loop,
    start_loop,
    stop_loop,
)
from tests.integration.test_platform_e2e import fronts_toml, operator

pytestmark = pytest.mark.integration

#: [services.isd] falls back to SMS; two services run over SMS only.
SERVICES = """\
fallback = "sms"
por_timeout = 10
[services.sms]
transport = "sms"
por_timeout = 3
[services.compact]
transport = "sms"
sms_format = "compact"
por_timeout = 10
"""

#: 15 C-APDUs: an expanded script of 200 bytes, more than one SM holds.
LONG_SCRIPT = ISD_SCRIPT * 5


class SmsTransportTests(TestCase):
    """Scripts as SMS-PP packets between a real gateway and the simulated fleet."""

    timeout = WAIT

    async def _loop(self, **kwargs: Any) -> Loop:
        kwargs.setdefault("extra_config", SERVICES)
        loop = await start_loop(Path(self.mktemp()), **kwargs)
        self.addCleanup(stop_loop, loop)
        return loop

    async def test_multiApduScriptOverConcatenatedSms(self) -> None:
        """A 15-APDU script goes as concatenated SMS (the card reassembles it), its
        answer comes back as a concatenated MO PoR, and every R-APDU is what the
        card answers directly."""
        loop = await self._loop()
        iccid = loop.iccids[0]
        session = loop.gateway.open_session(CardTarget.by_iccid(iccid), "sms")
        ready = await session.ready
        self.assertEqual(ready.state, SessionState.CONNECTED)
        result: ScriptResult = await session.execute(LONG_SCRIPT)
        final = await session.close()

        card = loop.reference_card(iccid)
        self.assertEqual(list(result.responses), [card.transmit(c) for c in LONG_SCRIPT])
        self.assertEqual((result.executed, result.complete), (15, True))
        self.assertEqual(final.state, SessionState.CLOSED)
        stats = loop.fleet.router.stats
        # No push, no BIP session: only the script's parts, and its PoR by SMS-SUBMIT.
        self.assertGreaterEqual(stats.sms_received, 2)
        self.assertEqual(stats.sms_executed, 1)
        self.assertEqual(stats.sms_other, stats.sms_received - 1)  # the parts before the last
        self.assertGreaterEqual(stats.pors_by_sms, 2)
        self.assertEqual(stats.sessions_requested, 0)
        # The counter the script spent is persisted; the card took it.
        stored = await loop.gateway.store.get_card(iccid)
        assert stored is not None
        self.assertEqual(stored.ota_counter, 1)
        await loop.gateway.recorder.flush()
        traces = await loop.gateway.store.apdu_traces(session.id.value)
        self.assertEqual([t.outcome for t in traces], ["ok"] * 15)

    async def test_compactFormat(self) -> None:
        """The compact form over SMS: the last R-APDU (CPLC) comes back, and the count."""
        loop = await self._loop()
        iccid = loop.iccids[1]
        session = loop.gateway.open_session(CardTarget.by_iccid(iccid), "compact")
        await session.ready
        script = (ISD_SCRIPT[0][:-1], ISD_SCRIPT[2])  # SELECT without Le, GET DATA CPLC
        result: ScriptResult = await session.execute(script)
        await session.close()
        card = loop.reference_card(iccid)
        expected = [card.transmit(c) for c in script]
        self.assertEqual(result.executed, 2)
        self.assertEqual(result.responses, (expected[-1],))
        self.assertEqual(result.responses[0][:2], b"\x9f\x7f")

    async def test_noBearerCardReachedByFallback(self) -> None:
        """A card with no data bearer takes every push but never opens BIP; after
        the last push the session goes on over SMS and the script runs."""
        loop = await self._loop(sessions=NO_CARD_SESSIONS)
        iccid = loop.iccids[2]
        loop.fleet.faults.set_card(iccid, {"no_bearer": True})
        session = loop.gateway.open_session(CardTarget.by_iccid(iccid), "isd")
        ready = await session.ready
        self.assertEqual((ready.state, ready.push_attempts), (SessionState.CONNECTED, 3))
        result: ScriptResult = await session.execute(ISD_SCRIPT)
        await session.close()
        card = loop.reference_card(iccid)
        self.assertEqual(list(result.responses), [card.transmit(c) for c in ISD_SCRIPT])
        stats = loop.fleet.router.stats
        self.assertEqual((stats.sessions_no_bearer, stats.sessions_requested), (3, 0))
        await loop.gateway.recorder.flush()
        events = await loop.gateway.store.session_events(session.id.value)
        self.assertTrue(any("falling back to SMS" in e.detail for e in events))

    async def test_lostPorEndsWithReason(self) -> None:
        """The card runs the script but its PoR is lost: the session ends with
        por-timeout after por_timeout, saying which script."""
        loop = await self._loop()
        iccid = loop.iccids[0]
        loop.fleet.faults.set_card(iccid, {"lose_por": True})
        session = loop.gateway.open_session(CardTarget.by_iccid(iccid), "sms")
        await session.ready
        with self.assertRaises(SessionError) as ctx:
            await session.execute(ISD_SCRIPT)
        self.assertEqual(ctx.exception.reason, FailureReason.POR_TIMEOUT)
        self.assertIn("no PoR for script 1 within 3 s", ctx.exception.detail)
        status = session.status()
        self.assertEqual(
            (status.state, status.reason), (SessionState.FAILED, FailureReason.POR_TIMEOUT)
        )
        self.assertEqual(loop.fleet.router.stats.pors_lost, 1)
        self.assertEqual(loop.fleet.router.stats.sms_executed, 1)

    async def test_wrongCounterRejected(self) -> None:
        """A card that takes every counter for a replay refuses the packet with PoR
        status 02 in clear: the command fails with counter-rejected, the session
        goes on, and once the card is healthy the next script runs."""
        loop = await self._loop()
        iccid = loop.iccids[1]
        loop.fleet.faults.set_card(iccid, {"replay": "por"})
        session = loop.gateway.open_session(CardTarget.by_iccid(iccid), "sms")
        await session.ready
        with self.assertRaises(CommandError) as ctx:
            await session.execute(ISD_SCRIPT)
        self.assertEqual(ctx.exception.reason, FailureReason.COUNTER_REJECTED)
        self.assertIn("0x02 (COUNTER_LOW)", ctx.exception.detail)
        self.assertEqual(loop.fleet.router.stats.sms_refused, 1)
        loop.fleet.faults.clear_card(iccid)
        result: ScriptResult = await session.execute(ISD_SCRIPT)
        self.assertEqual(result.status_words, (0x9000, 0x9000, 0x9000))
        final = await session.close()
        self.assertEqual(final.state, SessionState.CLOSED)

    async def test_platformChannelDoesNotCare(self) -> None:
        """A platform on the platform channel (the SDK) opens a session of the SMS
        service and sends a script as for any other: the card's own R-APDUs come back."""
        from twisted.internet import reactor

        loop = await self._loop(extra_config=SERVICES + fronts_toml())
        token = "sms-tenant-token-0123456789abcdef"
        token_file = Path(self.mktemp())
        token_file.write_text(token + "\n")
        await operator(loop, "tenant", "add", "acme", "--token-file", str(token_file))
        await operator(
            loop, "service", "add", "sms", "--tenant", "acme", "--aid", ISD_AID.hex(),
            "--isd-commands", "get-status,get-data",
        )  # fmt: skip
        port = loop.gateway.platform_port
        client = await connect(reactor, f"tcp:127.0.0.1:{port}", token=token, timeout=10)
        self.addCleanup(client.disconnect)
        iccid = loop.iccids[2]
        session = await client.open_session(service="sms", iccid=iccid)
        result = await session.send(ISD_SCRIPT)
        await session.close()
        card = loop.reference_card(iccid)
        self.assertEqual(list(result.rapdus), [card.transmit(c) for c in ISD_SCRIPT])
        self.assertEqual(loop.fleet.router.stats.sessions_requested, 0)
