"""The fleet end to end over 127.0.0.1: smpplib pushes, a card opens TLS-PSK, an admin session runs.

smpplib (an independent SMPP client, in a thread with socket timeouts)
binds to the fleet's simulated SMSC with the generated account and
submits a real secured PUSH for a generated card, built from the keys in
the vendor file (unwrapped with the transport key, as the gateway would).
The card verifies it, answers with a PoR by SMS-SUBMIT (checked with the
card's keys), connects with TLS-PSK to an in-test admin server made of
C{bipgw.tls} and C{bipgw.codec.admin_http}, and runs a session: POST ->
200 with a GET DATA script -> response script POST -> 204.  The bytes the
server receives are checked against what the card must send.
"""

from __future__ import annotations

import time
from collections.abc import Generator
from typing import Any

import pytest
import smpplib.client
from twisted.internet import reactor
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import deferLater
from twisted.internet.threads import deferToThread
from twisted.trial.unittest import TestCase

from bipgw.codec.admin_http import (
    ETSI_COMMAND,
    ETSI_RESPONSE,
    AdminRequest,
    AdminResponse,
    RequestParser,
    ScriptStatus,
    encode_response,
)
from bipgw.codec.ota import Kic, KicAlgorithm, Kid, KidAlgorithm, PorStatus, verify_response
from bipgw.codec.ram import CommandScript, ResponseScript
from bipgw.tls import PskServerOptions, psk_server_endpoint
from simcard.fleet import FleetService, SessionRecord
from simcard.state import FleetState
from tests.unit.fleet.test_harness import (
    OTA_ADDRESS,
    SPI_1639,
    CardKeys,
    cards_from_files,
    make_fleet,
    push_parts,
)

pytestmark = pytest.mark.integration

SOCKET_TIMEOUT = 5.0
KIC = Kic(1, KicAlgorithm.AES_CBC)
KID = Kid(1, KidAlgorithm.AES_CMAC)
#: GET DATA card data (66), CPLC (9F7F) and the key information template (E0).
SCRIPT = (bytes.fromhex("80CA006600"), bytes.fromhex("80CA9F7F00"), bytes.fromhex("80CA00E000"))
NEXT_URI = "/admin/s/1/1"


class _AdminServer(Protocol):
    """A minimal SCP81 server: one GET DATA script for the first POST, then 204."""

    def __init__(self, seen: list[tuple[AdminRequest, bytes]]) -> None:
        self.parser = RequestParser()
        self.seen = seen
        self.raw = b""

    def dataReceived(self, data: bytes) -> None:
        self.raw += data
        for request in self.parser.feed(data):
            self.seen.append((request, self.raw))
            self.raw = b""
            if request.target == "/admin":
                response = AdminResponse(
                    status=200,
                    next_uri=NEXT_URI,
                    content_type=ETSI_COMMAND,
                    body=CommandScript(SCRIPT, definite=False).encode(),
                )
            else:
                response = AdminResponse(status=204)
            self.transport.write(encode_response(response))  # type: ignore[union-attr]


def _push_and_read(port: int, password: str, card: CardKeys, admin_port: int) -> list[Any]:
    """In a thread: bind, submit the push, collect deliver_sm until the PoR arrives."""
    # Strict about optional parameters: an unknown TLV from the SMSC is an error.
    client = smpplib.client.Client(
        "127.0.0.1", port, timeout=SOCKET_TIMEOUT, allow_unknown_opt_params=False
    )
    received: list[Any] = []
    sent: list[Any] = []
    client.set_message_received_handler(lambda pdu: received.append(pdu))
    client.set_message_sent_handler(lambda pdu: sent.append(pdu))
    client.connect()
    try:
        client.bind_transceiver(system_id="bipgw", password=password)
        [ud] = push_parts(card.ota, 1, address="127.0.0.1", port=admin_port)
        client.send_message(
            source_addr_ton=1,
            source_addr_npi=1,
            source_addr=OTA_ADDRESS,
            dest_addr_ton=1,
            dest_addr_npi=1,
            destination_addr=card.msisdn,
            esm_class=0x40,
            protocol_id=0x7F,
            data_coding=0xF6,
            registered_delivery=1,
            short_message=ud,
        )
        deadline = time.monotonic() + 3 * SOCKET_TIMEOUT
        while len(received) < 3 and time.monotonic() < deadline:
            client.read_once()
        client.unbind()
    finally:
        client.disconnect()
    assert sent and sent[0].status == 0, "submit_sm refused"
    return received


