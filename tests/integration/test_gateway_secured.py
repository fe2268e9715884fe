"""A service with C{secure_apdus}: the platform's plain APDUs reach the card
through its ISD secure channel (SCP03), end to end on 127.0.0.1.

The gateway diversifies the card's SCP03 keys from the keystore's master keys
(the ones the fleet personalised its cards from), opens the channel inside
the admin session and wraps every command; the simulated card, whose ISD
requires nothing, still checks every MAC of a wrapped command and answers
with R-MACs the gateway verifies.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from twisted.trial.unittest import TestCase

from bipgw.core import CardTarget, FailureReason, SecuredSession, SessionState
from tests.integration.gateway_loop import ISD_SCRIPT, WAIT, start_loop, stop_loop

pytestmark = pytest.mark.integration

SECURE_SERVICE = "[services.secure]\nsecure_apdus = true\n"


class SecuredServiceTests(TestCase):
    """Commands of a secure_apdus service travel wrapped."""

    timeout = WAIT

    async def test_plainApdusRelayedThroughScp03(self) -> None:
        """The platform sends plain GET STATUS and GET DATA; the card gets them
        wrapped, answers, and the platform reads the same answers the card
        gives unwrapped."""
        loop = await start_loop(
            Path(self.mktemp()), cards=2, extra_config=SECURE_SERVICE, scp03_masters=True
        )
        self.addCleanup(stop_loop, loop)
        iccid = loop.iccids[0]
        session = loop.gateway.open_session(CardTarget.by_iccid(iccid), "secure")
        self.assertIsInstance(session, SecuredSession)
        await session.ready
        commands = ISD_SCRIPT[1:]  # GET STATUS ISD, GET DATA CPLC (the relay selects the ISD)
        result = await session.execute(commands)
        assert isinstance(session, SecuredSession)
        self.assertTrue(session.relay.is_open)
        self.assertGreaterEqual(session.relay.commands_protected, len(commands))
        expected = [loop.reference_card(iccid).transmit(c) for c in commands]
        self.assertEqual(list(result.responses), expected)
        final = await session.close()
        self.assertEqual(final.state, SessionState.CLOSED)

    async def test_withoutKeysTheChannelFailsWithAReason(self) -> None:
        """A secured service for a card whose SCP03 keys the gateway cannot
        find fails the command with secure-channel-failed, and nothing
        unwrapped reaches the card."""
        loop = await start_loop(Path(self.mktemp()), cards=1, extra_config=SECURE_SERVICE)
        self.addCleanup(stop_loop, loop)
        session = loop.gateway.open_session(CardTarget.by_iccid(loop.iccids[0]), "secure")
        await session.ready
        with self.assertRaises(Exception) as caught:
            await session.execute(ISD_SCRIPT[1:])
        self.assertEqual(
            getattr(caught.exception, "reason", None), FailureReason.SECURE_CHANNEL_FAILED
        )
        await session.close()


class SecuredThroughPlatformTests(TestCase):
    """A platform using a secure_apdus service gets the SCP03-wrapped relay too:
    the channel opens its sessions through the gateway, not the bare engine."""

    timeout = WAIT

    async def test_platformCommandsWrapped(self) -> None:
        """Commands sent through the platform channel for a secured service are
        relayed wrapped (the gateway's relay counts them) and answered with the
        card's own plain answers."""
        from twisted.internet import reactor

        from bipgw.client import connect
        from tests.integration.test_platform_e2e import TOKEN, fronts_toml, operator

        loop = await start_loop(
            Path(self.mktemp()),
            cards=1,
            extra_config=SECURE_SERVICE + fronts_toml(),
            scp03_masters=True,
        )
        self.addCleanup(stop_loop, loop)
        token_file = Path(self.mktemp())
        token_file.write_text(TOKEN + "\n")
        await operator(loop, "tenant", "add", "acme", "--token-file", str(token_file))
        await operator(
            loop, "service", "add", "secure", "--tenant", "acme", "--isd-commands", "all"
        )
        opened: list[object] = []
        engine = loop.gateway.engine
        engine_open = engine.open

        def spy(target: Any, service: str) -> Any:
            session = engine_open(target, service)
            opened.append(session)
            return session

        # Every door opens sessions with the engine's open: watch what it
        # hands the platform channel.
        engine.open = spy  # type: ignore[method-assign]
        client = await connect(
            reactor, f"tcp:127.0.0.1:{loop.gateway.platform_port}", token=TOKEN, timeout=10
        )
        self.addCleanup(client.disconnect)
        iccid = loop.iccids[0]
        session = await client.open_session(service="secure", iccid=iccid)
        commands = ISD_SCRIPT[1:]
        result = await session.send(commands)
        await session.close()
        (secured,) = opened
        self.assertIsInstance(secured, SecuredSession)
        assert isinstance(secured, SecuredSession)
        self.assertGreaterEqual(secured.relay.commands_protected, len(commands))
        expected = [loop.reference_card(iccid).transmit(c) for c in commands]
        self.assertEqual(
            [bytes.fromhex(r) if isinstance(r, str) else r for r in result.rapdus], expected
        )
