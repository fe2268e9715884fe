"""The simulated SMSC against smpplib, an independent SMPP client, over 127.0.0.1.

smpplib is synchronous, so each client session runs in a thread
(C{deferToThread}) with socket timeouts, while the SMSC runs on the real
reactor.  An SMSC that only agreed with our own codec would prove nothing.
"""

from __future__ import annotations

import time
from collections.abc import Generator
from ipaddress import ip_address
from typing import Any

import pytest
import smpplib.client
import smpplib.exceptions
from twisted.internet import reactor
from twisted.internet.defer import Deferred, inlineCallbacks, succeed
from twisted.internet.endpoints import TCP4ServerEndpoint
from twisted.internet.task import deferLater
from twisted.internet.threads import deferToThread
from twisted.trial.unittest import TestCase

from bipgw.codec.ota import (
    ChecksumKind,
    CommandPacket,
    CounterMode,
    Kic,
    KicAlgorithm,
    Kid,
    KidAlgorithm,
    OtaKeys,
    PorMode,
    Spi,
    command_user_data,
    secure_command,
    strip_command_udh,
    verify_command,
)
from bipgw.codec.ram import (
    BearerDescription,
    BufferSize,
    OtherAddress,
    PushBipOpening,
    encode_compact,
)
from bipgw.codec.smpp import MessageState
from bipgw.codec.sms import Address, SmsDeliver
from simcard.smsc import DeliveryOutcome, SmscConfig, SmscFactory

pytestmark = pytest.mark.integration

SOCKET_TIMEOUT = 5.0
MSISDN = "447700900123"
OTA_ADDRESS = "8801"
KEYS = OtaKeys(kic_key=bytes(range(16)), kid_key=bytes(range(16, 32)))


def _secured_push() -> bytes:
    """The SMS user data of a real OTA push: PUSH "open BIP channel" in SPI 16 39, AES."""
    push = PushBipOpening(
        bearer=BearerDescription.default(),
        buffer_size=BufferSize(1000),
        address=OtherAddress(ip_address("127.0.0.1")),
    ).encode()
    packet = CommandPacket(
        spi=Spi(
            checksum=ChecksumKind.CC,
            ciphered=True,
            counter=CounterMode.HIGHER,
            por=PorMode.ALWAYS,
            por_checksum=ChecksumKind.CC,
            por_ciphered=True,
            por_via_submit=True,
        ),
        kic=Kic(1, KicAlgorithm.AES_CBC),
        kid=Kid(1, KidAlgorithm.AES_CMAC),
        tar=b"\x00\x00\x00",
        counter=5,
        data=encode_compact([push]),
    )
    return command_user_data(secure_command(packet, KEYS))