class FleetLoopTests(TestCase):
    """A generated card, pushed over SMPP, runs an admin session over TLS-PSK."""

    timeout = 60

    @inlineCallbacks
    def _start(self) -> Generator[Deferred[Any], Any, None]:
        """A fleet of two cards, its SMSC and an admin server on 127.0.0.1, any free ports."""
        self.result, config = make_fleet(self.mktemp(), cards=2)
        self.cards = list(cards_from_files(self.result))
        self.password = (self.result.directory / "gateway/smpp.password").read_text().strip()
        keys = {card.psk_identity: card.psk for card in self.cards}
        self.options = PskServerOptions(keys.get)
        self.seen: list[tuple[AdminRequest, bytes]] = []
        factory = Factory.forProtocol(lambda: _AdminServer(self.seen))
        listening = yield psk_server_endpoint(
            reactor, "tcp:0:interface=127.0.0.1", self.options
        ).listen(factory)
        self.addCleanup(listening.stopListening)
        self.admin_port = listening.getHost().port
        self.fleet = FleetService(config, reactor, smsc_listen="tcp:0:interface=127.0.0.1")
        self.fleet.startService()
        self.addCleanup(self.fleet.stopService)
        port = yield self.fleet.smsc_listener.when_listening()
        self.smsc_port = port.getHost().port
        self.sessions: list[SessionRecord] = []
        self.fleet.router.session_listeners.append(self.sessions.append)

    @inlineCallbacks
    def _session(self) -> Generator[Deferred[Any], Any, SessionRecord]:
        while not self.sessions:
            yield deferLater(reactor, 0.01, lambda: None)
        return self.sessions[0]

    def _expected_responses(self, iccid: str) -> bytes:
        """The response script: the same commands run on a copy of the card."""
        with FleetState.open(self.result.cards_db) as state:
            card = state.load_card(iccid)
        return ResponseScript(tuple(card.transmit(c) for c in SCRIPT), None, False).encode()

    @inlineCallbacks
    def test_pushAndAdminSession(self) -> Generator[Deferred[Any], Any, None]:
        """PoR OK by SMS-SUBMIT; POST -> 200 script -> response POST -> 204; bytes as sent."""
        yield self._start()
        card = self.cards[1]
        expected = self._expected_responses(card.iccid)
        received = yield deferToThread(
            _push_and_read, self.smsc_port, self.password, card, self.admin_port
        )
        record = yield self._session()
        self.assertIsNone(record.failure, record.reason)
        self.assertEqual((record.scripts, record.commands), (1, len(SCRIPT)))
        pors = [
            verify_response(pdu.short_message, SPI_1639, card.ota, kic=KIC, kid=KID)
            for pdu in received
            if pdu.esm_class & 0x40
        ]
        self.assertEqual(
            [p.status for p in pors], [PorStatus.RESPONSE_BY_SMS_SUBMIT, PorStatus.POR_OK]
        )
        self.assertEqual(self.options.stats.completed, 1)
        [(_, first_raw), (second, second_raw)] = self.seen
        self.assertEqual(
            first_raw,
            b"POST /admin HTTP/1.1\r\n"
            b"Host: 127.0.0.1\r\n"
            b"X-Admin-Protocol: globalplatform-remote-admin/1.0\r\n"
            + f"X-Admin-From: {card.iccid}\r\n\r\n".encode(),
        )
        self.assertEqual(second.target, NEXT_URI)
        self.assertEqual(second.admin_from, card.iccid)
        self.assertEqual(second.script_status, ScriptStatus.OK)
        self.assertEqual(second.content_type, ETSI_RESPONSE)
        self.assertEqual(second.body, expected)
        self.assertTrue(second_raw.endswith(b"%x\r\n%s\r\n0\r\n\r\n" % (len(expected), expected)))
        yield self.fleet.stopService()
        with FleetState.open(self.result.cards_db) as state:
            self.assertEqual(state.load_card(card.iccid).ota_counters.last(1), 1)

    @inlineCallbacks
    def test_wrongPskFault(self) -> Generator[Deferred[Any], Any, None]:
        """With wrong_psk, the handshake fails at the server and the session ends "tls"."""
        yield self._start()
        card = self.cards[0]
        self.fleet.faults.set_card(card.iccid, {"wrong_psk": True})
        yield deferToThread(_push_and_read, self.smsc_port, self.password, card, self.admin_port)
        record = yield self._session()
        self.assertEqual(record.failure, "tls")
        self.assertEqual(self.seen, [])
        self.assertEqual(self.options.stats.completed, 0)
        self.assertEqual(self.options.stats.key_mismatch, 1)
