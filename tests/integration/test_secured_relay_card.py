"""The SCP03 relay end to end: engine, SCP81 exchange and a real simulated card.

A platform's plain C-APDUs go through L{SecuredRelay} into the real
L{SessionEngine}; the card side is the simulated card's own GP Amd B agent
(L{simcard.agent.AdminAgent}) running each script on a fleet-personalised
L{SimCard} with its SCP03 card side.  Between the two, the HTTP bytes the
agent writes are parsed with the gateway's admin codec and handed to the
L{CardLink}, and the responses encoded back, exactly as the SCP81 server
does, but without sockets or TLS, so every step is deterministic (a
L{Clock}) and the test checks that no timer is left.

The card's keys reach the relay the way the gateway gets them: from the
application database (sealed, as the vendor-file import stores them) or
diversified from SCP03 master keys, as the fleet generator personalised
the card.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from bipgw.codec.admin_http import AdminResponse, RequestParser, encode_response
from bipgw.codec.scp03 import StaticKeys
from bipgw.core import (
    SECURE_CHANNEL_FAILED,
    CardRecord,
    Scp03Step,
    SecureChannelError,
    SecuredRelay,
    Session,
    SessionState,
    host_session_factory,
)
from bipgw.keys import KeyAlgorithm, RootKey, Scp03MasterKeys, Secret, psk_identity_for
from bipgw.store import (
    CardKey,
    CardUpsert,
    KeyPurpose,
    MemoryStore,
    StoreScp03KeySource,
    seal_card_key,
)
from simcard.agent import AdminAgent, StepKind
from simcard.card import SimCard
from simcard.fleet import FleetAlgorithm, MasterKeys, card_numbers, fleet_registry
from simcard.gp.secure_channel import Scp03SecureChannel
from simcard.model import AdminDefaults
from simcard.session_request import AdminSessionRequest
from tests import vectors
from tests.unit.core import EngineTestCase

pytestmark = pytest.mark.integration

ROOT = RootKey(Secret(bytes(range(32))))
FLEET = MasterKeys(*(Secret(bytes((0x11 * (i + 1),)) * 16) for i in range(7)))
NUMBERS = card_numbers(1)
ICCID = NUMBERS.iccid
PROFILE = FLEET.profile(NUMBERS, FleetAlgorithm.AES, AdminDefaults("gw.example"))
CARD_KEYS = StaticKeys(PROFILE.scp03[0].enc, PROFILE.scp03[0].mac, PROFILE.scp03[0].dek)
MASTERS = Scp03MasterKeys(FLEET.scp03_enc, FLEET.scp03_mac, FLEET.scp03_dek)
GET_STATUS_ISD = bytes.fromhex(vectors.by_name("gp_apdus", "GET STATUS ISD, TLV response")["capdu"])
GET_STATUS_APPS = bytes.fromhex(
    vectors.by_name("gp_apdus", "GET STATUS apps+SDs, next occurrence")["capdu"]
)
GET_STATUS_ALL = bytes.fromhex("80f24002024f0000")
GET_LEVEL = bytes.fromhex("80ca00d300")
GET_CIN = bytes.fromhex("80ca004500")
GET_UNKNOWN = bytes.fromhex("80ca00ff00")


class CardSide:
    """The card end of one admin session: its agent, fed through the gateway's codec.

    @ivar traffic: every (C-APDU, R-APDU) the card saw, as on its contacts.
    @ivar tamper: changes the R-APDU of the card's C{n}-th command (from 0,
        counting the whole session) on its way back.
    """

    def __init__(self, card: SimCard) -> None:
        self.card = card
        self.traffic: list[tuple[bytes, bytes]] = []
        self.tamper: Callable[[int, bytes], bytes] | None = None
        self.outcome: StepKind | None = None

    def transmit(self, capdu: bytes) -> bytes:
        rapdu = self.card.transmit(capdu)
        if self.tamper is not None:
            rapdu = self.tamper(len(self.traffic), rapdu)
        self.traffic.append((capdu, rapdu))
        return rapdu

    def connect(self, test: EngineTestCase) -> None:
        """Connect to the engine as the SCP81 server would hand the card over."""
        link = test.arrive(ICCID, ICCID)
        request = AdminSessionRequest(
            address="127.0.0.1", port=8443, host="gw.example", uri="/admin", agent_id=ICCID
        )
        agent = AdminAgent(request, self)
        parser = RequestParser()

        def send(data: bytes) -> None:
            for posted in parser.feed(data):
                link.post(posted).addCallback(answer)

        def answer(response: AdminResponse) -> None:
            step = agent.receive(encode_response(response))
            if step.kind is StepKind.SEND:
                send(step.data)
            elif step.kind is not StepKind.WAIT:
                self.outcome = step.kind
                link.lost("the card closed the channel")

        send(agent.first_request())


class SecuredRelayCardTests(EngineTestCase):
    """Secured admin sessions with the simulated card, at every level."""

    def setUp(self) -> None:
        super().setUp()
        self.sender.auto_accept = True
        self.directory.cards.append(CardRecord(ICCID, NUMBERS.msisdn, psk_identity_for(ICCID)))
        self.card = SimCard(PROFILE, fleet_registry(), secure_channel_factory=Scp03SecureChannel)

    def session(self) -> tuple[Session, CardSide]:
        session = self.open(ICCID)
        side = CardSide(self.card)
        side.connect(self)
        self.assertIs(self.successResultOf(session.ready).state, SessionState.CONNECTED)
        return session, side

    def close(self, session: Session, side: CardSide) -> None:
        self.assertIs(self.successResultOf(session.close()).state, SessionState.CLOSED)
        self.assertIs(side.outcome, StepKind.DONE)

    def relay(
        self, session: Session, keys: StaticKeys | None = None, level: int = 0x13
    ) -> SecuredRelay:
        store = MemoryStore()
        sealed: tuple[CardKey, ...] = ()
        if keys is not None:
            sealed = tuple(
                seal_card_key(ROOT, ICCID, purpose, 1, KeyAlgorithm.AES_128.value, Secret(key))
                for purpose, key in (
                    (KeyPurpose.SCP03_ENC, keys.enc),
                    (KeyPurpose.SCP03_MAC, keys.mac),
                    (KeyPurpose.SCP03_DEK, keys.dek),
                )
            )
        self.successResultOf(store.upsert_cards([CardUpsert(iccid=ICCID, keys=sealed)]))
        source = StoreScp03KeySource(store, ROOT, masters=None if keys else MASTERS)
        return SecuredRelay(session, host_session_factory(source, ICCID), level=level)

    def plain(self, *commands: bytes) -> tuple[bytes, ...]:
        """What an unsecured session of the same card answers."""
        session, side = self.session()
        result = self.successResultOf(session.execute(list(commands)))
        self.close(session, side)
        return result.responses

    def test_everyLevel(self) -> None:
        """At 03, 13 and 33, with stored or diversified keys, GET STATUS through
        the channel gives the registry an unsecured session gives; the wire
        carries only protected commands, and at 33 no answer data in clear."""
        expected = self.plain(GET_STATUS_ISD, GET_STATUS_ALL)
        for level, keys in ((0x03, CARD_KEYS), (0x13, None), (0x33, CARD_KEYS)):
            with self.subTest(level=level):
                session, side = self.session()
                relay = self.relay(session, keys, level=level)
                d = relay.execute([GET_STATUS_ISD, GET_STATUS_ALL], definite=level == 0x33)
                result = self.successResultOf(d)
                self.assertEqual(result.responses, expected)
                self.assertEqual(result.commands, (GET_STATUS_ISD, GET_STATUS_ALL))
                level_answer = self.successResultOf(relay.execute([GET_LEVEL])).responses
                self.assertEqual(level_answer, (bytes((0xD3, 1, level, 0x90, 0)),))
                ran = [c for c, _ in side.traffic]
                self.assertEqual(
                    [c[:2].hex() for c in ran], ["00a4", "8050", "8482", "84f2", "84f2", "84ca"]
                )
                wire = [r for _, r in side.traffic[3:5]]
                self.assertEqual(wire == list(expected), level == 0x03)
                trace = [t.capdu[:2].hex() for t in self.recorder.trace(session.id)]
                self.assertEqual(trace, [c[:2].hex() for c in ran])
                self.close(session, side)

    def test_wrongKeys(self) -> None:
        """Keys that are not the card's: SECURE_CHANNEL_FAILED at the card
        cryptogram; no EXTERNAL AUTHENTICATE reaches the card; the admin
        session goes on and closes normally."""
        session, side = self.session()
        relay = self.relay(session, StaticKeys(CARD_KEYS.mac, CARD_KEYS.enc, CARD_KEYS.dek))
        error = self.failureResultOf(relay.execute([GET_STATUS_ALL]), SecureChannelError).value
        assert isinstance(error, SecureChannelError)
        self.assertEqual(
            (error.step, error.reason), (Scp03Step.CARD_CRYPTOGRAM, SECURE_CHANNEL_FAILED)
        )
        self.assertEqual(error.session_id, session.id)
        self.assertEqual([c[:2].hex() for c, _ in side.traffic], ["00a4", "8050"])
        self.assertIs(session.status().state, SessionState.CONNECTED)
        self.failureResultOf(relay.execute([GET_STATUS_ALL]), SecureChannelError)
        self.assertEqual(len(side.traffic), 2)
        self.close(session, side)

    def test_tamperedResponseMac(self) -> None:
        """A changed R-MAC fails that command with a clear reason; the next one
        re-opens the channel and is answered."""
        session, side = self.session()
        relay = self.relay(session, CARD_KEYS)
        self.successResultOf(relay.execute([GET_LEVEL]))
        side.tamper = lambda n, r: r[:-3] + bytes((r[-3] ^ 0x01,)) + r[-2:] if n == 5 else r
        error = self.failureResultOf(relay.execute([GET_LEVEL, GET_CIN]), SecureChannelError).value
        assert isinstance(error, SecureChannelError)
        self.assertEqual((error.step, error.command), (Scp03Step.RESPONSE, 1))
        self.assertIn("R-MAC", str(error))
        side.tamper = None
        answer = self.successResultOf(relay.execute([GET_CIN])).responses[0]
        self.assertEqual(answer[:2], b"\x45\x0a")
        self.assertEqual(self.card.registry.sequence_counter, 2)
        self.close(session, side)

    def test_chainAcrossScripts(self) -> None:
        """Several scripts, one with a command the card stops at, run in one
        session: the card accepts every C-MAC and decrypts every command
        (one INITIALIZE UPDATE in all), and the relay counted each command."""
        session, side = self.session()
        relay = self.relay(session, CARD_KEYS)
        results = [
            self.successResultOf(relay.execute(script))
            for script in (
                [GET_LEVEL, GET_STATUS_ISD],
                [GET_STATUS_APPS],
                [GET_UNKNOWN, GET_LEVEL],
                [GET_CIN, GET_STATUS_ALL, GET_LEVEL],
            )
        ]
        self.assertEqual([len(r.responses) for r in results], [2, 1, 1, 3])
        self.assertEqual(results[2].status_words, (0x6A88,))
        self.assertEqual(results[3].responses[2], b"\xd3\x01\x13\x90\x00")
        self.assertEqual([r.script for r in results], [2, 3, 4, 5])
        self.assertEqual(self.card.registry.sequence_counter, 1)
        self.assertEqual(relay.commands_protected, 7)
        self.close(session, side)

    def test_sessionLostBetweenScripts(self) -> None:
        """When the card's session ends between scripts (here another
        application is selected and then the ISD), the relay sees the 6982,
        re-opens the channel and the platform gets its answer."""
        session, side = self.session()
        relay = self.relay(session, CARD_KEYS)
        self.successResultOf(relay.execute([GET_LEVEL]))
        credential = [a.aid for a in self.card.registry.applications][-1]
        for aid in (credential, self.card.registry.isd.aid):
            selected = self.card.transmit(bytes((0, 0xA4, 4, 0, len(aid))) + aid + b"\x00")
            self.assertEqual(selected[-2:], b"\x90\x00")
        result = self.successResultOf(relay.execute([GET_LEVEL, GET_CIN]))
        self.assertEqual(result.status_words, (0x9000, 0x9000))
        refused = side.traffic[4]
        self.assertEqual((refused[0][:2], refused[1]), (b"\x84\xca", b"\x69\x82"))
        self.assertEqual([c[:2].hex() for c, _ in side.traffic[5:8]], ["00a4", "8050", "8482"])
        self.assertEqual(self.card.registry.sequence_counter, 2)
        self.close(session, side)

    def test_closesAfterFailure(self) -> None:
        """A session whose relay failed still ends cleanly, with no timer left."""
        session, side = self.session()
        relay = self.relay(session, StaticKeys(bytes(16), bytes(16), bytes(16)))
        self.failureResultOf(relay.execute([GET_LEVEL]), SecureChannelError)
        self.close(session, side)
        self.assertEqual(self.clock.getDelayedCalls(), [])