class _Fleet:
    """The router: records what the SMSC hands over and reports it delivered."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, bytes]] = []

    def deliver(self, dest_msisdn: str, tpdu: bytes) -> Deferred[DeliveryOutcome]:
        self.calls.append((dest_msisdn, tpdu))
        return succeed(DeliveryOutcome.delivered())


def _client(port: int) -> smpplib.client.Client:
    # Strict about optional parameters: an unknown TLV from the SMSC is an error.
    client = smpplib.client.Client(
        "127.0.0.1", port, timeout=SOCKET_TIMEOUT, allow_unknown_opt_params=False
    )
    client.connect()
    return client


def _push_and_wait_for_receipt(port: int, user_data: bytes) -> dict[str, Any]:
    """In a thread: bind transceiver, submit the push, read until the receipt comes."""
    client = _client(port)
    sent: list[Any] = []
    received: list[Any] = []
    client.set_message_sent_handler(lambda pdu: sent.append(pdu))
    client.set_message_received_handler(lambda pdu: received.append(pdu))
    try:
        client.bind_transceiver(system_id="bipgw", password="s3cret")
        client.send_message(
            source_addr_ton=1,
            source_addr_npi=1,
            source_addr=OTA_ADDRESS,
            dest_addr_ton=1,
            dest_addr_npi=1,
            destination_addr=MSISDN,
            esm_class=0x40,
            protocol_id=0x7F,
            data_coding=0xF6,
            registered_delivery=1,
            short_message=user_data,
        )
        deadline = time.monotonic() + 3 * SOCKET_TIMEOUT
        while not (sent and received) and time.monotonic() < deadline:
            client.read_once()
        client.unbind()
    finally:
        client.disconnect()
    assert sent and received, "no submit_sm_resp or no receipt from the SMSC"
    receipt = received[0]
    return {
        "message_id": sent[0].message_id,
        "status": sent[0].status,
        "esm_class": receipt.esm_class,
        "short_message": receipt.short_message,
        "receipted_message_id": receipt.receipted_message_id,
        "message_state": receipt.message_state,
    }


def _bind_with_wrong_password(port: int) -> int:
    """In a thread: a bind with the wrong password; return the refusal status."""
    client = _client(port)
    try:
        client.bind_transmitter(system_id="bipgw", password="wrong")
    except smpplib.exceptions.PDUError as e:
        return int(e.args[1])
    finally:
        client.disconnect()
    raise AssertionError("the SMSC accepted a wrong password")


@inlineCallbacks
def _all_closed(factory: SmscFactory) -> Generator[Deferred[Any], Any, None]:
    """Wait until the SMSC has seen every connection close (the test's timeout bounds it)."""
    while factory.centre.connections:
        yield deferLater(reactor, 0.01, lambda: None)


class SmpplibTests(TestCase):
    """smpplib binds, submits a secured push, gets the receipt; bad passwords fail."""

    timeout = 30

    def setUp(self) -> None:
        self.fleet = _Fleet()
        self.factory = SmscFactory(
            self.fleet,
            {"bipgw": "s3cret"},
            reactor,
            SmscConfig(bind_failure_grace=0.1),
        )

    @inlineCallbacks
    def _listen(self) -> Generator[Deferred[Any], Any, int]:
        """Listen on 127.0.0.1, any free port; stop listening at cleanup."""
        endpoint = TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1")
        port = yield endpoint.listen(self.factory)
        self.addCleanup(port.stopListening)
        number: int = port.getHost().port
        return number

    @inlineCallbacks
    def test_securedPushAndReceipt(self) -> Generator[Deferred[Any], Any, None]:
        """The router gets exactly the push's SMS-DELIVER; smpplib gets its receipt."""
        user_data = _secured_push()
        before = time.time()
        port = yield self._listen()
        result = yield deferToThread(_push_and_wait_for_receipt, port, user_data)
        yield _all_closed(self.factory)
        self.assertEqual(result["status"], 0)
        [(msisdn, tpdu)] = self.fleet.calls
        self.assertEqual(msisdn, MSISDN)
        deliver = SmsDeliver.decode(tpdu)
        expected = SmsDeliver(
            originating_address=Address(1, 1, OTA_ADDRESS),
            scts=deliver.scts,
            pid=0x7F,
            dcs=0xF6,
            user_data_header=deliver.user_data_header,
            user_data=user_data[3:],
        ).encode()
        self.assertEqual(tpdu, expected)
        self.assertEqual(tpdu[0], 0x40)
        self.assertLessEqual(abs(deliver.scts.to_datetime().timestamp() - before), 5)
        assert deliver.user_data_header is not None
        ud = deliver.user_data_header.encode() + deliver.user_data
        self.assertEqual(ud, user_data)
        opened = verify_command(strip_command_udh(ud), KEYS, last_counter=4)
        self.assertEqual(opened.data[:4], bytes.fromhex("80ec0101"))

        message_id = result["message_id"].decode("ascii")
        self.assertEqual(result["esm_class"], 0x04)
        self.assertEqual(result["receipted_message_id"].rstrip(b"\0").decode(), message_id)
        self.assertEqual(result["message_state"], MessageState.DELIVERED)
        text = result["short_message"].decode("ascii")
        self.assertTrue(text.startswith(f"id:{message_id} sub:001 dlvrd:001 "), text)
        self.assertIn(" stat:DELIVRD err:000", text)

    @inlineCallbacks
    def test_wrongPassword(self) -> Generator[Deferred[Any], Any, None]:
        """A wrong password is refused with ESME_RINVPASWD (0x0E)."""
        port = yield self._listen()
        status = yield deferToThread(_bind_with_wrong_password, port)
        yield _all_closed(self.factory)
        self.assertEqual(status, 0x0E)
        self.assertEqual(self.fleet.calls, [])
